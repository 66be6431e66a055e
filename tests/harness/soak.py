"""The soak: every scenario and fault, cycled against a simulated gateway process.

The monitor runs in this process, so its asyncio tasks can be counted; the simulated gateway is a
child process (`gateway-monitor simulate`, harness/gateway_process.py), so it can be killed, stopped
and replaced like a real one. After every cycle the soak records the RSS and open file descriptors
of this process (/proc/self), the number of asyncio tasks, and every injected critical event
against the monitor's counters. From the second cycle on (the first one warms caches and pools)
all three must stay flat and every critical event must be counted exactly once.

Run as a script: `python tests/harness/soak.py --minutes 15` (`make soak`);
tests/reliability/test_soak.py runs three cycles.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import os
import secrets
import signal
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import orjson

if __name__ == "__main__":  # run as a script: import harness.* from tests/, as pytest does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.gateway_process import GatewayProcess
from harness.net import HOST, free_port
from monitor import logs, redaction
from monitor.app import Monitor
from monitor.config import load
from monitor.metrics import PREFIX
from monitor.simulator.scenarios import CYCLE, DOCUMENTED_ONLY

BROKER = "alpaca-paper"
FD_SLACK = 2
TASK_SLACK = 0
RSS_SLACK_BYTES = 8 * 1024 * 1024
"""Allowed growth from the second cycle to the last: allocator noise, not a leak per cycle."""

SETTINGS: dict[str, Any] = {
    "listen": f"{HOST}:0",
    "heartbeat_seconds": 0.5,
    "connect_timeout_seconds": 1.0,
    "reconnect_initial_seconds": 0.05,
    "reconnect_max_seconds": 0.3,
    "reconnect_reset_after_seconds": 1.0,
    "unauthorized_retry_seconds": 30.0,
    "probe_interval_seconds": 0.25,
    "probe_timeout_seconds": 0.2,
    "max_frame_bytes": 65536,
    "max_symbol_series": 200,
}
# The one critical event each scenario injects, as the monitor counts it.
CRITICAL_SCENARIOS: dict[str, tuple[str, tuple[tuple[str, str], ...]]] = {
    "position_unprotected": ("error_events_total", (("code", "POSITION_UNPROTECTED"),)),
    "liquidation": ("error_events_total", (("code", "LIQUIDATION"),)),
    "oco_double_exit_frame": ("error_events_total", (("code", "OCO_DOUBLE_EXIT"),)),
    "margin_call": ("account_events_total", (("event", "MARGIN_CALL"),)),
    "broker_give_up": ("connection_events_total",
                       (("event", "BROKER_CONNECTION_FAILED"), ("broker", BROKER))),
}
# Invalid frames of every reason, sent between critical frames: (reason, payload, binary).
FLOOD: tuple[tuple[str, bytes, bool], ...] = (
    ("binary", b"\x00\x01\x02binary", True),
    ("invalid_json", b"{not json", False),
    ("invalid_json", b'{"type":"error","code":"LIQUIDATION","message":"\xff\xfe"}', False),
    ("not_object", b"[1,2,3]", False),
    ("missing_type", b'{"code":"LIQUIDATION"}', False),
    ("wrong_shape", b'{"type":"data_staleness","event":"STALE","symbols":"AAPL"}', False),
    ("too_large", b'{"type":"error","code":"LIQUIDATION","pad":"' + b"x" * (SETTINGS["max_frame_bytes"] + 1)
     + b'"}', False),
)
FLOOD_CRITICAL = ("POSITION_UNPROTECTED", "LIQUIDATION", "OCO_DOUBLE_EXIT")

Key = tuple[str, tuple[tuple[str, str], ...]]


@dataclass
class CycleFigures:
    """What one soak cycle measured, at its quiet end."""

    cycle: int
    seconds: float
    rss_bytes: int
    open_fds: int
    tasks: int
    critical_injected: int
    critical_counted: int
    recovery_seconds: dict[str, float] = field(default_factory=dict)


@dataclass
class SoakReport:
    """Per-cycle figures and every problem found; ok when there is none."""

    cycles: list[CycleFigures] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when every cycle recovered, counted everything and nothing grew."""
        return bool(self.cycles) and not self.problems

    def to_dict(self) -> dict[str, Any]:
        """The report as plain data (for JSON)."""
        return {"ok": self.ok, "cycles": [asdict(c) for c in self.cycles], "problems": self.problems}

    def markdown(self) -> str:
        """A Markdown table of the cycles, then the verdict."""
        faults = sorted({name for c in self.cycles for name in c.recovery_seconds})
        head = ["cycle", "seconds", "RSS MiB", "open fds", "asyncio tasks", "critical injected/counted",
                *(f"{name} recovery s" for name in faults)]
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        for c in self.cycles:
            cells = [str(c.cycle), f"{c.seconds:.1f}", f"{c.rss_bytes / 2**20:.1f}", str(c.open_fds),
                     str(c.tasks), f"{c.critical_injected}/{c.critical_counted}",
                     *(f"{c.recovery_seconds.get(name, float('nan')):.2f}" for name in faults)]
            lines.append("| " + " | ".join(cells) + " |")
        verdict = "flat and complete" if self.ok else "PROBLEMS:\n" + "\n".join(
            f"- {p}" for p in self.problems)
        return "\n".join(lines) + f"\n\nVerdict: {verdict}\n"


