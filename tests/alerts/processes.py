"""Real Prometheus, Alertmanager and a webhook receiver for end-to-end alerting tests.

Everything listens on 127.0.0.1, keeps its state under a temporary directory, waits for
readiness with a deadline and is torn down by the fixture that started it. Use the fixtures
(`webhook_receiver`, `alertmanager_factory`, `prometheus_factory`) from a conftest:

    from processes import alertmanager_factory, prometheus_factory, webhook_receiver  # noqa: F401

Two version lines are tested (`LINES`, the `version_line` fixture): the current one, Prometheus
3.7.3 and Alertmanager 0.29.0 built from their Go modules by tests/install-go-tools.sh, and the
old one, Debian 12's Prometheus 2.42 and Alertmanager 0.25 installed by alerts/install-tools.sh.
A missing binary, or one of another version, fails the test; it is never skipped.

The simulated gateway and the monitor run as real processes too (`start_simulator`,
`start_monitor`), driven through the simulator's /_sim/ control API (`post`).
"""

from __future__ import annotations

import asyncio
import copy
import ctypes
import functools
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import aiohttp
import pytest
import pytest_asyncio
import yaml
from aiohttp import web
from harness.net import free_port
from toolpaths import TOOLS_BIN

HOST = "127.0.0.1"
INSTALL_HINT = "run `sudo alerts/install-tools.sh` (installs prometheus and prometheus-alertmanager)"
READY_TIMEOUT = 20.0
STOP_TIMEOUT = 10.0
# Alertmanager timings for tests: notify within a second or two instead of minutes.
FAST_TIMINGS = {"group_wait": "1s", "group_interval": "2s", "repeat_interval": "1h"}


@dataclass(frozen=True)
class VersionLine:
    """A Prometheus and an Alertmanager release (with their promtool and amtool) to test on."""

    name: str
    prometheus_version: str  # `prometheus --version` and `promtool --version` start with it
    alertmanager_version: str  # `alertmanager --version` and `amtool --version` start with it
    paths: dict[str, Path]  # prometheus, promtool, alertmanager, amtool
    install_hint: str

    @property
    def title(self) -> str:
        """E.g. "Prometheus 3.7.3 + Alertmanager 0.29.0"."""
        return f"Prometheus {self.prometheus_version} + Alertmanager {self.alertmanager_version}"

    def binary(self, tool: str) -> str:
        """Path of `tool` of this line; fails the test when it is missing or of another version."""
        path = self.paths[tool]
        where = f"{tool} of the {self.name} line ({self.title})"
        if not (path.is_file() and os.access(path, os.X_OK)):
            pytest.fail(f"{where} not at {path}: {self.install_hint}", pytrace=False)
        prometheus = tool in ("prometheus", "promtool")
        expected = self.prometheus_version if prometheus else self.alertmanager_version
        found = _version(str(path))
        if not found.startswith(expected):
            pytest.fail(f"{where}: {path} is version {found!r}; {self.install_hint}", pytrace=False)
        return str(path)


@functools.cache
def _version(path: str) -> str:
    """The version a Prometheus-style binary reports (`NAME, version X.Y.Z (...)`), or ''."""
    out = subprocess.run([path, "--version"], capture_output=True, text=True, timeout=30, check=False)
    match = re.search(r"version (\S+)", out.stdout + out.stderr)
    return match.group(1) if match else ""


LINES = {
    "current": VersionLine(
        "current",
        "3.7.3",
        "0.29.0",
        {tool: TOOLS_BIN / tool for tool in ("prometheus", "promtool", "alertmanager", "amtool")},
        "run `sh tests/install-go-tools.sh` (builds them from their Go modules)",
    ),
    "old": VersionLine(
        "old",
        "2.42.0",
        "0.25.0",
        {
            "prometheus": Path("/usr/bin/prometheus"),
            "promtool": Path("/usr/bin/promtool"),
            "alertmanager": Path("/usr/bin/prometheus-alertmanager"),
            "amtool": Path("/usr/bin/amtool"),
        },
        INSTALL_HINT,
    ),
}


@dataclass
class Notification:
    """One webhook call from Alertmanager, with the time it arrived."""

    path: str
    payload: dict[str, Any]
    received_monotonic: float
    received_wall: float

    @property
    def receiver(self) -> str:
        """Name of the Alertmanager receiver that sent it."""
        return str(self.payload.get("receiver", ""))

    @property
    def status(self) -> str:
        """Status of the group: firing or resolved."""
        return str(self.payload.get("status", ""))

    @property
    def alertnames(self) -> set[str]:
        """Names of the alerts in the notification."""
        return {a.get("labels", {}).get("alertname", "") for a in self.payload.get("alerts", [])}


