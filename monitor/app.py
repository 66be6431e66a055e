"""Wires config, metrics, observer, prober and HTTP server into one process on one loop."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Coroutine
from typing import Any

import aiohttp
import structlog
from aiohttp import web
from prometheus_client import CollectorRegistry

from . import __version__
from .config import Config, basic_auth_over_http, plain_ws_to_remote
from .events import EventHandler
from .feed import FeedHealth
from .gateway_state import GatewayState
from .instrument import FeedSettings
from .metrics import PREFIX, PROBE_ENDPOINTS, Metrics
from .observer import Observer, ObserverState
from .probe import Prober
from .server import READY, build_app
from .status import Snapshot
from .stream import FrameProcessor
from .webauth import middlewares
from .webtls import ReloadingTLS

log = structlog.get_logger("monitor")


class Monitor:
    """One monitor instance: start it, read its state, stop it."""

    def __init__(self, config: Config, registry: CollectorRegistry | None = None) -> None:
        self.config = config
        self.metrics = Metrics(registry or CollectorRegistry(auto_describe=True))
        self.state = GatewayState(self.metrics, config.max_symbol_series, config.reconcile_grace_seconds)
        self.handler = EventHandler(self.metrics, self.state)
        self.feed = FeedHealth(self.metrics, self.state, feed_settings(config), self._connected) \
            if config.feed_health else None
        self.processor = FrameProcessor(self.metrics.stream, self.handler, config.max_frame_bytes, self.feed)
        web_config = config.web_config
        self.tls = ReloadingTLS(web_config.tls) if web_config and web_config.tls else None
        self.app = build_app(self.metrics, self.snapshot, middlewares(web_config))
        self.app.cleanup_ctx.append(self._background)
        self._runner: web.AppRunner | None = None
        self.observer: Observer | None = None
        self.prober: Prober | None = None
        self.port = 0

    async def start(self) -> None:
        """Bind the HTTP server and start observing; returns once serving."""
        if plain_ws_to_remote(self.config):
            log.warning("monitor.config.insecure_transport", gateway_url=self.config.gateway_url,
                        hint="the API key travels unencrypted; use https:// for a remote gateway")
        if basic_auth_over_http(self.config):
            log.warning("monitor.config.insecure_basic_auth", listen=self.config.listen,
                        hint="scrape passwords travel unencrypted; add tls_server_config to the web config")
        self._runner = web.AppRunner(self.app, handle_signals=False, access_log=None)
        await self._runner.setup()
        host = self.config.listen_host or None
        site = web.TCPSite(self._runner, host, self.config.listen_port,
                           ssl_context=self.tls.context if self.tls else None)
        await site.start()
        self.port = self._runner.addresses[0][1]
        self.app[READY]["ready"] = True
        log.info("monitor.started", version=__version__, listen=f"{host or '*'}:{self.port}",
                 gateway_url=self.config.gateway_url, scheme="https" if self.tls else "http",
                 basic_auth=bool(self.config.web_config and self.config.web_config.users))

    async def stop(self, reason: str = "stopped") -> None:
        """Close the socket to the gateway (code 1000) and the HTTP server."""
        self.app[READY]["ready"] = False
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("monitor.stopped", reason=reason)

    def _connected(self) -> bool:
        return self.observer is not None and self.observer.state.connected

    def snapshot(self) -> Snapshot:
        """A copy of what the status page shows."""
        state = self.observer.state if self.observer else ObserverState()
        value = self.metrics.registry.get_sample_value
        probes = {
            endpoint: (value(PREFIX + "probe_success", {"endpoint": endpoint}) or 0.0,
                       value(PREFIX + "probe_http_status_code", {"endpoint": endpoint}) or 0.0)
            for endpoint in PROBE_ENDPOINTS
        }
        return Snapshot(
            gateway_url=self.config.gateway_url, connected=state.connected,
            unauthorized=state.unauthorized, since=state.since,
            last_change_reason=state.last_change_reason, probes=probes,
            brokers={broker: (view.state, view.since, view.source)
                     for broker, view in self.state.brokers.items()},
            stale={broker: dict(symbols) for broker, symbols in self.state.stale.items()},
            recent_critical=list(self.handler.recent_critical),
            instruments=self.feed.rows() if self.feed is not None else None, now=time.time(),
        )

    async def _background(self, _app: web.Application) -> AsyncIterator[None]:
        async with aiohttp.ClientSession() as session:
            prober = self.prober = Prober(self.config.http_url, session, self.metrics,
                                          self.config.probe_timeout_seconds, self.state)

            def connected() -> None:
                self.state.connection_opened()
                if self.feed is not None:
                    self.feed.connection_opened()
                prober.wake()  # /health confirms the brokers now, not a probe interval later

            self.observer = Observer(self.config, session, self.metrics, self.processor,
                                     on_connect=connected)
            tasks = [
                _task(self.observer.run(), "observer"),
                _task(self.prober.run(self.config.probe_interval_seconds), "prober"),
            ]
            if self.feed is not None:
                tasks.append(_task(self.feed.run(), "feed"))
            yield
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task


def feed_settings(config: Config) -> FeedSettings:
    """The feed-health part of the configuration."""
    return FeedSettings(config.silence_floor_seconds, config.silence_multiple, config.silence_overrides,
                        config.subscriptions, config.max_symbol_series)


def _task(coro: Coroutine[Any, Any, None], name: str) -> asyncio.Task[None]:
    task = asyncio.create_task(coro, name=name)
    task.add_done_callback(_report_crash)
    return task


def _report_crash(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.critical("monitor.task_crashed", task=task.get_name(), exc_info=task.exception())