def process_figures() -> tuple[int, int, int]:
    """RSS bytes and open file descriptors of this process, and its asyncio tasks."""
    gc.collect()
    with open("/proc/self/statm", encoding="ascii") as statm:
        rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    return rss, len(os.listdir("/proc/self/fd")), len(asyncio.all_tasks())


class Soak:
    """One monitor in this process against one simulated gateway process, cycled through faults."""

    def __init__(self, key_dir: Path, log_dir: Path, market_data_rate: float) -> None:
        self.key = secrets.token_urlsafe(32)
        self.keys_used = [self.key]
        self.monitor_key_file = key_dir / "monitor.key"
        self.gateway_key_file = key_dir / "gateway.key"
        for path in (self.monitor_key_file, self.gateway_key_file):
            path.write_text(self.key + "\n", encoding="utf-8")
        self.gateway = GatewayProcess(free_port(), key_file=self.gateway_key_file,
                                      market_data_rate=market_data_rate,
                                      log_path=log_dir / "gateway.log")
        self.monitor: Monitor | None = None
        self.expected: dict[Key, float] = {}
        self._counters: dict[Key, float] = {}
        self._symbols = 0

    async def start(self) -> None:
        """Start the gateway process, then the monitor."""
        await self.gateway.start()
        redaction.register(self.key)
        config = load({**SETTINGS, "gateway_url": self.gateway.url,
                       "api_key_file": str(self.monitor_key_file)}, environ={})
        self.monitor = Monitor(config)
        await self.monitor.start()
        await self.until(self.connected, 10, "first connection")

    async def stop(self) -> None:
        """Stop the monitor, then the gateway process."""
        if self.monitor is not None:
            await self.monitor.stop("soak finished")
        await self.gateway.close()

    def value(self, name: str, **labels: str) -> float:
        """A sample of the monitor's registry (0 when absent)."""
        assert self.monitor is not None
        return self.monitor.metrics.registry.get_sample_value(PREFIX + name, labels) or 0.0

    def connected(self) -> bool:
        """True while the monitor's WebSocket is open and the gateway sees it."""
        return self.value("ws_connected") == 1

    async def until(self, predicate: Callable[[], bool], timeout: float, what: str) -> float:
        """Poll `predicate`; return the seconds it took, raise TimeoutError naming `what`."""
        started = time.monotonic()
        while not predicate():
            if time.monotonic() - started > timeout:
                raise TimeoutError(f"no {what} within {timeout:g}s")
            await asyncio.sleep(0.01)
        return time.monotonic() - started

    def critical_counted(self) -> tuple[int, int]:
        """(injected, counted) over every critical series the soak feeds."""
        injected = sum(self.expected.values())
        counted = sum(self.value(name, **dict(labels)) for name, labels in self.expected)
        return int(injected), int(counted)

    def _expect(self, key: Key, count: int = 1) -> None:
        self.expected[key] = self.expected.get(key, 0) + count

    async def _all_counted(self) -> None:
        await self.until(lambda: all(self.value(n, **dict(lb)) >= v for (n, lb), v in self.expected.items()),
                         10, "critical events counted")

    async def scenarios(self) -> None:
        """Every incident scenario once, the documented-only ones too; each critical event
        it sends must be counted."""
        for name in (*CYCLE, *sorted(DOCUMENTED_ONLY)):
            await self.gateway.control("POST", f"scenario/{name}", pause=0.01)
            if name in CRITICAL_SCENARIOS:
                self._expect(CRITICAL_SCENARIOS[name])
        await self._all_counted()

    async def flood(self) -> None:
        """Invalid frames of every reason between critical frames; only the invalid are lost."""
        before = {reason: self.value("invalid_frames_total", reason=reason) for reason, _, _ in FLOOD}
        sent: dict[str, int] = {}
        for index, (reason, payload, binary) in enumerate(FLOOD * 3):
            await self.gateway.frame(payload, binary=binary)
            sent[reason] = sent.get(reason, 0) + 1
            code = FLOOD_CRITICAL[index % len(FLOOD_CRITICAL)]
            await self.gateway.frame({"type": "error", "code": code, "message": f"flood {index}"})
            self._expect(("error_events_total", (("code", code),)))
        await self._all_counted()
        await self.until(lambda: all(self.value("invalid_frames_total", reason=r) - before[r] >= n
                                     for r, n in sent.items()), 10, "invalid frames counted")

    async def symbol_burst(self) -> None:
        """Twice the series cap of new symbols go stale, then fresh: series capped, then removed."""
        cap = int(SETTINGS["max_symbol_series"])
        symbols = [f"SOAK{self._symbols + i}" for i in range(2 * cap)]
        self._symbols += len(symbols)
        dropped = self.value("symbol_series_dropped_total")
        await self.gateway.frame({"type": "data_staleness", "event": "STALE", "symbols": symbols,
                                  "broker": BROKER})
        await self.until(lambda: self.value("symbol_series_dropped_total") >= dropped + cap, 10, "cut")
        await self.gateway.frame({"type": "data_staleness", "event": "FRESH", "symbols": symbols,
                                  "broker": BROKER})
        await self.until(lambda: self.value("stale_symbols", broker=BROKER) == 0, 10, "fresh symbols")

    async def kill_and_restart(self) -> float:
        """SIGKILL mid-stream, a new process on the same port; seconds from its port opening to reconnect."""
        await self.gateway.kill()
        await self.until(lambda: not self.connected(), 5, "disconnect after SIGKILL")
        await self.gateway.start()
        await self.until(self.connected, 10, "reconnect after restart")
        return self.reconnected_after_listening()

    def reconnected_after_listening(self) -> float:
        """Seconds from the gateway's port opening (its log) to the monitor's connection (its state)."""
        assert self.monitor is not None and self.monitor.observer is not None
        up, since = self.gateway.listening_since(), self.monitor.observer.state.since
        return max(0.0, since - up) if up is not None and since is not None else float("nan")

    async def graceful_restart(self) -> float:
        """DISCONNECTING, close 1001, refused for 0.3 s, back; seconds from its port opening to reconnect."""
        shutdowns = self.value("ws_disconnects_total", reason="gateway_shutdown")
        await self.gateway.control("POST", "shutdown", down_seconds=0.3)
        await self.until(lambda: self.value("ws_disconnects_total", reason="gateway_shutdown") > shutdowns,
                         5, "graceful disconnect")
        await self.until(self.connected, 10, "reconnect after graceful restart")
        return self.reconnected_after_listening()

    async def black_hole(self) -> float:
        """SIGSTOP until the heartbeat notices, then SIGCONT; seconds from SIGCONT to reconnect."""
        self.gateway.signal(signal.SIGSTOP)
        try:
            await self.until(lambda: not self.connected(), 5, "heartbeat timeout")
        finally:
            self.gateway.signal(signal.SIGCONT)
        return await self.until(self.connected, 10, "reconnect after SIGCONT")

    async def key_rotation(self) -> float:
        """The gateway's key changes (401), then the monitor's file; seconds from file to reconnect."""
        self.key = secrets.token_urlsafe(32)
        self.keys_used.append(self.key)
        redaction.register(self.key)
        self.gateway_key_file.write_text(self.key + "\n", encoding="utf-8")
        await self.gateway.control("POST", "api_key", self.key.encode())
        await self.gateway.control("POST", "close_clients", code=1001)
        await self.until(lambda: self.value("ws_unauthorized") == 1, 10, "401 on reconnect")
        self.monitor_key_file.write_text(self.key + "\n", encoding="utf-8")
        return await self.until(self.connected, 10, "reconnect after key rotation")

    async def probe_failures(self) -> float:
        """503, garbage /health and a hanging /livez; seconds from clearing them to all probes OK."""
        await self.gateway.control("POST", "endpoint", orjson.dumps({"path": "/readyz", "status": 503}))
        await self.gateway.control("POST", "endpoint", orjson.dumps({"path": "/health", "body": "<html>"}))
        await self.gateway.control("POST", "endpoint", orjson.dumps({"path": "/livez", "delay": 5.0}))
        await self.until(lambda: all(self.value("probe_success", endpoint=e) == 0
                                     for e in ("readyz", "livez", "health")), 10, "failing probes")
        if not self.connected():
            raise RuntimeError("probe failures cost the WebSocket connection")
        await self.gateway.control("DELETE", "endpoint")
        return await self.until(lambda: all(self.value("probe_success", endpoint=e) == 1
                                            for e in ("readyz", "livez", "health")), 10, "probes recovered")

    async def oversized_frame(self) -> float:
        """A frame beyond the transport limit drops the connection; seconds to reconnect."""
        too_big = b'{"type":"quote","pad":"' + b"x" * (int(SETTINGS["max_frame_bytes"]) * 17) + b'"}'
        drops = self.value("ws_disconnects_total", reason="frame_too_large")
        started = time.monotonic()
        await self.gateway.frame(too_big)
        await self.until(lambda: self.value("ws_disconnects_total", reason="frame_too_large") > drops,
                         5, "frame_too_large disconnect")
        await self.until(self.connected, 10, "reconnect after oversized frame")
        return time.monotonic() - started

    def counters_went_back(self) -> list[str]:
        """Every counter sample that decreased since the last call."""
        assert self.monitor is not None
        problems = []
        for family in self.monitor.metrics.registry.collect():
            if family.type not in ("counter", "histogram"):
                continue
            for s in family.samples:
                key: Key = (s.name, tuple(sorted(s.labels.items())))
                if s.value < self._counters.get(key, 0.0):
                    problems.append(f"{s.name}{dict(key[1])} went from {self._counters[key]} to {s.value}")
                self._counters[key] = s.value
        return problems

    async def quiet_figures(self) -> tuple[int, int, int]:
        """Figures at a quiet moment: connected, probes OK; the minimum of a few samples."""
        await self.until(lambda: self.connected() and self.value("probe_success", endpoint="health") == 1,
                         10, "a quiet moment")
        samples = []
        for _ in range(5):
            samples.append(process_figures())
            await asyncio.sleep(0.1)
        return min(s[0] for s in samples), min(s[1] for s in samples), min(s[2] for s in samples)

    async def cycle(self, number: int) -> CycleFigures:
        """One round of every scenario and fault."""
        started = time.monotonic()
        await self.scenarios()
        await self.flood()
        await self.symbol_burst()
        recovery = {
            "sigkill": await self.kill_and_restart(),
            "graceful": await self.graceful_restart(),
            "sigstop": await self.black_hole(),
            "key_rotation": await self.key_rotation(),
            "probes": await self.probe_failures(),
            "oversized": await self.oversized_frame(),
        }
        await self.scenarios()
        await self.flood()
        rss, fds, tasks = await self.quiet_figures()
        injected, counted = self.critical_counted()
        return CycleFigures(number, time.monotonic() - started, rss, fds, tasks, injected, counted,
                            {k: round(v, 3) for k, v in recovery.items()})