@dataclass
class WebhookReceiver:
    """A tiny aiohttp server that records every Alertmanager webhook call."""

    notifications: list[Notification] = field(default_factory=list)
    port: int = 0
    _runner: web.AppRunner | None = None
    _arrived: asyncio.Event = field(default_factory=asyncio.Event)

    async def start(self) -> None:
        """Listen on 127.0.0.1 on a free port."""
        app = web.Application()
        app.router.add_post("/{tail:.*}", self._handle)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.bind((HOST, 0))
        self.port = sock.getsockname()[1]
        await web.SockSite(self._runner, sock).start()

    async def close(self) -> None:
        """Stop listening."""
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    def url(self, path: str = "/") -> str:
        """Return the URL of `path` on this receiver."""
        return f"http://{HOST}:{self.port}/{path.lstrip('/')}"

    async def _handle(self, request: web.Request) -> web.Response:
        payload = await request.json()
        self.notifications.append(Notification(request.path, payload, time.monotonic(), time.time()))
        self._arrived.set()
        return web.Response(text="ok")

    async def wait_for(self, predicate: Callable[[Notification], bool], timeout: float) -> Notification:
        """Return the first notification matching `predicate`, waiting up to `timeout` s."""
        deadline = time.monotonic() + timeout
        while True:
            for note in self.notifications:
                if predicate(note):
                    return note
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                got = [(n.path, n.status, sorted(n.alertnames)) for n in self.notifications]
                raise AssertionError(f"no matching notification within {timeout}s; got {got}")
            self._arrived.clear()
            try:
                await asyncio.wait_for(self._arrived.wait(), remaining)
            except TimeoutError:
                continue


_LIBC = ctypes.CDLL(None, use_errno=True) if sys.platform == "linux" else None
_PR_SET_PDEATHSIG = 1


def die_with_parent() -> None:
    """In the child, before exec: SIGTERM it when the process that started it dies, even by
    SIGKILL, so that an interrupted test or harness leaves no server behind."""
    if _LIBC is not None:
        _LIBC.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass
class ManagedProcess:
    """A server process with its log file, readiness check and teardown."""

    name: str
    argv: list[str]
    port: int
    workdir: Path
    ready_path: str = "/-/ready"
    env: dict[str, str] | None = None
    popen: subprocess.Popen[bytes] | None = None
    _log: IO[bytes] | None = None

    @property
    def base_url(self) -> str:
        """http://127.0.0.1:PORT"""
        return f"http://{HOST}:{self.port}"

    @property
    def log_path(self) -> Path:
        """File receiving the process's stdout and stderr."""
        return self.workdir / f"{self.name}.log"

    def start(self) -> None:
        """Start the process (not yet ready)."""
        self.workdir.mkdir(parents=True, exist_ok=True)
        self._log = self.log_path.open("wb")
        env = {**os.environ, **self.env} if self.env is not None else None
        self.popen = subprocess.Popen(
            self.argv, stdout=self._log, stderr=subprocess.STDOUT, cwd=self.workdir, env=env,
            preexec_fn=die_with_parent,
        )

    def log_tail(self, lines: int = 30) -> str:
        """Return the last lines of the process log."""
        if not self.log_path.exists():
            return ""
        text = self.log_path.read_text(encoding="utf-8", errors="replace")
        return "\n".join(text.splitlines()[-lines:])

    async def wait_ready(self, timeout: float = READY_TIMEOUT) -> None:
        """Poll GET `ready_path` until 200; fail with the log tail on exit or timeout."""
        deadline = time.monotonic() + timeout
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=2)) as session:
            while time.monotonic() < deadline:
                assert self.popen is not None
                if self.popen.poll() is not None:
                    pytest.fail(
                        f"{self.name} exited with {self.popen.returncode}:\n{self.log_tail()}", pytrace=False
                    )
                try:
                    async with session.get(f"{self.base_url}{self.ready_path}") as resp:
                        if resp.status == 200:
                            return
                except aiohttp.ClientError:
                    pass
                await asyncio.sleep(0.1)
        pytest.fail(f"{self.name} not ready within {timeout}s:\n{self.log_tail()}", pytrace=False)

    def kill(self) -> None:
        """SIGKILL the process (a crash: no clean close of its sockets by the program)."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(STOP_TIMEOUT)

    def stop(self) -> None:
        """Terminate (then kill) the process and close its log."""
        if self.popen is not None and self.popen.poll() is None:
            self.popen.terminate()
            try:
                self.popen.wait(STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(STOP_TIMEOUT)
        if self._log is not None:
            self._log.close()
            self._log = None


class ProcessStack:
    """The processes of one run, stopped in reverse order, and Prometheus's instant queries."""

    def __init__(self) -> None:
        self.procs: list[ManagedProcess] = []
        self.prometheus: ManagedProcess

    async def _keep(self, starting: Awaitable[ManagedProcess]) -> ManagedProcess:
        proc = await starting
        self.procs.append(proc)
        return proc

    async def stop(self) -> None:
        """Stop every process (one may already be dead)."""
        for proc in reversed(self.procs):
            await asyncio.to_thread(proc.stop)

    async def query(self, expr: str) -> list[dict[str, Any]]:
        """Result of an instant query (a vector's samples; [] when empty)."""
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session, \
                session.get(f"{self.prometheus.base_url}/api/v1/query", params={"query": expr}) as resp:
            body = await resp.json()
        assert body["status"] == "success", (expr, body)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


