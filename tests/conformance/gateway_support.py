"""The real Trading Gateway, the fake Saxo broker, a raw client and a cuttable TCP proxy.

Everything runs on 127.0.0.1 as real processes or real sockets, every wait is bounded, and
everything is stopped by whoever started it. The gateway binary comes from TEKTII_GATEWAY_BIN
(default ../shared/real-gateway/tektii-gateway), fake_saxo.py from TEKTII_FAKE_SAXO (default
../shared/real-gateway/fake_saxo.py); see conftest.py for the skip when they are missing.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
from harness.net import free_port

from monitor import protocol
from monitor.config import SETTINGS

HOST = "127.0.0.1"
REPO_ROOT = Path(__file__).resolve().parents[2]
SHARED_GATEWAY_DIR = REPO_ROOT.parent / "shared" / "real-gateway"
API_KEY = "conformance-suite-api-key-" + "k" * 24  # the gateway wants at least 32 characters
READY_TIMEOUT = 15.0
STOP_TIMEOUT = 10.0

MOCK_SUBSCRIPTIONS = [
    {
        "platform": "mock",
        "instrument": "AAPL",
        "events": ["quote", "candle_*", "order_update", "position_update", "trade_update", "account_update"],
    }
]
SAXO_SYMBOLS = ("EURUSD:FxSpot", "GBPUSD:FxSpot")
SAXO_SUBSCRIPTIONS = [{"platform": "saxo-sim", "instrument": s, "events": ["quote"]} for s in SAXO_SYMBOLS]
SAXO_GIVE_UP_SECONDS = 6  # RECONNECT_MAX_DURATION_SECS


def configured_path(env_var: str, default: Path) -> Path | None:
    """The path named by `env_var`, else `default` when it exists, else None."""
    value = os.environ.get(env_var)
    if value:
        return Path(value)
    return default if default.exists() else None


def gateway_binary() -> Path | None:
    """The real gateway to test against: $TEKTII_GATEWAY_BIN or ../shared/real-gateway/tektii-gateway."""
    return configured_path("TEKTII_GATEWAY_BIN", SHARED_GATEWAY_DIR / "tektii-gateway")


def fake_saxo_script() -> Path | None:
    """The fake Saxo broker: $TEKTII_FAKE_SAXO or ../shared/real-gateway/fake_saxo.py."""
    return configured_path("TEKTII_FAKE_SAXO", SHARED_GATEWAY_DIR / "fake_saxo.py")


SAXO_SKIP_REASON = (
    "Saxo-mode conformance tests skipped: no fake_saxo.py; set TEKTII_FAKE_SAXO "
    "(default ../shared/real-gateway/fake_saxo.py)"
)
RECONCILE_GRACE_SECONDS = 2.0


def require_fake_saxo() -> Path:
    """The fake Saxo script, or skip the calling module with one clear line."""
    script = fake_saxo_script()
    if script is None or not script.exists():
        pytest.skip(SAXO_SKIP_REASON + (f" (not found: {script})" if script else ""), allow_module_level=True)
    return script


def monitor_settings() -> dict[str, Any]:
    """Monitor settings of these tests beyond tests/support.FAST: a short reconcile grace,
    when the monitor has that setting."""
    names = {s.name for s in SETTINGS}
    return {"reconcile_grace_seconds": RECONCILE_GRACE_SECONDS} if "reconcile_grace_seconds" in names else {}


def platform_id(broker: object) -> str:
    """The monitor's broker label for a frame's `broker` field: the platform id, `none` when absent.

    Written independently of the monitor (SaxoSim and Saxo_Sim are both saxo-sim), so that a
    frame the monitor would file under `other` shows up as a difference.
    """
    if broker is None or broker == "":
        return protocol.NO_BROKER
    text = re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "-", str(broker))
    return text.lower().replace("_", "-").replace(" ", "-")


def status_brokers(page: str) -> dict[str, str]:
    """broker -> state badge of the status page's Brokers table."""
    section = page.split("<h2>Brokers</h2>", 1)[1].split("<h2>", 1)[0]
    return dict(re.findall(r'<tr><td>([^<]+)</td><td><span class="badge [a-z]+">([^<]+)</span>', section))


