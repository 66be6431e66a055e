"""gateway-monitor benchmark: prints ONE table of throughput, CPU, loss, memory and scrape cost.

    .venv/bin/python tests/bench/run.py            full run (about 5 minutes, installs the SDK
                                                   into .venv-sdk the first time)
    .venv/bin/python tests/bench/run.py --quick    the CI smoke: small counts, no SDK (~30 s)
    .venv/bin/python tests/bench/run.py --only ratio                 monitor / receive-only client,
                                                   live and stress mixes, best of 3 interleaved runs
    .venv/bin/python tests/bench/run.py --compare DIR --only ratio   the same ratios, before and after

Every party is its own process on 127.0.0.1: the sender (tests/bench/sender.py), the monitor
(`python -m monitor`, configured by flags and env vars as in production), the receive-only
aiohttp sink (tests/bench/sink.py) and the SDK client (tests/bench/sdk_client.py, own venv).
Frames are counted from the monitor's /metrics (gateway_monitor_frames_total) and drops from
the sender's own counter; CPU comes from /proc/<pid>/stat, RSS from /proc/<pid>/status.
With 2 cores the figures are noisy: each throughput figure is the median of several runs,
interleaved with the runs it is compared to. The `ratio` part reports the best of its runs
(and the medians): on a shared machine the best run is the one least disturbed by other jobs.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import gzip
import json
import os
import re
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests/, for harness.*

from harness.net import free_port

HERE = Path(__file__).resolve().parent
ROOT = HERE.parents[1]
CLK_TCK = os.sysconf("SC_CLK_TCK")
PROMETHEUS_HEADERS = {  # what Prometheus 3 sends on a scrape
    "Accept": "application/openmetrics-text;version=1.0.0;escaping=allow-utf-8;q=0.6,"
              "application/openmetrics-text;version=0.0.1;q=0.5,"
              "text/plain;version=1.0.0;escaping=allow-utf-8;q=0.4,text/plain;version=0.0.4;q=0.3,*/*;q=0.2",
    "Accept-Encoding": "gzip",
    "User-Agent": "Prometheus/3.5.0",
    "X-Prometheus-Scrape-Timeout-Seconds": "10",
}
SERIES = 10_000
MAX_SYMBOL_SERIES = SERIES + 100  # the background mix has its own few stale symbols
CRITICAL = {  # critical frame kind -> (metric, labels) that counts it
    "POSITION_UNPROTECTED": ("gateway_monitor_error_events_total", {"code": "POSITION_UNPROTECTED"}),
    "BROKER_CONNECTION_FAILED": ("gateway_monitor_connection_events_total",
                                 {"event": "BROKER_CONNECTION_FAILED", "broker": "alpaca-paper"}),
    "MARGIN_CALL": ("gateway_monitor_account_events_total", {"event": "MARGIN_CALL"}),
}
# The `ratio` part: monitor frames/s over the fastest receive-only client's, best run of each.
# These are the acceptance criteria of per-quote work in the frame path.
RATIO_TARGETS = {"live": 0.78, "stress": 0.38}
RATIO_MIXES = tuple(RATIO_TARGETS)
SINKS = {"sink": (), "sink_batched": ("--batched",)}  # tests/bench/sink.py variants -> arguments
SINK_LABELS = {"sink": "receive() per frame", "sink_batched": "batched reads, as the pump"}
MIX_LABELS = {"live": "live mix (97% quote)", "stress": "stress mix (70/20/5/5)"}


@dataclass
class Plan:
    flood: int
    reps: int
    sdk_frames: int
    sdk_reps: int
    rate_seconds: float
    rate_reps: int
    rates: tuple[int, ...]
    soak_rate: int
    soak_seconds: float
    memory_frames: tuple[int, int]
    symbols: int
    backtest: bool
    log_cost: bool
    ratio_reps: int
    feed_rounds: int
    feed_idle_seconds: float


FULL = Plan(flood=1_000_000, reps=5, sdk_frames=300_000, sdk_reps=3, rate_seconds=6.0, rate_reps=3,
            rates=(10_000, 50_000, 100_000), soak_rate=100_000, soak_seconds=30.0,
            memory_frames=(1_000_000, 5_000_000), symbols=1_000_000, backtest=True, log_cost=True,
            ratio_reps=3, feed_rounds=30, feed_idle_seconds=10.0)
QUICK = Plan(flood=200_000, reps=1, sdk_frames=0, sdk_reps=0, rate_seconds=1.5, rate_reps=1,
             rates=(10_000, 50_000, 100_000), soak_rate=100_000, soak_seconds=4.0,
             memory_frames=(200_000, 1_000_000), symbols=100_000, backtest=False, log_cost=False,
             ratio_reps=1, feed_rounds=3, feed_idle_seconds=3.0)


# ---------------------------------------------------------------- processes and /proc


def cpu_seconds(pid: int) -> float:
    """User + system CPU of the whole process (all threads, exited ones included)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def wait_idle(pid: int, quiet: float = 0.15, timeout: float = 120.0) -> float:
    """Wait until the process has used no CPU for `quiet` seconds; return its CPU then."""
    deadline = time.monotonic() + timeout
    last, since = cpu_seconds(pid), time.monotonic()
    while time.monotonic() < deadline:
        await asyncio.sleep(0.03)
        now = cpu_seconds(pid)
        if now != last:
            last, since = now, time.monotonic()
        elif time.monotonic() - since >= quiet:
            return now
    raise TimeoutError(f"process {pid} still busy after {timeout}s")


class Sender:
    """tests/bench/sender.py, driven over stdin/stdout JSON lines."""

    def __init__(self, proc: asyncio.subprocess.Process, port: int) -> None:
        self.proc, self.port = proc, port

    @classmethod
    async def start(cls, corpora: str) -> Sender:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, str(HERE / "sender.py"), "--corpora", corpora,
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=HERE)
        assert proc.stdout is not None
        hello = json.loads(await asyncio.wait_for(proc.stdout.readline(), 60))
        return cls(proc, hello["port"])

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def cmd(self, cmd: str, timeout: float = 300.0, **args: Any) -> dict[str, Any]:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write((json.dumps({"cmd": cmd, **args}) + "\n").encode())
        await self.proc.stdin.drain()
        reply: dict[str, Any] = json.loads(await asyncio.wait_for(self.proc.stdout.readline(), timeout))
        if not reply.get("ok"):
            raise RuntimeError(f"sender {cmd}: {reply.get('error')}")
        return reply

    async def stop(self) -> None:
        with contextlib.suppress(Exception):
            await self.cmd("quit", timeout=5)
        await _reap(self.proc)


