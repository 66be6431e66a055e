"""The processes of a fleet run: simulated gateways, one monitor each, Prometheus, Alertmanager.

Everything listens on 127.0.0.1 and keeps its files under the run's work directory. The gateways
live in a few host processes (fleet_gateways.py, GATEWAYS_PER_HOST each), every monitor is its own
`python -m monitor` process, as in production; Prometheus (processes.LINES["current"]) scrapes
every monitor as job `gateway-monitor` and every gateway's /metrics as job `gateway`, with the
`namespace`/`pod`/`container` labels of the Kubernetes scrape config. `stop()` ends every process
it started, by its own handle, whatever happened before.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import yaml
from processes import (
    LINES,
    ManagedProcess,
    WebhookReceiver,
    alertmanager_test_config,
    die_with_parent,
    start_alertmanager,
    start_prometheus,
)

from harness.durations import duration
from harness.fleet_profile import Profile, prometheus_config, render_rules
from harness.net import HOST, free_port
from harness.paths import ALERTS_DIR, REPO

GATEWAYS_PER_HOST = 25
# The one instrument the dashboard phase mutes falls silent after SILENCE_SECONDS without a tick
# (5 ticks at the default 2 frames/s over 4 instruments), not the default 60 s floor.
SILENT = "MSFT"
SILENCE_SECONDS = 10
SILENCE_OVERRIDES = json.dumps([{"broker": broker, "instrument": SILENT, "threshold_seconds": SILENCE_SECONDS}
                                for broker in ("saxo-live", "alpaca-paper")])
NAMESPACE = "trading-gateway"
HOST_READY_TIMEOUT = 60.0
MONITOR_START_BATCH = 8
STOP_TIMEOUT = 10.0
# What a run leaves in its work directory; removed before the next run (a Prometheus would
# otherwise replay the last run's write-ahead log and count its series too).
RUN_FILES = ("gateways", "monitors", "alertmanager", "prometheus", "rules", "fleet.json")


@dataclass
class Gateway:
    """One simulated gateway of the fleet and its monitor."""

    index: int
    broker: str
    port: int = 0
    monitor: ManagedProcess | None = None

    @property
    def pod(self) -> str:
        """Its pod name, as the scrape labels carry it."""
        return f"gateway-{self.index:03d}"

    @property
    def url(self) -> str:
        """Base URL of the gateway."""
        return f"http://{HOST}:{self.port}"

    def labels(self, container: str) -> dict[str, str]:
        """The labels the Kubernetes scrape config gives a target of this pod."""
        return {"namespace": NAMESPACE, "pod": self.pod, "container": container}


@dataclass
class GatewayHost:
    """A fleet_gateways.py process serving some of the gateways."""

    proc: asyncio.subprocess.Process
    gateways: list[Gateway]
    log: Path


@dataclass
class Fleet:
    """Every process of a fleet run, started by start() and ended by stop()."""

    profile: Profile
    workdir: Path
    gateways: list[Gateway]
    market_data_rate: float = 2.0
    receiver: WebhookReceiver = field(default_factory=WebhookReceiver)
    hosts: list[GatewayHost] = field(default_factory=list)
    prometheus: ManagedProcess | None = None
    alertmanager: ManagedProcess | None = None
    _session: aiohttp.ClientSession | None = None
    _ports: set[int] = field(default_factory=set)

    async def start(self) -> None:
        """Gateways, monitors, webhook receiver, Alertmanager, Prometheus; then wait until every
        target is up and every monitor sees its gateway's broker and instruments."""
        self._clean()
        # force_close: a pooled connection to a gateway that restarted would fail the next call.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True, limit=64))
        await self.receiver.start()
        for first in range(0, len(self.gateways), GATEWAYS_PER_HOST):
            await self._start_host(self.gateways[first:first + GATEWAYS_PER_HOST])
        for first in range(0, len(self.gateways), MONITOR_START_BATCH):
            batch = self.gateways[first:first + MONITOR_START_BATCH]
            await asyncio.gather(*(self._start_monitor(gw) for gw in batch))
        rules = render_rules(self.profile, self.workdir / "rules")
        self.alertmanager = await self._start_alertmanager()
        self.prometheus = await self._start_prometheus(rules)
        n = len(self.gateways)
        checks = {
            "every target up": f"count(up == 1) == {2 * n}",
            "every monitor connected": f"sum(gateway_monitor_ws_connected) == {n}",
            "every broker up": f"count(gateway_monitor_broker_up == 1) == {n}",
            "every instrument tracked": f"sum(gateway_monitor_instruments) >= {4 * n}",
        }
        for what, expr in checks.items():
            if not await self.until(lambda expr=expr: self.query(expr), 90 + n):
                raise RuntimeError(f"fleet never ready: {what} ({expr}); see {self.workdir}")

    async def stop(self) -> None:
        """End every process this fleet started (each by its own handle) and the receiver."""
        for proc in (self.prometheus, self.alertmanager):
            if proc is not None:
                await asyncio.to_thread(proc.stop)
        await asyncio.gather(*(asyncio.to_thread(gw.monitor.stop) for gw in self.gateways if gw.monitor))
        for host in self.hosts:
            await _end(host.proc)
        await self.receiver.close()
        if self._session is not None:
            await self._session.close()

    # --- starting ---------------------------------------------------------------------------

    def _clean(self) -> None:
        for name in RUN_FILES:
            path = self.workdir / name
            if path.is_dir():
                shutil.rmtree(path)
            elif path.exists():
                path.unlink()
        self.workdir.mkdir(parents=True, exist_ok=True)

    async def _start_host(self, gateways: list[Gateway]) -> None:
        log = self.workdir / "gateways" / f"host-{len(self.hosts)}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        argv = [sys.executable, str(REPO / "tests" / "harness" / "fleet_gateways.py"),
                "--brokers", ",".join(gw.broker for gw in gateways),
                "--market-data-rate", str(self.market_data_rate), "--seed", str(len(self.hosts))]
        with log.open("wb") as err:
            proc = await asyncio.create_subprocess_exec(
                *argv, stdin=asyncio.subprocess.DEVNULL, stdout=asyncio.subprocess.PIPE, stderr=err,
                env={**os.environ, "PYTHONPATH": str(REPO)}, preexec_fn=die_with_parent)
        self.hosts.append(GatewayHost(proc, gateways, log))
        assert proc.stdout is not None
        try:
            line = await asyncio.wait_for(proc.stdout.readline(), HOST_READY_TIMEOUT)
            ports = json.loads(line)["ports"]
        except (TimeoutError, ValueError, KeyError) as err:
            tail = log.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"gateway host did not start: {tail}") from err
        for gw, port in zip(gateways, ports, strict=True):
            gw.port = port

    def _port(self) -> int:
        """A free port no process of this fleet was given yet."""
        while (port := free_port()) in self._ports:
            pass
        self._ports.add(port)
        return port

    async def _start_monitor(self, gw: Gateway) -> None:
        port = self._port()
        interval = str(self.profile.interval)
        argv = [sys.executable, "-m", "monitor", "--gateway-url", gw.url, "--listen", f"{HOST}:{port}",
                "--probe-interval-seconds", interval, "--probe-timeout-seconds", interval,
                "--reconnect-initial-seconds", "0.2", "--reconnect-max-seconds", "1",
                "--silence-overrides", SILENCE_OVERRIDES]
        env = {"LOG_FORMAT": "json", "PYTHONPATH": str(REPO)}
        gw.monitor = ManagedProcess(f"monitor-{gw.index:03d}", argv, port, self.workdir / "monitors",
                                    ready_path="/-/ready", env=env)
        gw.monitor.start()
        await gw.monitor.wait_ready(timeout=60)

    async def _start_alertmanager(self) -> ManagedProcess:
        base = yaml.safe_load((ALERTS_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
        config = alertmanager_test_config(base, self.receiver, self.profile.root_timings,
                                          self.profile.route_timings)
        return await start_alertmanager(LINES["current"], self.workdir / "alertmanager", config,
                                        port=self._port(), log_level="info")

    async def _start_prometheus(self, rules: list[Path]) -> ManagedProcess:
        targets = []
        for gw in self.gateways:
            assert gw.monitor is not None
            targets.append({"job": "gateway-monitor", "address": f"{HOST}:{gw.monitor.port}",
                            "labels": gw.labels("gateway-monitor")})
            targets.append({"job": "gateway", "address": f"{HOST}:{gw.port}", "labels": gw.labels("gateway")})
        assert self.alertmanager is not None
        config = prometheus_config(self.profile, targets, rules, self.alertmanager.port)
        return await start_prometheus(
            LINES["current"], self.workdir / "prometheus", config, port=self._port(),
            resend_delay=self.profile.resend_delay, log_level="info",
            extra_args=("--enable-feature=extra-scrape-metrics",), ready_timeout=60)

    # --- using ------------------------------------------------------------------------------

    @property
    def session(self) -> aiohttp.ClientSession:
        """The harness's HTTP session (started by start())."""
        assert self._session is not None
        return self._session

    async def query(self, expr: str, **params: str) -> list[dict[str, Any]]:
        """The result of an instant query ([] when empty); raises on a query error."""
        body = await self.api("query", query=expr, **params)
        result: list[dict[str, Any]] = body["data"]["result"]
        return result

    async def api(self, endpoint: str, **params: str) -> dict[str, Any]:
        """GET /api/v1/<endpoint> of Prometheus; the whole JSON answer (raises on an error)."""
        assert self.prometheus is not None
        url = f"{self.prometheus.base_url}/api/v1/{endpoint}"
        async with self.session.get(url, params=params, timeout=aiohttp.ClientTimeout(total=60)) as resp:
            body: dict[str, Any] = await resp.json()
        if body.get("status") != "success":
            raise RuntimeError(f"{endpoint} {params}: {body.get('error', body)}")
        return body

    async def value(self, expr: str, default: float = 0.0) -> float:
        """The value of a query that returns one sample (`default` when it returns none)."""
        result = await self.query(expr)
        return float(result[0]["value"][1]) if result else default

    async def sim(self, gw: Gateway, path: str, body: Any = None, **params: Any) -> Any:
        """POST to one gateway's /_sim/ control API; its JSON answer."""
        data = json.dumps(body) if body is not None else None
        async with self.session.post(f"{gw.url}/_sim/{path}", data=data, params=params,
                                     timeout=aiohttp.ClientTimeout(total=10)) as resp:
            resp.raise_for_status()
            return await resp.json()

    async def until(self, check: Callable[[], Awaitable[Any]], timeout: float, poll: float = 0.5) -> bool:
        """Await `check()` until it returns something truthy; False after `timeout` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await check():
                return True
            await asyncio.sleep(poll)
        return False

    def pids(self) -> dict[str, list[int]]:
        """Process ids by role, for RSS readings."""
        def pid(proc: ManagedProcess | None) -> list[int]:
            return [proc.popen.pid] if proc is not None and proc.popen is not None else []

        return {
            "monitor": [p for gw in self.gateways for p in pid(gw.monitor)],
            "gateway host": [host.proc.pid for host in self.hosts],
            "prometheus": pid(self.prometheus),
            "alertmanager": pid(self.alertmanager),
        }


async def _end(proc: asyncio.subprocess.Process) -> None:
    """SIGTERM, then SIGKILL after STOP_TIMEOUT; reap."""
    if proc.returncode is None:
        with contextlib.suppress(ProcessLookupError):
            proc.terminate()
        try:
            await asyncio.wait_for(proc.wait(), STOP_TIMEOUT)
        except TimeoutError:
            with contextlib.suppress(ProcessLookupError):
                proc.kill()
            await proc.wait()


def step(seconds: float) -> str:
    """A query step / duration for the API."""
    return duration(max(seconds, 0.001))