def check_flat(cycles: Sequence[CycleFigures]) -> list[str]:
    """Problems with resource use from the second cycle on (the first warms pools and caches)."""
    steady = list(cycles[1:])
    if len(steady) < 2:
        return []
    first, problems = steady[0], []
    for c in steady[1:]:
        if c.open_fds > first.open_fds + FD_SLACK:
            problems.append(f"cycle {c.cycle}: {c.open_fds} open fds, "
                            f"{first.open_fds} at cycle {first.cycle}")
        if c.tasks > first.tasks + TASK_SLACK:
            problems.append(f"cycle {c.cycle}: {c.tasks} asyncio tasks, "
                            f"{first.tasks} at cycle {first.cycle}")
    growth = steady[-1].rss_bytes - first.rss_bytes
    if growth > RSS_SLACK_BYTES:
        problems.append(f"RSS grew {growth / 2**20:.1f} MiB from cycle {first.cycle} to {steady[-1].cycle}")
    return problems


async def run_soak(
    cycles: int,
    *,
    minutes: float | None = None,
    workdir: Path | None = None,
    market_data_rate: float = 200.0,
    on_cycle: Callable[[CycleFigures], None] | None = None,
) -> SoakReport:
    """Run `cycles` cycles (0: unlimited), stopping early after `minutes`; never raises on a fault."""
    deadline = time.monotonic() + minutes * 60 if minutes else None
    report = SoakReport()
    with tempfile.TemporaryDirectory(prefix="gateway-monitor-soak-") as key_dir:
        log_dir = workdir or Path(key_dir)
        soak = Soak(Path(key_dir), log_dir, market_data_rate)
        try:
            await soak.start()
            number = 0
            while (cycles == 0 or number < cycles) and (deadline is None or time.monotonic() < deadline):
                number += 1
                figures = await soak.cycle(number)
                report.cycles.append(figures)
                report.problems += soak.counters_went_back()
                if figures.critical_counted != figures.critical_injected:
                    report.problems.append(f"cycle {number}: {figures.critical_injected} critical events "
                                           f"injected, {figures.critical_counted} counted")
                if on_cycle is not None:
                    on_cycle(figures)
        except (TimeoutError, RuntimeError, aiohttp.ClientError, OSError) as err:
            report.problems.append(f"cycle {len(report.cycles) + 1}: {type(err).__name__}: {err}")
        finally:
            await soak.stop()
        report.problems += secrets_in_logs(log_dir, soak.keys_used)
    report.problems += check_flat(report.cycles)
    return report