async def _reap(proc: asyncio.subprocess.Process) -> None:
    try:
        await asyncio.wait_for(proc.wait(), 10)
    except TimeoutError:
        proc.kill()
        await proc.wait()


@dataclass
class Monitor:
    """`python -m monitor` as deployed: flags and env vars, JSON logs to a file."""

    proc: asyncio.subprocess.Process
    port: int
    log: Path
    session: aiohttp.ClientSession
    role: str = "monitor"

    @classmethod
    async def start(cls, sender: Sender, workdir: Path, name: str, session: aiohttp.ClientSession,
                    log_level: str = "info", role: str = "monitor", code: str | None = None) -> Monitor:
        """Start a monitor; `code` is another checkout's directory holding `monitor/` (A/B runs)."""
        port = free_port()
        log = workdir / f"{name}.log"
        env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LOG_FORMAT": "json",
               "LOG_LEVEL": log_level, "MONITOR_MAX_SYMBOL_SERIES": str(MAX_SYMBOL_SERIES)}
        if code:
            env["PYTHONPATH"] = code
        url = f"http://127.0.0.1:{sender.port}" + ("" if role == "monitor" else f"/{role}")
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "monitor", "--gateway-url", url,
                "--listen", f"127.0.0.1:{port}", env=env, cwd=code or ROOT,
                stdout=subprocess.DEVNULL, stderr=err)
        mon = cls(proc, port, log, session, role)
        try:
            await sender.cmd("wait", role=role, timeout=30)
            deadline = time.monotonic() + 30
            while time.monotonic() < deadline:
                with contextlib.suppress(aiohttp.ClientError):
                    if (await mon.samples()).get(("gateway_monitor_ws_connected", ())) == 1:
                        await wait_idle(proc.pid)
                        return mon
                await asyncio.sleep(0.1)
            raise RuntimeError(f"monitor did not connect; see {log}")
        except BaseException:
            await mon.stop()
            raise

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def text(self, headers: dict[str, str] | None = None) -> tuple[str, float, int]:
        """One scrape: body, wall milliseconds, bytes on the wire."""
        started = time.perf_counter()
        headers = headers or {"Accept-Encoding": "identity"}
        async with self.session.get(f"http://127.0.0.1:{self.port}/metrics", headers=headers,
                                    auto_decompress=False) as resp:
            raw = await resp.read()
            ms = (time.perf_counter() - started) * 1000
            encoding = resp.headers.get("Content-Encoding", "identity")
            raw_text = (gzip.decompress(raw) if encoding == "gzip" else raw).decode()
        return raw_text, ms, len(raw)

    async def samples(self, headers: dict[str, str] | None = None) -> Samples:
        return parse((await self.text(headers))[0])

    async def frames(self) -> int:
        s = await self.samples()
        return int(sum(v for (name, _), v in s.items() if name == "gateway_monitor_frames_total"))

    async def counted(self, expected: int, timeout: float = 120.0) -> tuple[float, dict[Any, float]]:
        """Wait until the monitor has counted `expected` frames; return its CPU then, and a scrape."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            cpu = await wait_idle(self.pid, timeout=timeout)
            s = await self.samples()
            total = int(sum(v for (name, _), v in s.items() if name == "gateway_monitor_frames_total"))
            if total >= expected:
                if total != expected:
                    raise AssertionError(f"monitor counted {total} frames, {expected} were sent")
                return cpu, s
        raise TimeoutError(f"monitor never counted {expected} frames")

    async def stop(self) -> None:
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGTERM)
        await _reap(self.proc)


Samples = dict[tuple[str, tuple[Any, ...]], float]
_SAMPLE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})? (\S+)')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"')


def parse(text: str) -> Samples:
    """The samples of a text exposition, keyed by (name, sorted label pairs)."""
    out = {}
    for line in text.splitlines():
        if line and line[0] != "#" and (m := _SAMPLE.match(line)):
            labels = tuple(sorted(_LABEL.findall(m.group(2) or "")))
            out[(m.group(1), labels)] = float(m.group(3))
    return out


def value(samples: dict[Any, float], name: str, labels: dict[str, str]) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def series(samples: dict[Any, float], name: str) -> int:
    return sum(1 for (n, _) in samples if n == name)


@contextlib.asynccontextmanager
async def client(script: Path, python: str, url: str, count: int, extra: tuple[str, ...] = ()
                 ) -> AsyncIterator[asyncio.subprocess.Process]:
    proc = await asyncio.create_subprocess_exec(
        python, str(script), "--url", url, "--count", str(count), *extra, stdout=subprocess.PIPE, cwd=HERE)
    try:
        yield proc
    finally:
        if proc.returncode is None:
            proc.kill()
        await proc.wait()


# ---------------------------------------------------------------- measurements


@dataclass
class Results:
    plan: str
    data: dict[str, Any] = field(default_factory=dict)

    def __setitem__(self, key: str, val: Any) -> None:
        self.data[key] = val

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


async def flood_client(sender: Sender, script: Path, python: str, role: str, n: int,
                       corpus: str = "stress", extra: tuple[str, ...] = ()) -> dict[str, float]:
    url = f"ws://127.0.0.1:{sender.port}/v1/ws?role={role}"
    async with client(script, python, url, n, extra) as proc:
        assert proc.stdout is not None
        json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
        await sender.cmd("wait", role=role)
        sent = await sender.cmd("flood", role=role, corpus=corpus, count=n)
        out = json.loads(await asyncio.wait_for(proc.stdout.readline(), 600))
    if out["frames"] != n:
        raise AssertionError(f"{role} received {out['frames']} of {n} frames")
    wall = out["last"] - sent["started"]
    return {"fps": n / wall, "us": out["cpu"] / n * 1e6, "sender_us": sent["cpu"] / n * 1e6,
            **({"dropped": out["dropped"]} if "dropped" in out else {})}


async def flood_monitor(sender: Sender, mon: Monitor, n: int, corpus: str = "stress") -> dict[str, float]:
    base = await mon.frames()
    cpu0 = await wait_idle(mon.pid)
    sent = await sender.cmd("flood", role=mon.role, corpus=corpus, count=n)
    cpu1, s = await mon.counted(base + n)
    last = value(s, "gateway_monitor_ws_last_frame_timestamp_seconds", {})
    wall = last - sent["started"]
    return {"fps": n / wall, "us": (cpu1 - cpu0) / n * 1e6, "sender_us": sent["cpu"] / n * 1e6}


async def sender_ceiling(sender: Sender, n: int) -> float:
    """Frames/s the sender writes into a client that reads raw bytes and discards them."""
    loop = asyncio.get_running_loop()
    sock = socket.create_connection(("127.0.0.1", sender.port))
    sock.sendall(b"GET /v1/ws?role=discard HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\n"
                 b"Connection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
                 b"Sec-WebSocket-Version: 13\r\n\r\n")

    def drain() -> float:
        buf = bytearray(1 << 20)
        while sock.recv_into(buf):
            pass
        return time.time()

    try:
        await sender.cmd("wait", role="discard")
        reader = loop.run_in_executor(None, drain)
        sent = await sender.cmd("flood", role="discard", corpus="stress", count=n, close=True)
        eof = await reader
    finally:
        sock.close()
    return float(n / (eof - sent["started"]))


async def throughput(res: Results, plan: Plan, sender: Sender, mon: Monitor) -> None:
    sink, monitor, backtest = [], [], []
    for _ in range(plan.reps):
        sink.append(await flood_client(sender, HERE / "sink.py", sys.executable, "sink", plan.flood))
        monitor.append(await flood_monitor(sender, mon, plan.flood))
        if plan.backtest:
            backtest.append(await flood_monitor(sender, mon, plan.flood, corpus="backtest"))
    res["sender_fps"] = statistics.median([await sender_ceiling(sender, plan.flood)
                                           for _ in range(max(1, plan.reps // 2))])
    res["sink"] = _median(sink)
    res["monitor"] = _median(monitor)
    res["monitor_runs"] = [round(r["fps"]) for r in monitor]
    res["sink_runs"] = [round(r["fps"]) for r in sink]
    if backtest:
        res["backtest"] = _median(backtest)


def _median(runs: list[dict[str, float]]) -> dict[str, float]:
    return {k: statistics.median(r[k] for r in runs) for k in runs[0]}


async def ratio_runs(sender: Sender, monitors: dict[str, Monitor], n: int, reps: int
                     ) -> dict[str, dict[str, list[dict[str, float]]]]:
    """Flood `n` frames of each ratio mix into each consumer, interleaved, `reps` times.

    Consumers: both receive-only clients (SINKS, a new process per run) and each monitor (its
    own long-lived process). One round runs every consumer on both mixes; the order of the
    consumers rotates from round to round, so none is always first or always after another.
    """
    names = [*SINKS, *monitors]
    runs: dict[str, dict[str, list[dict[str, float]]]] = {m: {c: [] for c in names} for m in RATIO_MIXES}
    for rep in range(reps):
        shift = rep % len(names)
        for mix in RATIO_MIXES:
            for name in names[shift:] + names[:shift]:
                if name in SINKS:
                    r = await flood_client(sender, HERE / "sink.py", sys.executable, "sink", n,
                                           corpus=mix, extra=SINKS[name])
                else:
                    r = await flood_monitor(sender, monitors[name], n, corpus=mix)
                runs[mix][name].append(r)
    return runs


def ratio_summary(runs: dict[str, list[dict[str, float]]], monitors: list[str], mix: str) -> dict[str, Any]:
    """Best and median of each consumer; each monitor's ratio to the faster receive-only client."""
    consumers = {}
    for name, rs in runs.items():
        best = max(rs, key=lambda r: r["fps"])
        consumers[name] = {"best_fps": best["fps"], "best_us": best["us"],
                           "median_fps": statistics.median(r["fps"] for r in rs),
                           "median_us": statistics.median(r["us"] for r in rs),
                           "runs_fps": [round(r["fps"]) for r in rs],
                           "runs_us": [round(r["us"], 3) for r in rs]}
    ceiling = max(SINKS, key=lambda s: consumers[s]["best_fps"])
    top = consumers[ceiling]
    target = RATIO_TARGETS[mix]
    ratios = {}
    for m in monitors:
        best = consumers[m]["best_fps"] / top["best_fps"]
        ratios[m] = {"ratio_best": best, "ratio_median": consumers[m]["median_fps"] / top["median_fps"],
                     "cpu_ratio": top["median_us"] / consumers[m]["median_us"], "ok": best >= target}
    return {"consumers": consumers, "ceiling": ceiling, "target": target, "ratios": ratios}