def status_stale(page: str) -> dict[str, list[str]]:
    """broker -> symbols of the status page's Stale symbols table."""
    stale: dict[str, list[str]] = {}
    for broker, symbol in re.findall(r"<tr><td>([^<]+)</td><td>([^<]+)</td><td>[^<]*</td></tr>",
                                     status_stale_section(page)):
        stale.setdefault(broker, []).append(symbol)
    return stale


def status_stale_section(page: str) -> str:
    """The status page's Stale symbols section (its heading and body)."""
    return "<h2>Stale symbols" + page.split("<h2>Stale symbols", 1)[1].split("<h2>", 1)[0]


async def http_get(url: str, timeout: float = 3.0) -> tuple[int, str]:
    """Status and body of GET `url`."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=timeout)) as session, \
            session.get(url) as resp:
        return resp.status, await resp.text()


async def wait_until(check: Callable[[], Any], timeout: float, what: str, interval: float = 0.05) -> float:
    """Await (or call) `check` until truthy; return the seconds it took, fail after `timeout`."""
    started = time.monotonic()
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return time.monotonic() - started
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(interval)


@dataclass
class Process:
    """A child process with its log file; stopped with SIGTERM, then SIGKILL after a bound."""

    name: str
    argv: list[str]
    env: dict[str, str]
    workdir: Path
    popen: subprocess.Popen[bytes] | None = None
    starts: int = 0
    _log: IO[bytes] | None = None

    @property
    def log_path(self) -> Path:
        """The log of the latest start."""
        return self.workdir / f"{self.name}-{self.starts}.log"

    def start(self) -> None:
        """Start the process (not yet ready); a new log file per start."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.starts += 1
        self._log = self.log_path.open("wb")
        self.popen = subprocess.Popen(self.argv, stdout=self._log, stderr=subprocess.STDOUT,
                                      cwd=self.workdir, env=self.env)

    def running(self) -> bool:
        """True while the process has not exited."""
        return self.popen is not None and self.popen.poll() is None

    def describe(self) -> str:
        """Whether it runs (or its exit code), and the end of its log: for a failure message."""
        state = "running" if self.running() else f"exited with {self.popen and self.popen.returncode}"
        return f"{self.name} {state}; {self.log_path} ends:\n{self.log_tail()}"

    def log_tail(self, lines: int = 20) -> str:
        """The last lines of the latest log."""
        if not self.log_path.exists():
            return ""
        return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])

    async def stop(self, sig: int = signal.SIGTERM) -> int | None:
        """Send `sig`, wait up to STOP_TIMEOUT, then SIGKILL; return the exit code."""
        if self.popen is None:
            return None
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                await asyncio.to_thread(self.popen.wait, STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                await asyncio.to_thread(self.popen.wait, STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None
        return self.popen.returncode

    async def wait_ready(self, url: str, timeout: float = READY_TIMEOUT) -> None:
        """Poll GET `url` until 200; fail with the log tail if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if not self.running():
                raise AssertionError(f"{self.name} exited before it was ready:\n{self.log_tail()}")
            with contextlib.suppress(aiohttp.ClientError, OSError, TimeoutError):
                if (await http_get(url, timeout=1.0))[0] == 200:
                    return
            await asyncio.sleep(0.05)
        raise AssertionError(f"{self.name} not ready within {timeout}s:\n{self.log_tail()}")


class RealGateway:
    """The real gateway binary on a fixed 127.0.0.1 port, restartable on that port."""

    def __init__(self, binary: Path, workdir: Path, env: Mapping[str, str]) -> None:
        self.port = free_port()
        self.env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
            "GATEWAY_HOST": HOST,
            "GATEWAY_PORT": str(self.port),
            "GATEWAY_API_KEY": API_KEY,
            "EXIT_STATE_FILE": str(workdir / "exit-state.json"),
            "RUST_LOG": "info",
            "NO_COLOR": "1",
            **env,
        }
        self.process = Process("gateway", [str(binary)], self.env, workdir)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        """Start it and wait for /livez (the log's `Gateway ready` comes at the same moment)."""
        self.process.start()
        await self.process.wait_ready(f"{self.url}/livez")

    async def stop(self) -> int | None:
        """SIGTERM (SIGKILL after STOP_TIMEOUT); the exit code."""
        return await self.process.stop(signal.SIGTERM)

    async def restart(self) -> None:
        """SIGTERM, then start again on the same port."""
        await self.stop()
        await self.start()

    async def health(self) -> dict[str, Any]:
        """The gateway's /health."""
        status, body = await http_get(f"{self.url}/health")
        assert status == 200, (status, body)
        health: dict[str, Any] = json.loads(body)
        return health

    async def metric(self, name: str, **labels: str) -> float | None:
        """One sample of the gateway's own /metrics (None while the series does not exist)."""
        _, text = await http_get(f"{self.url}/metrics")
        wanted = ",".join(f'{k}="{v}"' for k, v in labels.items())
        for line in text.splitlines():
            head, _, value = line.rpartition(" ")
            if head == name or (head.startswith(name + "{") and _same_labels(head[len(name):], wanted)):
                return float(value)
        return None

    async def post_order(self, **fields: str) -> dict[str, Any]:
        """POST /v1/orders through the real REST API; the created order."""
        body = {"symbol": "AAPL", "side": "BUY", "order_type": "MARKET", "quantity": "1", **fields}
        headers = {"Authorization": f"Bearer {API_KEY}"}
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.post(f"{self.url}/v1/orders", json=body, headers=headers) as resp:
            text = await resp.text()
            assert resp.status in (200, 201), (resp.status, text)
            order: dict[str, Any] = json.loads(text)
            return order


def _same_labels(block: str, wanted: str) -> bool:
    got = sorted(block.strip("{}").split(","))
    return got == sorted(wanted.split(",")) if wanted else got == [""]


def mock_env() -> dict[str, str]:
    """Environment of a mock-mode gateway (AAPL, market data every 2 s, orders fill in ~0.5 s)."""
    return {"GATEWAY_PROVIDER": "mock", "SUBSCRIPTIONS": json.dumps(MOCK_SUBSCRIPTIONS)}


def saxo_env(fake_port: int) -> dict[str, str]:
    """Environment of a Saxo-mode gateway against fake_saxo.py on `fake_port`."""
    return {
        "GATEWAY_PROVIDER": "saxo",
        "SAXO_APP_KEY": "x",
        "SAXO_APP_SECRET": "x",
        "SAXO_ACCOUNT_KEY": "fake-account",
        "SAXO_ACCESS_TOKEN": "fake-token",
        "SAXO_BASE_URL": f"http://{HOST}:{fake_port}",
        "SAXO_STREAM_URL": f"ws://{HOST}:{fake_port}/streamingws",
        "RECONNECT_MAX_DURATION_SECS": str(SAXO_GIVE_UP_SECONDS),
        "SUBSCRIPTIONS": json.dumps(SAXO_SUBSCRIPTIONS),
    }


class FakeSaxo:
    """fake_saxo.py (run with this interpreter) and its /_ctl/ controls."""

    def __init__(self, script: Path, workdir: Path) -> None:
        self.port = free_port()
        argv = [sys.executable, str(script), "--host", HOST, "--port", str(self.port), "--tick-secs", "0.5"]
        self.process = Process("fake-saxo", argv, dict(os.environ), workdir)

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        """Start it and wait until its control API answers."""
        self.process.start()
        await self.process.wait_ready(f"{self.url}/_ctl/state")

    async def stop(self) -> None:
        """Terminate it."""
        await self.process.stop()

    async def ctl(self, action: str) -> Any:
        """POST /_ctl/<action> (e.g. `drop`, `refuse?on=1`); its JSON answer."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.post(f"{self.url}/_ctl/{action}") as resp:
            resp.raise_for_status()
            return await resp.json()


@dataclass
class Frame:
    """One frame as a raw client received it."""

    received: float  # monotonic
    data: dict[str, Any]

    @property
    def type(self) -> str:
        """The monitor's frame type: the `type` field, or `other` when it is not one it knows."""
        return protocol.fold(self.data.get("type"), protocol.FRAME_TYPES)

    @property
    def event(self) -> str | None:
        """The `event` field, if any."""
        event = self.data.get("event")
        return event if isinstance(event, str) else None

    @property
    def broker(self) -> str:
        """The broker label the monitor should give this frame."""
        return platform_id(self.data.get("broker"))


@dataclass
class RawClient:
    """A WebSocket client of the gateway that records every frame and never sends anything."""

    url: str
    frames: list[Frame] = field(default_factory=list)
    connected_at: float = 0.0
    ended_at: float | None = None
    close_code: int | None = None  # set when the gateway sent a close frame
    _session: aiohttp.ClientSession | None = None
    _task: asyncio.Task[None] | None = None

    async def connect(self) -> None:
        """Open the socket (Bearer key) and start recording."""
        self._session = aiohttp.ClientSession()
        headers = {"Authorization": f"Bearer {API_KEY}"}
        ws = await self._session.ws_connect(f"{self.url}/v1/ws", headers=headers, autoping=True)
        self.connected_at = time.monotonic()
        self._task = asyncio.create_task(self._record(ws))

    async def _record(self, ws: aiohttp.ClientWebSocketResponse) -> None:
        while True:
            msg = await ws.receive()
            if msg.type is aiohttp.WSMsgType.TEXT:
                self.frames.append(Frame(time.monotonic(), json.loads(msg.data)))
                continue
            if msg.type is aiohttp.WSMsgType.CLOSE:
                self.close_code = int(msg.data)
            self.ended_at = time.monotonic()
            await ws.close()
            return

    @property
    def ended(self) -> bool:
        """True once the socket has ended."""
        return self.ended_at is not None

    async def close(self) -> None:
        """Stop recording and close the session."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        if self._session is not None:
            await self._session.close()

    def since(self, index: int) -> list[Frame]:
        """Frames received after the first `index` ones."""
        return self.frames[index:]

    def type_counts(self, start: int = 0, end: int | None = None) -> Counter[str]:
        """Frames per monitor frame type in frames[start:end]."""
        return Counter(f.type for f in self.frames[start:end])

    def connection_counts(self) -> Counter[tuple[str, str]]:
        """`connection` frames per (event, broker label)."""
        return Counter((f.event or "other", f.broker) for f in self.frames if f.type == "connection")

    def find(self, predicate: Callable[[Frame], bool]) -> Frame | None:
        """The first recorded frame matching `predicate`."""
        return next((f for f in self.frames if predicate(f)), None)


class TcpProxy:
    """A loopback TCP relay whose connections the test can cut, to drop only the monitor's socket."""

    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.port = 0
        self._server: asyncio.Server | None = None
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()

    @property
    def url(self) -> str:
        """http://127.0.0.1:PORT of the proxy."""
        return f"http://{HOST}:{self.port}"

    async def start(self) -> None:
        """Listen on a free 127.0.0.1 port."""
        self._server = await asyncio.start_server(self._accept, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            up_reader, up_writer = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            writer.close()
            return
        pair = (writer, up_writer)
        self._pairs.add(pair)
        await asyncio.gather(_pipe(reader, up_writer), _pipe(up_reader, writer))
        self._pairs.discard(pair)

    def cut(self) -> int:
        """Abort every relayed connection (both sides see the TCP connection die); how many."""
        pairs = list(self._pairs)
        for down, up in pairs:
            down.transport.abort()
            up.transport.abort()
        return len(pairs)

    async def stop(self) -> None:
        """Cut everything and stop listening."""
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    with contextlib.suppress(ConnectionError, OSError):
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    writer.close()
