"""The passive observer: keeps one event stream open, reconnecting by the guide's policy."""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog

from . import redaction
from .backoff import Backoff
from .config import Config
from .connection import CannotConnect, Socket, connect, pump
from .gateway_metric_catalog import CONNECTIONS_ACTIVE
from .metrics import Metrics
from .probe import BodyTooLarge, read_body
from .stream import FrameProcessor

log = structlog.get_logger("monitor.ws")

KEY_FILE_POLL_SECONDS = 1.0
CLIENT_POLL_SECONDS = 1.0
MAX_METRICS_BYTES = 8 * 1024 * 1024


@dataclass
class ObserverState:
    """What a person asks first: is it connected, since when, and if not, why."""

    connected: bool = False
    unauthorized: bool = False
    since: float | None = None
    last_change_reason: str | None = None


class Observer:
    """Runs connect → pump → backoff forever; sends nothing but pongs and a final close."""

    def __init__(
        self,
        config: Config,
        session: aiohttp.ClientSession,
        metrics: Metrics,
        processor: FrameProcessor,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        clock: Callable[[], float] = time.monotonic,
        backoff: Backoff | None = None,
        on_connect: Callable[[], None] = lambda: None,
    ) -> None:
        self._config = config
        self._session = session
        self._m = metrics
        self._processor = processor
        self._on_connect = on_connect
        self._sleep = sleep
        self._clock = clock
        self.backoff = backoff or Backoff(
            config.reconnect_initial_seconds, config.reconnect_factor, config.reconnect_max_seconds
        )
        self.state = ObserverState()
        self._ws: Socket | None = None
        self._failures = 0
        self.client_poll_seconds = CLIENT_POLL_SECONDS

    async def run(self) -> None:
        """Observe until cancelled."""
        try:
            while True:
                try:
                    await self._attempt()
                except Exception:  # a bug must cost one reconnect, never the observer
                    log.exception("monitor.ws.unexpected_error")
                    self._m.ws_connected.set(0)
                    await self._close()
                    await self._sleep(self.backoff.next_delay())
        finally:
            await self._close()

    async def _attempt(self) -> None:
        if self._config.wait_for_client:
            await self._wait_for_client()
        key_seen = self._key_file_text()
        try:
            ws = await connect(
                self._session,
                self._config.ws_url,
                self._read_key(),
                heartbeat=self._config.heartbeat_seconds,
                timeout=self._config.connect_timeout_seconds,
                max_frame_bytes=self._config.max_frame_bytes,
            )
        except CannotConnect as err:
            await self._failed(err, key_seen)
            return
        self._ws = ws
        started = self._clock()
        self._connected()
        try:
            reason = await pump(ws, self._processor)
        finally:
            self._m.ws_connected.set(0)
            self.state.connected = False
        await self._close()
        self._disconnected(reason, self._clock() - started)
        await self._sleep(self.backoff.next_delay())

    def _connected(self) -> None:
        self._failures = 0
        self._m.ws_connected.set(1)
        self._m.ws_connects.inc()
        self._m.ws_consecutive_failures.set(0)
        if self.state.unauthorized:
            self._m.ws_unauthorized.set(0)
            log.info("monitor.ws.authorized")
        self.state = ObserverState(connected=True, since=time.time(), last_change_reason="connected")
        log.info("monitor.ws.connected", url=self._config.ws_url)
        self._on_connect()

    def _disconnected(self, reason: str, uptime: float) -> None:
        self._m.ws_disconnects.labels(reason).inc()
        self.state = ObserverState(since=time.time(), last_change_reason=reason)
        if uptime >= self._config.reconnect_reset_after_seconds:
            self.backoff.reset()
        log.warning("monitor.ws.disconnected", reason=reason, uptime_seconds=round(uptime, 3))

    async def _failed(self, err: CannotConnect, key_seen: str | None) -> None:
        self._failures += 1
        self._m.ws_connect_failures.labels(err.reason).inc()
        self._m.ws_consecutive_failures.set(self._failures)
        if err.reason == "unauthorized":
            await self._unauthorized(err, key_seen)
            return
        delay = self.backoff.next_delay()
        self.state = ObserverState(
            unauthorized=self.state.unauthorized, since=time.time(), last_change_reason=err.reason
        )
        log.warning("monitor.ws.connect_failed", reason=err.reason, detail=err.detail,
                    attempt=self._failures, retry_in_seconds=round(delay, 3))
        await self._sleep(delay)

    async def _unauthorized(self, err: CannotConnect, key_seen: str | None) -> None:
        """No tight loop: wait the slow retry interval, or less if the key file changes."""
        if not self.state.unauthorized:
            log.error("monitor.ws.unauthorized", status=err.status,
                      retry_in_seconds=self._config.unauthorized_retry_seconds,
                      hint="the gateway rejects the API key; rotate GATEWAY_API_KEY(_FILE)")
        self._m.ws_unauthorized.set(1)
        self.state = ObserverState(unauthorized=True, since=time.time(),
                                   last_change_reason="unauthorized")
        deadline = self._clock() + self._config.unauthorized_retry_seconds
        while (left := deadline - self._clock()) > 0:
            await self._sleep(min(KEY_FILE_POLL_SECONDS, left))
            if self._key_file_text() != key_seen:
                log.info("monitor.ws.key_file_changed")
                return

    async def _wait_for_client(self) -> None:
        """Backtest safety: upgrade only once another client (the strategy) is connected.

        The first client to connect starts a backtest, so the monitor must never be first.
        """
        waiting_since: float | None = None
        try:
            while True:
                active, problem = await self._connections_active()
                if active is not None and active >= 1:
                    if waiting_since is not None:
                        log.info("monitor.ws.client_present", connections_active=active,
                                 waited_seconds=round(self._clock() - waiting_since, 3))
                    return
                if waiting_since is None:
                    waiting_since = self._clock()
                    self._m.ws_waiting_for_client.set(1)
                    self.state = ObserverState(since=time.time(), last_change_reason="waiting_for_client")
                    log.info("monitor.ws.waiting_for_client", connections_active=active, problem=problem,
                             poll_seconds=self.client_poll_seconds,
                             hint="MONITOR_WAIT_FOR_CLIENT is on: connecting once another client is")
                await self._sleep(self.client_poll_seconds)
        finally:
            self._m.ws_waiting_for_client.set(0)

    async def _connections_active(self) -> tuple[float | None, str | None]:
        """gateway_ws_connections_active from the gateway's /metrics, or None and why not."""
        url = f"{self._config.http_url}/metrics"
        timeout = aiohttp.ClientTimeout(total=self._config.probe_timeout_seconds)
        try:
            async with self._session.get(url, timeout=timeout, allow_redirects=False) as resp:
                if resp.status != 200:
                    return None, f"HTTP {resp.status} from /metrics"
                body = await read_body(resp, MAX_METRICS_BYTES)
        except BodyTooLarge as err:
            return None, f"/metrics: {err}"
        except TimeoutError:
            return None, "timeout reading /metrics"
        except (aiohttp.ClientError, OSError) as err:
            return None, f"{type(err).__name__}: {err}"
        active = connections_active(body.decode("utf-8", "replace"))
        return active, None if active is not None else f"no usable {CONNECTIONS_ACTIVE} in /metrics"

    def _read_key(self) -> str | None:
        if self._config.api_key_file is None:
            key = self._config.api_key
        else:
            text = self._key_file_text()
            if text is None:
                raise CannotConnect("key_unavailable", f"cannot read {self._config.api_key_file}")
            key = text
        redaction.register(key)
        return key or None

    def _key_file_text(self) -> str | None:
        if self._config.api_key_file is None:
            return None
        try:
            return Path(self._config.api_key_file).read_text(encoding="utf-8").strip()
        except (OSError, UnicodeDecodeError):
            return None

    async def _close(self) -> None:
        ws, self._ws = self._ws, None
        if ws is not None and not ws.closed:
            await ws.close(code=aiohttp.WSCloseCode.OK, message=b"monitor shutting down")


def connections_active(exposition: str) -> float | None:
    """Sum of the gateway_ws_connections_active samples in a text exposition; None when absent.

    The gateway exports a series only after its first change, so absent means no client yet.
    """
    total: float | None = None
    for line in exposition.splitlines():
        if not line.startswith(CONNECTIONS_ACTIVE):
            continue
        rest = line[len(CONNECTIONS_ACTIVE):]
        if rest.startswith("{"):
            rest = rest[rest.rfind("}") + 1:]
        elif not rest[:1].isspace():
            continue  # another metric whose name starts with the same text
        try:
            value = float(rest.split()[0])
        except (IndexError, ValueError):
            continue
        if math.isfinite(value):
            total = (total or 0.0) + value
    return total