async def ratio(res: Results, plan: Plan, sender: Sender, workdir: Path,
                session: aiohttp.ClientSession) -> None:
    """Monitor / fastest receive-only client, live and stress mixes, best of `ratio_reps` runs."""
    mon = await Monitor.start(sender, workdir, "monitor-ratio", session, role="ratio")
    try:
        runs = await ratio_runs(sender, {"monitor": mon}, plan.flood, plan.ratio_reps)
    finally:
        await mon.stop()
    res["ratio"] = {"frames": plan.flood, "reps": plan.ratio_reps,
                    "mixes": {mix: ratio_summary(runs[mix], ["monitor"], mix) for mix in RATIO_MIXES}}


def sdk_venv(venv: Path) -> tuple[Path, list[str]]:
    """The SDK's own virtual environment (it pins websockets<17): created on first use."""
    python = venv / "bin" / "python"
    if not python.exists() or subprocess.run([str(python), "-c", "import tektii"],
                                             capture_output=True, check=False).returncode:
        print(f"installing the SDK (pip install tektii) into {venv} ...", file=sys.stderr)
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run([str(python), "-m", "pip", "install", "--quiet", "tektii"], check=True)
    version = subprocess.run([str(python), "-c", "import importlib.metadata as m;"
                              "print(m.version('tektii'), m.version('websockets'))"],
                             capture_output=True, text=True, check=True).stdout.split()
    return python, version