def prometheus_config(
    scrape_configs: Iterable[dict[str, Any]],
    rule_files: Iterable[Path | str],
    alertmanager_port: int | None,
    interval: str = "1s",
) -> dict[str, Any]:
    """Return a Prometheus configuration with short scrape/evaluation intervals."""
    config: dict[str, Any] = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(Path(f).resolve()) for f in rule_files],
        "scrape_configs": list(scrape_configs),
    }
    if alertmanager_port is not None:
        targets = [f"{HOST}:{alertmanager_port}"]
        config["alerting"] = {"alertmanagers": [{"static_configs": [{"targets": targets}]}]}
    return config


def alertmanager_test_config(
    base: dict[str, Any],
    receiver: WebhookReceiver,
    timings: dict[str, str] | None = None,
    route_timings: dict[str, dict[str, str]] | None = None,
) -> dict[str, Any]:
    """Return `base` with every webhook sent to `receiver` at /<receiver name> and fast timings.

    `timings` apply to the root and to the routes that set their own; `route_timings`
    (receiver name -> timings) then override the child routes of that receiver, so a test can
    keep production's proportions (e.g. warnings wait longer than pages).
    """
    config = copy.deepcopy(base)
    for rcv in config.get("receivers", []):
        for hook in rcv.get("webhook_configs", []):
            hook["url"] = receiver.url(rcv["name"])
    _set_timings(config["route"], {**FAST_TIMINGS, **(timings or {})})
    for child in config["route"].get("routes", []):
        child.update((route_timings or {}).get(child.get("receiver", ""), {}))
    return config


def _set_timings(route: dict[str, Any], timings: dict[str, str], root: bool = True) -> None:
    # The root gets every timing; a child route keeps inheriting unless it sets its own.
    for key, value in timings.items():
        if root or key in route:
            route[key] = value
    for child in route.get("routes", []):
        _set_timings(child, timings, root=False)


def _write_config(workdir: Path, name: str, data: dict[str, Any]) -> Path:
    workdir.mkdir(parents=True, exist_ok=True)
    path = workdir / name
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


async def start_alertmanager(line: VersionLine, workdir: Path, config: dict[str, Any], *,
                             port: int | None = None, log_level: str = "debug") -> ManagedProcess:
    """Start the Alertmanager of `line` on 127.0.0.1 with `config`, clustering off; wait ready."""
    port = port or free_port()
    config_file = _write_config(workdir, "alertmanager.yml", config)
    argv = [
        line.binary("alertmanager"),
        f"--config.file={config_file}",
        f"--storage.path={workdir / 'data'}",
        f"--web.listen-address={HOST}:{port}",
        "--cluster.listen-address=",
        f"--log.level={log_level}",
    ]
    proc = ManagedProcess("alertmanager", argv, port, workdir)
    proc.start()
    await proc.wait_ready()
    return proc


async def start_prometheus(line: VersionLine, workdir: Path, config: dict[str, Any], *,
                           port: int | None = None, resend_delay: str = "1s", log_level: str = "debug",
                           extra_args: tuple[str, ...] = (), ready_timeout: float = READY_TIMEOUT,
                           ) -> ManagedProcess:
    """Start the Prometheus of `line` on 127.0.0.1 with `config` and temporary storage; wait ready."""
    port = port or free_port()
    config_file = _write_config(workdir, "prometheus.yml", config)
    argv = [
        line.binary("prometheus"),
        f"--config.file={config_file}",
        f"--storage.tsdb.path={workdir / 'data'}",
        f"--web.listen-address={HOST}:{port}",
        # Prometheus discovers its Alertmanagers ~5s after start and drops what it sent
        # before; the next send waits for the resend delay (1m by default).
        f"--rules.alert.resend-delay={resend_delay}",
        f"--log.level={log_level}",
        *extra_args,
    ]
    proc = ManagedProcess("prometheus", argv, port, workdir)
    proc.start()
    await proc.wait_ready(ready_timeout)
    return proc


