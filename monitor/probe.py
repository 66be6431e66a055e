"""Probes the gateway's /readyz, /livez and /health, blackbox_exporter style."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import aiohttp
import orjson
import structlog

from .gateway_state import GatewayState, provider_healths
from .metrics import PROBE_ENDPOINTS, Metrics
from .redaction import redact

log = structlog.get_logger("monitor.probe")

MAX_BODY_BYTES = 4 * 1024 * 1024


class BodyTooLarge(Exception):
    """A response body went past its cap."""


async def read_body(resp: aiohttp.ClientResponse, limit: int) -> bytes:
    """The whole body, read in chunks up to `limit` bytes (content.read(n) stops at what has arrived)."""
    body = bytearray()
    async for chunk in resp.content.iter_any():
        body += chunk
        if len(body) > limit:
            raise BodyTooLarge(f"body larger than {limit} bytes")
    return bytes(body)


class Prober:
    """Probes every endpoint each interval; a failure is a metric and a log line, never fatal.

    /health's providers also go to the GatewayState, which reconciles the monitor's belief.
    """

    def __init__(
        self,
        base_url: str,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        timeout: float,
        state: GatewayState,
    ) -> None:
        self._base = base_url
        self._session = session
        self._m = metrics
        self._state = state
        self._timeout = aiohttp.ClientTimeout(total=timeout)
        self._wake = asyncio.Event()
        self._failing: set[str] = set()
        self._info: tuple[str, str] | None = None
        self._brokers: set[str] = set()
        self.last_health: dict[str, Any] | None = None

    async def run(self, interval: float) -> None:
        """Probe forever, one round per interval, or sooner when woken."""
        while True:
            started = time.monotonic()
            self._wake.clear()
            await self.probe_all()
            left = interval - (time.monotonic() - started)
            if left > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._wake.wait(), left)

    def wake(self) -> None:
        """Start the next round now (after a new connection, /health confirms the brokers)."""
        self._wake.set()

    async def probe_all(self) -> None:
        """One round: all endpoints concurrently."""
        await asyncio.gather(*(self._probe(endpoint) for endpoint in PROBE_ENDPOINTS))

    async def _probe(self, endpoint: str) -> None:
        requested_at = time.monotonic()
        started = time.perf_counter()
        status, body, problem = 0, b"", None
        try:
            async with self._session.get(
                f"{self._base}/{endpoint}", timeout=self._timeout, allow_redirects=False
            ) as resp:
                status = resp.status
                body = await read_body(resp, MAX_BODY_BYTES)
            if not 200 <= status < 300:
                problem = f"HTTP {status}"
            elif endpoint == "health":
                problem = self._record_health(body, requested_at)
        except TimeoutError:
            problem = "timeout"
        except BodyTooLarge as err:
            problem = str(err)
        except (aiohttp.ClientError, OSError) as err:
            problem = f"{type(err).__name__}: {err}"
        self._m.probe_duration.labels(endpoint).set(time.perf_counter() - started)
        self._m.probe_status.labels(endpoint).set(status)
        self._m.probe_success.labels(endpoint).set(0 if problem else 1)
        self._log_change(endpoint, problem, status)

    def _log_change(self, endpoint: str, problem: str | None, status: int) -> None:
        # One line per change of state: a down gateway must not flood the log every 5 s.
        if problem and endpoint not in self._failing:
            self._failing.add(endpoint)
            log.warning("monitor.probe.failed", endpoint=endpoint, status=status, problem=problem)
        elif not problem and endpoint in self._failing:
            self._failing.discard(endpoint)
            log.info("monitor.probe.recovered", endpoint=endpoint, status=status)

    def _record_health(self, body: bytes, requested_at: float) -> str | None:
        """Export /health's view of the gateway; return a problem for an unreadable body."""
        try:
            health = orjson.loads(body)
        except orjson.JSONDecodeError:
            return "body is not JSON"
        if not isinstance(health, dict) or not isinstance(health.get("status"), str):
            return "body has no string `status`"
        self.last_health = health
        self._m.gateway_degraded.set(0 if health["status"] == "connected" else 1)
        self._record_info(redact(str(health.get("version", "")))[:64],
                          redact(str(health.get("git_sha", "")))[:64])
        providers = provider_healths(health.get("providers"))
        seen: set[str] = set()
        for provider in providers:
            seen.add(provider.broker)
            self._m.gateway_broker_connected.labels(provider.broker).set(1 if provider.connected else 0)
            self._m.gateway_stale_instruments.labels(provider.broker).set(len(provider.stale))
        for gone in self._brokers - seen:
            self._m.gateway_broker_connected.remove(gone)
            self._m.gateway_stale_instruments.remove(gone)
        self._brokers = seen
        self._state.health(providers, requested_at)
        return None

    def _record_info(self, version: str, git_sha: str) -> None:
        if self._info != (version, git_sha):
            if self._info is not None:
                self._m.gateway_info.remove(*self._info)
            self._m.gateway_info.labels(version, git_sha).set(1)
            self._info = (version, git_sha)