async def sdk(res: Results, plan: Plan, sender: Sender, venv: Path) -> None:
    python, version = await asyncio.to_thread(sdk_venv, venv)
    runs = [await flood_client(sender, HERE / "sdk_client.py", str(python), "sdk", plan.sdk_frames)
            for _ in range(plan.sdk_reps)]
    res["sdk"] = {**_median(runs), "tektii": version[0], "websockets": version[1]}


async def paced(sender: Sender, mon: Monitor, rate: int, seconds: float, corpus: str = "stress",
                during: Callable[[], Any] | None = None) -> dict[str, Any]:
    base = await mon.frames()
    cpu0 = await wait_idle(mon.pid)
    task = asyncio.ensure_future(during()) if during else None
    try:
        out = await sender.cmd("paced", role=mon.role, corpus=corpus, rate=rate, seconds=seconds,
                               timeout=seconds + 120)
    finally:
        if task:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    cpu1, s = await mon.counted(base + out["written"])
    return {**out, "cpu_pct": (cpu1 - cpu0) / out["seconds"] * 100, "samples": s,
            "us": (cpu1 - cpu0) / max(1, out["written"]) * 1e6}


async def paced_sink(sender: Sender, rate: int, seconds: float) -> float:
    """CPU % of one core that the receive-only client needs at this rate."""
    n = int(rate * seconds)
    url = f"ws://127.0.0.1:{sender.port}/v1/ws?role=sink"
    async with client(HERE / "sink.py", sys.executable, url, n) as proc:
        assert proc.stdout is not None
        json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
        await sender.cmd("wait", role="sink")
        out = await sender.cmd("paced", role="sink", corpus="stress", rate=rate, seconds=seconds,
                               timeout=seconds + 120)
        got = json.loads(await asyncio.wait_for(proc.stdout.readline(), 120))
    if got["frames"] != out["written"]:
        raise AssertionError(f"sink received {got['frames']} of {out['written']} frames")
    return float(got["cpu"] / out["seconds"] * 100)


async def fixed_rates(res: Results, plan: Plan, sender: Sender, mon: Monitor) -> None:
    table = {}
    for rate in plan.rates:
        runs = []
        sink = []
        for _ in range(plan.rate_reps):
            runs.append(await paced(sender, mon, rate, plan.rate_seconds))
            sink.append(await paced_sink(sender, rate, plan.rate_seconds))
        table[rate] = {"cpu_pct": statistics.median(r["cpu_pct"] for r in runs),
                       "sink_cpu_pct": statistics.median(sink),
                       "dropped": sum(r["dropped"] for r in runs),
                       "peak_queue": max(r["peak_queue"] for r in runs),
                       "sender_max_tick_gap_ms": max(r["max_tick_gap_ms"] for r in runs)}
    res["rates"] = table


async def soak(res: Results, plan: Plan, sender: Sender, mon: Monitor) -> None:
    before = await mon.samples()
    base = await mon.frames()
    sent = await sender.cmd("staleness", role=mon.role, prefix="SERIES", count=SERIES)
    await mon.counted(base + sent["frames"])
    s = await mon.samples()
    res["series"] = series(s, "gateway_monitor_symbol_stale_since_timestamp_seconds")
    idle = [(await mon.text(PROMETHEUS_HEADERS)) for _ in range(10)]
    res["scrape_idle_ms"] = statistics.median(ms for _, ms, _ in idle)
    res["scrape_bytes"] = {"wire": idle[-1][2], "text": len(idle[-1][0])}
    during: list[float] = []

    async def scraper() -> None:
        start = time.monotonic()
        for i in range(1, int(plan.soak_seconds) + 5):  # bounded: one a second, on a fixed schedule
            await asyncio.sleep(max(0.0, start + i - time.monotonic()))
            _, ms, _ = await mon.text(PROMETHEUS_HEADERS)
            during.append(ms)

    out = await paced(sender, mon, plan.soak_rate, plan.soak_seconds, corpus="soak", during=scraper)
    after = out["samples"]
    counted = {k: value(after, m, labels) - value(before, m, labels) for k, (m, labels) in CRITICAL.items()}
    expected = {k: out["critical"].get(k, 0) - out["dropped_critical"].get(k, 0) for k in CRITICAL}
    res["soak"] = {"rate": plan.soak_rate, "seconds": out["seconds"], "produced": out["produced"],
                   "dropped": out["dropped"], "peak_queue": out["peak_queue"],
                   "sender_max_tick_gap_ms": out["max_tick_gap_ms"],
                   "cpu_pct": out["cpu_pct"], "critical_sent": sum(expected.values()),
                   "critical_counted": sum(counted.values()), "critical_exact": counted == expected,
                   "scrapes": len(during), "scrape_ms_p50": statistics.median(during) if during else None,
                   "scrape_ms_max": max(during) if during else None}


async def memory(res: Results, plan: Plan, sender: Sender, mon: Monitor) -> None:
    first, total = plan.memory_frames
    rss = {"start": rss_mib(mon.pid)}
    await flood_monitor(sender, mon, first)
    rss[f"{first}"] = rss_mib(mon.pid)
    await flood_monitor(sender, mon, total - first)
    rss[f"{total}"] = rss_mib(mon.pid)
    base = await mon.frames()
    sent = await sender.cmd("staleness", role=mon.role, prefix="MEM", count=plan.symbols)
    await mon.counted(base + sent["frames"], timeout=600)
    s = await mon.samples()
    rss["symbols"] = rss_mib(mon.pid)
    res["memory"] = {"rss": rss, "series": series(s, "gateway_monitor_symbol_stale_since_timestamp_seconds"),
                     "dropped_series": value(s, "gateway_monitor_symbol_series_dropped_total", {}),
                     "frames": (first, total), "symbols": plan.symbols}