def _python_module(workdir: Path, name: str, port: int, args: list[str], ready_path: str) -> ManagedProcess:
    """A `python -m monitor ...` process with JSON logs, importing the repository's package."""
    repo = Path(__file__).resolve().parents[2]
    env = {"LOG_FORMAT": "json", "PYTHONPATH": str(repo)}
    argv = [sys.executable, "-m", "monitor", *args]
    return ManagedProcess(name, argv, port, workdir, ready_path=ready_path, env=env)


async def start_simulator(workdir: Path, market_data_rate: float = 20.0) -> ManagedProcess:
    """Start `gateway-monitor simulate` (no scenario cycle) on 127.0.0.1; wait for /readyz."""
    port = free_port()
    rate = str(market_data_rate)
    args = ["simulate", "--listen", f"{HOST}:{port}", "--no-cycle", "--market-data-rate", rate]
    proc = _python_module(workdir, "simulator", port, args, "/readyz")
    proc.start()
    await proc.wait_ready()
    return proc


async def start_monitor(workdir: Path, gateway_url: str, *flags: str) -> ManagedProcess:
    """Start `gateway-monitor` against `gateway_url` on 127.0.0.1; wait for /-/ready.

    Probes every second and reconnects within a second, so that states change within a
    scrape or two; `flags` are appended (later flags win).
    """
    port = free_port()
    args = [
        "--gateway-url", gateway_url,
        "--listen", f"{HOST}:{port}",
        "--probe-interval-seconds", "1",
        "--probe-timeout-seconds", "0.5",
        "--reconnect-initial-seconds", "0.2",
        "--reconnect-max-seconds", "1",
        *flags,
    ]  # fmt: skip
    proc = _python_module(workdir, "monitor", port, args, "/-/ready")
    proc.start()
    await proc.wait_ready()
    return proc


async def post(url: str, body: Any = None) -> Any:
    """POST `body` (JSON-encoded unless bytes) to `url`; return the JSON answer (raises on non-2xx)."""
    data = body if isinstance(body, bytes) else (json.dumps(body) if body is not None else None)
    timeout = aiohttp.ClientTimeout(total=10)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.post(url, data=data) as resp:
        resp.raise_for_status()
        return await resp.json()


async def get_text(url: str) -> str:
    """GET `url` and return its body as text (raises on a non-2xx status)."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
        resp.raise_for_status()
        return await resp.text()


async def get_json(url: str) -> Any:
    """GET `url` and return its JSON body (raises on a non-2xx status)."""
    timeout = aiohttp.ClientTimeout(total=5)
    async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url) as resp:
        resp.raise_for_status()
        return await resp.json()


async def post_alerts(alertmanager: ManagedProcess, alerts: list[dict[str, Any]]) -> None:
    """POST alerts ({"labels": ..., "annotations": ...}) to Alertmanager's v2 API."""
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=5)) as session:
        url = f"{alertmanager.base_url}/api/v2/alerts"
        async with session.post(
            url, data=json.dumps(alerts), headers={"Content-Type": "application/json"}
        ) as resp:
            resp.raise_for_status()


StartFn = Callable[[dict[str, Any]], Awaitable[ManagedProcess]]


@pytest_asyncio.fixture
async def webhook_receiver() -> AsyncIterator[WebhookReceiver]:
    """A running webhook receiver on 127.0.0.1."""
    receiver = WebhookReceiver()
    await receiver.start()
    yield receiver
    await receiver.close()


@pytest.fixture(scope="session", params=list(LINES))
def version_line(request: pytest.FixtureRequest) -> VersionLine:
    """Each version line in turn (tests using it, or the factories, run once per line)."""
    line: VersionLine = LINES[request.param]
    return line


async def _factory(
    line: VersionLine,
    workdir: Path,
    starter: Callable[[VersionLine, Path, dict[str, Any]], Awaitable[ManagedProcess]],
) -> AsyncIterator[StartFn]:
    started: list[ManagedProcess] = []

    async def start(config: dict[str, Any]) -> ManagedProcess:
        proc = await starter(line, workdir / str(len(started)), config)
        started.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in reversed(started):
            await asyncio.to_thread(proc.stop)


@pytest_asyncio.fixture
async def alertmanager_factory(version_line: VersionLine, tmp_path: Path) -> AsyncIterator[StartFn]:
    """start(config) -> a ready Alertmanager of the version line; all stopped at teardown."""
    async for start in _factory(version_line, tmp_path / "alertmanager", start_alertmanager):
        yield start


@pytest_asyncio.fixture
async def prometheus_factory(version_line: VersionLine, tmp_path: Path) -> AsyncIterator[StartFn]:
    """start(config) -> a ready Prometheus of the version line (see prometheus_config()); all
    stopped at teardown."""
    async for start in _factory(version_line, tmp_path / "prometheus", start_prometheus):
        yield start
