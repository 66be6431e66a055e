"""The passive observer: keeps one event stream open, reconnecting by the guide's policy."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path

import aiohttp
import structlog

from .backoff import Backoff
from .config import Config
from .connection import CannotConnect, Socket, connect, pump
from .logs import register_secret
from .metrics import Metrics
from .stream import FrameProcessor

log = structlog.get_logger("monitor.ws")

KEY_FILE_POLL_SECONDS = 1.0


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
    ) -> None:
        self._config = config
        self._session = session
        self._m = metrics
        self._processor = processor
        self._sleep = sleep
        self._clock = clock
        self.backoff = backoff or Backoff(
            config.reconnect_initial_seconds, config.reconnect_factor, config.reconnect_max_seconds
        )
        self.state = ObserverState()
        self._ws: Socket | None = None
        self._failures = 0

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

    def _read_key(self) -> str | None:
        if self._config.api_key_file is None:
            key = self._config.api_key
        else:
            text = self._key_file_text()
            if text is None:
                raise CannotConnect("key_unavailable", f"cannot read {self._config.api_key_file}")
            key = text
        register_secret(key)
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