FEED_INSTRUMENTS = 10_000
FEED_ROUNDS = ("1", "2", "3", "4", "5", "6")
"""Rounds of quotes of every instrument. RSS moves by a few MiB between rounds (the allocator, the
scrapes' 1 MiB expositions); flat means the last round sets no new high above rounds 2-4."""


async def feed_memory(res: Results, plan: Plan, sender: Sender, mon: Monitor) -> None:
    """Feed health with 10,000 instruments: RSS over rounds of their quotes (flat when nothing
    grows per quote), CPU of the once-a-second sweeps while idle, a scrape's cost."""
    rss = {"start": rss_mib(mon.pid)}
    for label in FEED_ROUNDS:
        base = await mon.frames()
        sent = await sender.cmd("instruments", role=mon.role, count=FEED_INSTRUMENTS,
                                rounds=plan.feed_rounds, timeout=600)
        await mon.counted(base + sent["frames"], timeout=600)
        await asyncio.sleep(2.5)  # the sweeps have filed every instrument
        rss[label] = rss_mib(mon.pid)
    s = await mon.samples()
    cpu0 = cpu_seconds(mon.pid)
    await asyncio.sleep(plan.feed_idle_seconds)
    idle_pct = (cpu_seconds(mon.pid) - cpu0) / plan.feed_idle_seconds * 100
    scrapes = [await mon.text(PROMETHEUS_HEADERS) for _ in range(5)]
    res["feed"] = {
        "rss": rss, "rounds": plan.feed_rounds, "idle_cpu_pct": idle_pct,
        "tracked": sum(v for (name, _), v in s.items() if name == "gateway_monitor_instruments"),
        "last_tick_series": series(s, "gateway_monitor_instrument_last_tick_timestamp_seconds"),
        "scrape_ms": statistics.median(ms for _, ms, _ in scrapes), "scrape_kib": scrapes[-1][2] / 1024,
    }


def render_cost() -> dict[str, float]:
    """In-process render of /metrics with SERIES per-symbol series, both formats.

    Steady: nothing changed since the last scrape. Changed: one symbol went stale since, so
    the per-symbol block is joined again (the worst case, every scrape during a flood of STALE).
    """
    from prometheus_client import CollectorRegistry

    from monitor.metrics import Metrics

    metrics = Metrics(CollectorRegistry())
    for i in range(SERIES):
        metrics.symbol_stale_since.set(("alpaca-paper", f"SERIES{i:07d}"), 1.77e9 + i)
    out = {}
    for name, accept in (("text", ""), ("openmetrics", "application/openmetrics-text; version=1.0.0")):
        steady, changed = [], []
        for i in range(15):
            started = time.perf_counter()
            body, _ = metrics.expose(accept)
            steady.append((time.perf_counter() - started) * 1000)
            metrics.symbol_stale_since.set(("alpaca-paper", "CHANGED"), i)
            started = time.perf_counter()
            metrics.expose(accept)
            changed.append((time.perf_counter() - started) * 1000)
        out[name] = statistics.median(steady)
        out[name + "_changed"] = statistics.median(changed)
        started = time.perf_counter()
        gzip.compress(body, 6)
        out[name + "_gzip"] = (time.perf_counter() - started) * 1000
    return out


async def log_line_cost(workdir: Path) -> dict[str, float]:
    """In-process cost of one log call as the monitor makes it: a bound logger, JSON to a
    file, on the event loop (routine lines are flushed when the loop gets control back; here
    every 100 lines, as after one of the pump's batches)."""
    import structlog

    from monitor import logs

    with (workdir / "micro.log").open("w") as stream:
        logs.configure("info", "json", stream=stream)
        log = structlog.get_logger("monitor.events").bind()
        out = {}
        for name, call in (
            ("warning", lambda: log.warning("gateway.rate_limit.rate_limit_warning", requests_remaining=12,
                                            reset_at="2026-03-02T14:31:00+00:00")),
            ("debug_filtered", lambda: log.debug("gateway.order.order_filled")),
        ):
            n = 20_000
            started = time.process_time()
            for i in range(n):
                call()
                if i % 100 == 99:
                    await asyncio.sleep(0)
            out[name] = (time.process_time() - started) / n * 1e6
    return out


async def log_cost(res: Results, plan: Plan, sender: Sender, workdir: Path,
                   session: aiohttp.ClientSession) -> None:
    """The same 100k frames/s at LOG_LEVEL=info and =error: the difference is the log lines."""
    rate = max(plan.rates)
    figures = {}
    for level in ("info", "error"):
        mon = await Monitor.start(sender, workdir, f"monitor-{level}", session, log_level=level)
        try:
            lines0 = _lines(mon.log)
            runs = [await paced(sender, mon, rate, plan.rate_seconds) for _ in range(plan.rate_reps)]
            lines = _lines(mon.log) - lines0
            figures[level] = {"cpu_pct": statistics.median(r["cpu_pct"] for r in runs),
                              "lines_per_s": lines / sum(r["seconds"] for r in runs)}
        finally:
            await mon.stop()
    extra = figures["info"]["cpu_pct"] - figures["error"]["cpu_pct"]
    lines = figures["info"]["lines_per_s"] - figures["error"]["lines_per_s"]
    res["log"] = {"rate": rate, **figures, "extra_cpu_pct": extra,
                  "us_per_line": extra / 100 / lines * 1e6 if lines else None,
                  "micro": await log_line_cost(workdir)}


def _lines(path: Path) -> int:
    with path.open("rb") as f:
        return sum(chunk.count(b"\n") for chunk in iter(lambda: f.read(1 << 20), b""))


# ---------------------------------------------------------------- the table


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), "?")
    return {"nproc": str(os.cpu_count()), "cpu": cpu, "python": sys.version.split()[0],
            "aiohttp": aiohttp.__version__}