def secrets_in_logs(log_dir: Path, keys: Sequence[str]) -> list[str]:
    """A problem for every log file under `log_dir` that holds one of `keys`."""
    problems = []
    for path in sorted(log_dir.glob("*.log")):
        text = path.read_text(encoding="utf-8", errors="replace")
        problems += [f"{path.name} contains API key #{i + 1}" for i, key in enumerate(keys) if key in text]
    return problems


def main(argv: Sequence[str] | None = None) -> int:
    """The soak as a script: exit 0 when flat and complete, 1 otherwise."""
    parser = argparse.ArgumentParser(prog="tests/harness/soak.py", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="stop after this long (default 5)")
    parser.add_argument("--cycles", type=int, default=0, help="stop after this many cycles (0: no limit)")
    parser.add_argument("--report-dir", type=Path, default=Path("soak-report"),
                        help="where soak.json, monitor.log and gateway.log go (default ./soak-report)")
    parser.add_argument("--market-data-rate", type=float, default=200.0,
                        help="market-data frames per second from the simulated gateway")
    args = parser.parse_args(argv)
    args.report_dir.mkdir(parents=True, exist_ok=True)
    with (args.report_dir / "monitor.log").open("w", encoding="utf-8") as log_file:
        logs.configure("info", "json", stream=log_file)

        def progress(c: CycleFigures) -> None:
            print(f"cycle {c.cycle}: {c.seconds:.1f}s rss={c.rss_bytes / 2**20:.1f}MiB fds={c.open_fds} "
                  f"tasks={c.tasks} critical={c.critical_injected}/{c.critical_counted}", flush=True)

        report = asyncio.run(run_soak(args.cycles, minutes=args.minutes, workdir=args.report_dir,
                                      market_data_rate=args.market_data_rate, on_cycle=progress))
    (args.report_dir / "soak.json").write_bytes(orjson.dumps(report.to_dict(), option=orjson.OPT_INDENT_2))
    print(report.markdown())
    return 0 if report.ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