def table(res: Results) -> str:
    d = res.data
    rows: list[tuple[str, str, str, str]] = []
    for part in (_throughput_rows, _sdk_rows, _rate_rows, _soak_rows, _memory_rows, _feed_rows, _scrape_rows,
                 _log_rows, _ratio_rows):
        rows += part(d)
    widths = [max(len(row[i]) for row in [*rows, HEADER]) for i in range(4)]
    lines = [_row(HEADER, widths), "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += [_row(row, widths) for row in rows]
    return "\n".join(lines)


Rows = list[tuple[str, str, str, str]]


def _throughput_rows(d: dict[str, Any]) -> Rows:
    if "monitor" not in d:
        return []
    sink, mon = d["sink"], d["monitor"]
    pct = mon["fps"] / sink["fps"] * 100
    rows = [
        ("ceiling: aiohttp receive-and-discard client", "reference",
         f"{sink['fps']:,.0f} frames/s, {sink['us']:.2f} µs CPU/frame", ""),
        ("sender alone (raw discard client)", "not the bottleneck",
         f"{d['sender_fps']:,.0f} frames/s; {mon['sender_us']:.2f} µs CPU/frame while feeding the monitor",
         _ok(d["sender_fps"] > 2 * sink["fps"])),
        ("1 monitor, flood (stress mix)", "≥ 90% of ceiling",
         f"{mon['fps']:,.0f} frames/s = {pct:.0f}% of ceiling, {mon['us']:.2f} µs CPU/frame", _ok(pct >= 90)),
    ]
    if "backtest" in d:
        bt = d["backtest"]
        rows.append(("1b monitor, flood (backtest frames: event_id, sorted keys)", "(reported)",
                     f"{bt['fps']:,.0f} frames/s = {bt['fps'] / sink['fps'] * 100:.0f}% of ceiling, "
                     f"{bt['us']:.2f} µs CPU/frame", ""))
    return rows


def _sdk_rows(d: dict[str, Any]) -> Rows:
    if "sdk" not in d:
        return [("2 SDK AsyncEventStream", "monitor ≥ 20x SDK", "not run", "skip")] if "monitor" in d else []
    sdk = d["sdk"]
    times = d["monitor"]["fps"] / sdk["fps"]
    return [(f"2 SDK AsyncEventStream (tektii {sdk['tektii']}, websockets {sdk['websockets']})",
             "monitor ≥ 20x SDK",
             f"{sdk['fps']:,.0f} frames/s, {sdk['us']:.1f} µs CPU/frame; monitor = {times:.1f}x SDK",
             _ok(times >= 20))]


def _rate_rows(d: dict[str, Any]) -> Rows:
    if "rates" not in d:
        return []
    rates = d["rates"]
    drops = sum(v["dropped"] for v in rates.values())
    return [("3 monitor CPU at fixed rates (% of one core)", "≤ 15% at 50k/s",
             ", ".join(f"{int(r) // 1000}k/s: {v['cpu_pct']:.1f}%" for r, v in rates.items())
             + f" ({drops} dropped); receive-only client: "
             + ", ".join(f"{v['sink_cpu_pct']:.1f}%" for v in rates.values()),
             _ok(rates.get(50_000, {"cpu_pct": 0})["cpu_pct"] <= 15))]


def _soak_rows(d: dict[str, Any]) -> Rows:
    if "soak" not in d:
        return []
    s = d["soak"]
    return [(f"4 gateway queue model: {s['rate'] // 1000}k/s for {s['seconds']:.0f} s, {d['series']:,} "
             f"symbol series, scrape every 1 s", "0 drops; N critical counted once",
             f"{s['dropped']} dropped of {s['produced']:,} (peak queue {s['peak_queue']}/1024); "
             f"critical {s['critical_counted']:.0f}/{s['critical_sent']} "
             f"{'exact' if s['critical_exact'] else 'MISMATCH'}; CPU {s['cpu_pct']:.1f}%",
             _ok(s["dropped"] == 0 and s["critical_exact"]))]


def _memory_rows(d: dict[str, Any]) -> Rows:
    if "memory" not in d:
        return []
    m = d["memory"]
    first, total = m["frames"]
    rss = m["rss"]
    growth = rss[str(total)] - rss[str(first)]
    return [
        (f"5 RSS after {first / 1e6:g}M / {total / 1e6:g}M frames", "≤ 60 MiB, no growth",
         f"{rss[str(first)]:.1f} / {rss[str(total)]:.1f} MiB (start {rss['start']:.1f}; "
         f"growth {growth:+.1f} MiB)", _ok(rss[str(total)] <= 60 and growth <= 1.0)),
        (f"5 {m['symbols']:,} distinct symbols thrown at it", "series at cap, RSS bounded",
         f"{m['series']:,} series (cap {MAX_SYMBOL_SERIES:,}), {m['dropped_series']:,.0f} counted "
         f"as dropped; RSS {rss['symbols']:.1f} MiB",
         _ok(m["series"] <= MAX_SYMBOL_SERIES and rss["symbols"] <= 60)),
    ]


def _feed_rows(d: dict[str, Any]) -> Rows:
    if "feed" not in d:
        return []
    f = d["feed"]
    rss = f["rss"]
    warm, last = max(rss[r] for r in FEED_ROUNDS[1:4]), rss[FEED_ROUNDS[-1]]
    frames = FEED_INSTRUMENTS * f["rounds"]
    return [(f"7 feed health: {FEED_INSTRUMENTS:,} instruments, {len(FEED_ROUNDS)} x {frames:,} quotes",
             "RSS flat", f"{f['tracked']:,.0f} tracked, {f['last_tick_series']:,} last-tick series; RSS "
             f"{rss['start']:.1f} before, {' / '.join(f'{rss[r]:.1f}' for r in FEED_ROUNDS)} MiB after each "
             f"round (last vs highest of rounds 2-4: {last - warm:+.1f}); "
             f"idle CPU (sweeps) {f['idle_cpu_pct']:.1f}% of a core; scrape {f['scrape_ms']:.1f} ms "
             f"({f['scrape_kib']:.0f} KiB gzip)",
             _ok(last - warm <= 1.0 and f["tracked"] >= FEED_INSTRUMENTS))]


def _scrape_rows(d: dict[str, Any]) -> Rows:
    if "render" not in d:
        return []
    r = d["render"]
    result = (f"render {r['text']:.1f} ms (text) / {r['openmetrics']:.1f} ms (OpenMetrics) in-process, "
              f"{r['text_changed']:.1f} / {r['openmetrics_changed']:.1f} ms after a change; gzip "
              f"{r['text_gzip']:.1f} ms")
    if "soak" in d:
        s = d["soak"]
        result += (f"; HTTP scrape {d['scrape_idle_ms']:.1f} ms idle, {s['scrape_ms_p50']:.1f} ms p50 / "
                   f"{s['scrape_ms_max']:.1f} ms max under load "
                   f"({d['scrape_bytes']['wire'] / 1024:.0f} KiB gzip)")
    return [(f"6 /metrics with {SERIES:,} symbol series", "≤ 30 ms", result,
             _ok(max(r["text_changed"], r["openmetrics_changed"]) <= 30))]


def _log_rows(d: dict[str, Any]) -> Rows:
    if "log" not in d:
        return []
    lg = d["log"]
    per_line = f"{lg['us_per_line']:.0f}" if lg["us_per_line"] else "n/a"
    return [(f"log cost at {lg['rate'] // 1000}k/s (LOG_LEVEL info vs error)", "(measure)",
             f"{lg['info']['lines_per_s']:,.0f} lines/s cost {lg['extra_cpu_pct']:.1f}% of a core "
             f"({per_line} µs/line; in-process {lg['micro']['warning']:.0f} µs/line, "
             f"{lg['micro']['debug_filtered']:.1f} µs per filtered debug call)", "")]


def _ratio_rows(d: dict[str, Any]) -> Rows:
    if "ratio" not in d:
        return []
    r = d["ratio"]
    rows: Rows = []
    for mix, m in r["mixes"].items():
        c, ceiling = m["consumers"], m["ceiling"]
        for name in (*SINKS, "monitor"):
            label = f"receive-only client, {SINK_LABELS[name]}" if name in SINKS else "monitor"
            mark = "; the ceiling" if name == ceiling else ""
            rows.append((f"7 {MIX_LABELS[mix]}: {label}", "(reported)", _best_median(c[name]) + mark, ""))
        q = m["ratios"]["monitor"]
        rows.append((f"7 ratio {mix}: monitor / fastest receive-only client, best of {r['reps']} "
                     f"({r['frames']:,} frames)", f"≥ {m['target']:.2f}",
                     f"{q['ratio_best']:.3f} ({c['monitor']['best_fps']:,.0f} / "
                     f"{c[ceiling]['best_fps']:,.0f} frames/s); medians {q['ratio_median']:.3f}; "
                     f"CPU/frame {q['cpu_ratio']:.3f}",
                     _ok(q["ok"])))
    return rows


def _best_median(c: dict[str, Any]) -> str:
    return (f"best {c['best_fps']:,.0f} frames/s ({c['best_us']:.2f} µs CPU/frame), "
            f"median {c['median_fps']:,.0f} ({c['median_us']:.2f} µs)")


HEADER = ("measure", "target", "result", "ok")


def _row(cells: tuple[str, ...], widths: list[int]) -> str:
    return "| " + " | ".join(c.ljust(w) for c, w in zip(cells, widths, strict=True)) + " |"


def _ok(passed: bool) -> str:
    return "yes" if passed else "NO"


# ---------------------------------------------------------------- main


PARTS = ("throughput", "sdk", "rates", "soak", "memory", "feed", "log", "render", "ratio")
COMPARE_PARTS = ("throughput", "rates", "ratio")  # --compare: default throughput,rates


async def run(args: argparse.Namespace) -> Results:
    plan = QUICK if args.quick else FULL
    if args.reps:
        plan = dataclasses.replace(plan, reps=args.reps, rate_reps=args.reps, ratio_reps=args.reps)
    parts = set(args.only.split(",")) if args.only else set(PARTS)
    if args.quick or args.no_sdk:
        parts.discard("sdk")
    if args.quick:
        parts.discard("log")
    res = Results("quick" if args.quick else "full")
    res["machine"] = machine()
    corpora = ",".join(
        (["stress"] if parts & {"throughput", "sdk", "rates", "memory", "log"} else [])
        + (["soak"] if "soak" in parts else [])
        + (["backtest"] if plan.backtest and "throughput" in parts else [])
        + (["live", "stress"] if "ratio" in parts else []))
    with tempfile.TemporaryDirectory(prefix="gm-bench-") as tmp:
        workdir = Path(tmp)
        sender = await Sender.start(corpora)
        try:
            async with aiohttp.ClientSession() as session:
                if parts & {"throughput", "sdk", "rates", "soak"}:
                    mon = await Monitor.start(sender, workdir, "monitor", session)
                    try:
                        for part, fn in (("throughput", throughput), ("rates", fixed_rates), ("soak", soak)):
                            if part in parts:
                                _step(part)
                                await fn(res, plan, sender, mon)
                            if part == "throughput" and "sdk" in parts:
                                _step("sdk")
                                await sdk(res, plan, sender, Path(args.sdk_venv))
                        res["rss_main"] = rss_mib(mon.pid)
                    finally:
                        await mon.stop()
                if "ratio" in parts:
                    _step("ratio")
                    await ratio(res, plan, sender, workdir, session)
                for part, title, measure in (("memory", "memory", memory),
                                             ("feed", "feed health, 10,000 instruments", feed_memory)):
                    if part in parts:  # each on a monitor of its own, started fresh
                        _step(title)
                        mon = await Monitor.start(sender, workdir, f"monitor-{part}", session)
                        try:
                            await measure(res, plan, sender, mon)
                        finally:
                            await mon.stop()
                if "log" in parts:
                    _step("log cost")
                    await log_cost(res, plan, sender, workdir, session)
        finally:
            await sender.stop()
        if "render" in parts:
            res["render"] = render_cost()
    return res


async def compare(args: argparse.Namespace) -> str:
    """Before/after in one run: this checkout's monitor against the one in `args.compare`.

    Parts (--only): throughput (stress and backtest floods, medians), rates (CPU at fixed
    rates), ratio (the `ratio` part for both sides: before, after and both receive-only
    clients interleaved, best of 3). Without --only: throughput,rates.
    """
    plan = QUICK if args.quick else FULL
    reps = args.reps or plan.reps
    ratio_reps = args.reps or plan.ratio_reps
    parts = set(args.only.split(",")) if args.only else {"throughput", "rates"}
    corpora = (["stress", "backtest"] if plan.backtest else ["stress"]) if "throughput" in parts else []
    out: dict[str, dict[str, list[float]]] = {"after": {}, "before": {}}
    ratios: dict[str, dict[str, list[dict[str, float]]]] = {}
    with tempfile.TemporaryDirectory(prefix="gm-bench-") as tmp:
        sender = await Sender.start(",".join(corpora + (list(RATIO_MIXES) if "ratio" in parts else [])))
        try:
            async with aiohttp.ClientSession() as session:
                mons = {"after": await Monitor.start(sender, Path(tmp), "after", session, role="after",
                                                     code=args.after),
                        "before": await Monitor.start(sender, Path(tmp), "before", session, role="before",
                                                      code=args.compare)}
                try:
                    for _ in range(reps if parts & {"throughput", "rates"} else 0):
                        for name, mon in mons.items():
                            for c in corpora:
                                r = await flood_monitor(sender, mon, plan.flood, corpus=c)
                                out[name].setdefault(f"{c} µs/frame", []).append(r["us"])
                                out[name].setdefault(f"{c} frames/s", []).append(r["fps"])
                            for rate in (50_000, 100_000) if "rates" in parts else ():
                                r = await paced(sender, mon, rate, plan.rate_seconds)
                                out[name].setdefault(f"CPU% at {rate // 1000}k/s", []).append(r["cpu_pct"])
                    if "ratio" in parts:
                        _step("ratio")
                        ratios = await ratio_runs(sender, mons, plan.flood, ratio_reps)
                finally:
                    for mon in mons.values():
                        await mon.stop()
        finally:
            await sender.stop()
    lines = []
    if out["after"]:
        lines += [f"A/B, median of {reps} interleaved runs ({plan.flood:,} frames per flood)",
                  "| figure | before | after | change |", "|---|---|---|---|"]
        for key in out["after"]:
            b, a = statistics.median(out["before"][key]), statistics.median(out["after"][key])
            lines.append(f"| {key} | {b:,.2f} | {a:,.2f} | {(a - b) / b * 100:+.1f}% |")
    if ratios:
        lines += _compare_ratio_lines(ratios, plan.flood, ratio_reps)
    return "\n".join(lines)


def _compare_ratio_lines(ratios: dict[str, dict[str, list[dict[str, float]]]], n: int,
                         reps: int) -> list[str]:
    summaries = {mix: ratio_summary(ratios[mix], ["before", "after"], mix) for mix in RATIO_MIXES}
    lines = ["", f"Ratio: monitor / fastest receive-only client, best of {reps} interleaved runs "
             f"({n:,} frames per flood; before, after and both clients in rotating order)",
             "| mix | consumer | best frames/s | µs CPU/frame (best run) | median frames/s | median µs |",
             "|---|---|---|---|---|---|"]
    for mix, m in summaries.items():
        for name, c in m["consumers"].items():
            label = f"client, {SINK_LABELS[name]}" + (" (ceiling)" if name == m["ceiling"] else "") \
                if name in SINKS else f"monitor {name}"
            lines.append(f"| {mix} | {label} | {c['best_fps']:,.0f} | {c['best_us']:.2f} | "
                         f"{c['median_fps']:,.0f} | {c['median_us']:.2f} |")
    lines += ["", "| ratio | target | before | after | medians before / after |", "|---|---|---|---|---|"]
    for mix, m in summaries.items():
        b, a = m["ratios"]["before"], m["ratios"]["after"]
        lines.append(f"| {mix} | ≥ {m['target']:.2f} | {b['ratio_best']:.3f} {_ok(b['ok'])} | "
                     f"{a['ratio_best']:.3f} {_ok(a['ok'])} | "
                     f"{b['ratio_median']:.3f} / {a['ratio_median']:.3f} |")
    return lines


def _step(name: str) -> None:
    print(f"[bench] {time.strftime('%H:%M:%S')} {name}", file=sys.stderr, flush=True)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CI smoke: small counts, no SDK")
    parser.add_argument("--no-sdk", action="store_true", help="skip the SDK comparison")
    parser.add_argument("--sdk-venv", default=str(ROOT / ".venv-sdk"), help="virtual environment of the SDK")
    parser.add_argument("--json", metavar="FILE", help="also write the raw figures as JSON")
    parser.add_argument("--only", metavar="PARTS", help=f"comma-separated subset of {','.join(PARTS)} "
                        f"(with --compare: of {','.join(COMPARE_PARTS)})")
    parser.add_argument("--reps", type=int, default=0, help="override the number of repetitions")
    parser.add_argument("--compare", metavar="DIR",
                        help="A/B: run this checkout's monitor against the monitor/ package in DIR")
    parser.add_argument("--after", metavar="DIR",
                        help="with --compare: the `after` side (default: this checkout)")
    args = parser.parse_args()
    allowed = COMPARE_PARTS if args.compare else PARTS
    if args.only and (unknown := set(args.only.split(",")) - set(allowed)):
        parser.error(f"--only: unknown part(s) {','.join(sorted(unknown))}; choose from {','.join(allowed)}")
    if args.compare:
        args.compare = os.path.abspath(args.compare)
        args.after = os.path.abspath(args.after) if args.after else None
        print(asyncio.run(compare(args)))
        return 0
    started = time.monotonic()
    res = asyncio.run(run(args))
    res["elapsed_s"] = time.monotonic() - started
    m = res["machine"]
    print(f"gateway-monitor bench ({res.plan}): {m['nproc']} cores, {m['cpu']}, "
          f"Python {m['python']}, aiohttp {m['aiohttp']}; {res['elapsed_s']:.0f} s")
    print(table(res))
    if args.json:
        Path(args.json).write_text(json.dumps(res.data, indent=1, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
