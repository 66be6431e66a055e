"""The simulated Tektii Trading Gateway: event stream, probes, own metrics and faults."""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Callable, Coroutine, Iterable, Sequence
from typing import Any

import orjson
import structlog
from aiohttp import WSMsgType, web

from monitor.simulator import frames
from monitor.simulator.clients import Client, Offer
from monitor.simulator.gateway_exposition import SLOW_CONSUMER, GatewayMetrics
from monitor.simulator.http_api import (
    DEFAULT_BROKER,
    SHUTTING_DOWN_BODY,
    UNAUTHORIZED_BODY,
    EndpointOverride,
    Provider,
    authorised,
    json_response,
    override_middleware,
    probe_routes,
)
from monitor.simulator.market_state import Market

log = structlog.get_logger("simulator")

MAX_MESSAGE_BYTES = 16 * 1024 * 1024
CLOSE_TIMEOUT_SECONDS = 2.0
_CLOSED_TYPES = frozenset({WSMsgType.CLOSE, WSMsgType.CLOSING, WSMsgType.CLOSED, WSMsgType.ERROR})

RouteFactory = Callable[["Simulator"], Iterable[web.RouteDef]]
"""Makes more routes for a simulator at start(), e.g. control.control_routes (the /_sim/ API)."""


class Simulator:
    """An in-process gateway that behaves like the real one, with switches for its faults."""

    def __init__(
        self,
        *,
        api_key: str | None = None,
        queue_size: int = 1024,
        backtest: bool = False,
        version: str = "0.2.3-sim",
        send_connected: bool = False,
        extra_routes: Sequence[RouteFactory] = (),
        broker: str = DEFAULT_BROKER,
    ) -> None:
        """`send_connected`: greet every client with CONNECTED, as the guide documents it.

        Off by default, like the real gateway (v0.2.0 sends no frame on connect).
        `extra_routes`: served beside the gateway's own, e.g. `[control_routes]` for /_sim/.
        `broker`: the platform id of the gateway's provider (/health, its market data, the
        scenarios), e.g. saxo-live.
        """
        self.api_key = api_key
        self.queue_size = queue_size
        self.backtest = backtest
        self.version = version
        self.send_connected = send_connected
        self.extra_routes = tuple(extra_routes)
        self.received: list[str] = []
        self.upgrade_attempts = 0
        self.unauthorized_attempts = 0
        self.scenario_pause = 0.05
        self.metrics = GatewayMetrics(lambda: len(self._clients))
        self.providers: dict[str, Provider] = {broker: Provider()}
        self.market = Market()  # the broker's feed: a restart of the gateway does not change it
        self.overrides: dict[str, EndpointOverride] = {}
        self.shutting_down = False
        self._clients: set[Client] = set()
        self._event_ids = itertools.count(1)
        self._writable = asyncio.Event()
        self._writable.set()
        self._stopping = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._runner: web.AppRunner | None = None
        self._listener: asyncio.Server | None = None
        self._host = "127.0.0.1"
        self._port = 0

    @property
    def port(self) -> int:
        """The bound TCP port (stable across go_down/come_up)."""
        return self._port

    @property
    def url(self) -> str:
        """Base URL of the gateway, e.g. http://127.0.0.1:PORT."""
        return f"http://{self._host}:{self._port}"

    @property
    def broker(self) -> str:
        """The platform the market data and the scenarios are about: the first provider."""
        return next(iter(self.providers), DEFAULT_BROKER)

    @property
    def client_count(self) -> int:
        """Number of upgraded WebSocket clients currently registered."""
        return len(self._clients)

    async def start(self, host: str = "127.0.0.1", port: int = 0) -> None:
        """Start listening; port 0 picks a free port, kept for later come_up()."""
        self._host, self._port = host, port
        app = web.Application(
            client_max_size=MAX_MESSAGE_BYTES, middlewares=[override_middleware(self)]
        )
        app.router.add_get("/v1/ws", self._ws_handler)
        app.router.add_routes(probe_routes(self))
        for routes in self.extra_routes:
            app.router.add_routes(routes(self))
        self._runner = web.AppRunner(
            app, handle_signals=False, access_log=None, shutdown_timeout=0.5
        )
        await self._runner.setup()
        await self.come_up()
        log.info("simulator.started", url=self.url, auth=self.api_key is not None)

    async def stop(self) -> None:
        """Drop every connection, stop listening and release all resources."""
        self._stopping = True
        self._writable.set()
        await self.go_down()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None
        log.info("simulator.stopped")

    async def go_down(self) -> None:
        """Stop listening and drop every connection, like a gateway process dying."""
        await self._stop_listening()
        for client in self._clients:
            client.abort()
        self._clients.clear()
        server = self._runner.server if self._runner is not None else None
        for conn in server.connections if server is not None else ():
            if conn.transport is not None:
                conn.transport.abort()
        log.info("simulator.down", port=self._port)

    async def _stop_listening(self) -> None:
        listener, self._listener = self._listener, None
        if listener is None:
            return
        loop = asyncio.get_running_loop()
        for sock in listener.sockets:
            loop.remove_reader(sock.fileno())
        # Connections accepted a moment ago are still being attached to the server; closing it
        # under them makes asyncio drop them silently (the client hangs) instead of resetting.
        for _ in range(3):
            await asyncio.sleep(0)
        listener.close()

    async def come_up(self) -> None:
        """Listen again on the same host and port."""
        if self._listener is not None or self._runner is None or self._runner.server is None:
            return
        loop = asyncio.get_running_loop()
        self._listener = await loop.create_server(
            self._runner.server, self._host, self._port, reuse_address=True
        )
        self._port = self._listener.sockets[0].getsockname()[1]
        log.info("simulator.up", port=self._port)

    async def graceful_shutdown(
        self, down_seconds: float, *, drain_seconds: float = 0.5, close_frame: bool = True
    ) -> None:
        """A restart as the real gateway does it, then a new, healthy process on the same port.

        DISCONNECTING (no broker), readyz 503, after `drain_seconds` close 1001 (or, as in
        about a third of real shutdowns, no close frame: the process exits first), refused
        for `down_seconds`. The replacement starts with fresh state and says nothing about
        the one it replaced: a give-up is gone, counters start again, no frame on connect.
        """
        self.shutting_down = True
        try:
            await self.broadcast(frames.connection("DISCONNECTING"))
            await asyncio.sleep(drain_seconds)
            if close_frame:
                await self.close_clients(1001, b"Gateway shutting down")
            await self.go_down()
        finally:
            self.shutting_down = False
        self.providers = {platform: Provider() for platform in self.providers}
        self.metrics = GatewayMetrics(lambda: len(self._clients))
        await asyncio.sleep(down_seconds)
        await self.come_up()

    def background(self, coro: Coroutine[Any, Any, Any]) -> asyncio.Task[Any]:
        """Run `coro` as a task the simulator cancels on stop()."""
        task = asyncio.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def encode(self, frame: dict[str, object] | str | bytes) -> bytes:
        """Serialise a frame as the gateway would (serde order, or sorted with event_id)."""
        if isinstance(frame, str):
            return frame.encode()
        if isinstance(frame, bytes):
            return frame
        if self.backtest:
            stamped = {**frame, "event_id": f"evt_{next(self._event_ids)}"}
            return orjson.dumps(stamped, option=orjson.OPT_SORT_KEYS)
        if "type" in frame and next(iter(frame)) != "type":
            frame = {"type": frame["type"], **frame}
        return orjson.dumps(frame)

    async def broadcast(
        self, frame: dict[str, object] | str | bytes, *, binary: bool = False
    ) -> int:
        """Queue one frame for every client; returns how many clients it was queued for."""
        data = self.encode(frame)
        opcode = WSMsgType.BINARY if binary else WSMsgType.TEXT
        queued = 0
        for client in self._clients:
            outcome = client.offer(data, opcode)
            if outcome is Offer.QUEUED:
                queued += 1
            elif outcome is Offer.DROPPED:
                self.metrics.inc(SLOW_CONSUMER)
        return queued

    async def close_clients(self, code: int = 1001, message: bytes = b"") -> None:
        """Send every client a close frame with `code` after flushing its queue."""
        await asyncio.gather(*(client.close(code, message) for client in list(self._clients)))

    def black_hole(self, on: bool = True) -> None:
        """Stop (or resume) reading and writing every socket while keeping TCP open."""
        if on:
            self._writable.clear()
            for client in self._clients:
                client.pause()
        else:
            for client in self._clients:
                client.resume()
            self._writable.set()
        log.info("simulator.black_hole", on=on)

    def inc_metric(
        self, name: str, labels: dict[str, str] | None = None, value: float = 1
    ) -> None:
        """Increment one of the gateway's own metrics (observe, for a histogram)."""
        self.metrics.inc(name, labels, value)

    def set_broker(
        self,
        platform: str,
        *,
        connected: bool | None = None,
        stale_instruments: list[str] | None = None,
    ) -> None:
        """Change what /health and /readyz report for one provider."""
        provider = self.providers.setdefault(platform, Provider())
        if connected is not None:
            provider.connected = connected
        if stale_instruments is not None:
            provider.set_stale(stale_instruments)

    def set_endpoint_override(
        self,
        path: str,
        *,
        status: int | None = None,
        body: bytes | None = None,
        delay: float | None = None,
    ) -> None:
        """Make `path` answer with another status/body and/or after a delay."""
        self.overrides[path] = EndpointOverride(status=status, body=body, delay=delay)

    def clear_endpoint_overrides(self) -> None:
        """Remove every endpoint override."""
        self.overrides.clear()

    async def _ws_handler(self, request: web.Request) -> web.StreamResponse:
        self.upgrade_attempts += 1
        if not authorised(request, self.api_key):
            self.unauthorized_attempts += 1
            log.info("simulator.ws.unauthorized")
            return json_response(UNAUTHORIZED_BODY, status=401)
        # A black-holed gateway leaves the upgrade request unanswered as well.
        await self._writable.wait()
        if request.transport is None or request.transport.is_closing():
            return web.Response(status=499)  # the client gave up while we were black-holed
        if self.shutting_down or self._stopping:
            return json_response(SHUTTING_DOWN_BODY, status=503)
        ws = web.WebSocketResponse(timeout=CLOSE_TIMEOUT_SECONDS, max_msg_size=MAX_MESSAGE_BYTES)
        await ws.prepare(request)
        client = Client(ws, request.transport, self.queue_size, self._writable)
        self._clients.add(client)
        self._greet(client)
        log.info("simulator.ws.connected", clients=len(self._clients))
        try:
            await self._read_loop(ws)
        finally:
            self._clients.discard(client)
            await client.finish()
            log.info("simulator.ws.disconnected", clients=len(self._clients))
        return ws

    def _greet(self, client: Client) -> None:
        if self.send_connected:
            client.offer(self.encode(frames.connection("CONNECTED")), WSMsgType.TEXT)
        # Like the real gateway, a new subscriber gets the current staleness as a snapshot.
        for platform, provider in self.providers.items():
            if provider.stale_instruments:
                snapshot = frames.data_staleness(
                    "STALE",
                    provider.stale_instruments,
                    stale_since=provider.stale_since,
                    broker=platform,
                )
                client.offer(self.encode(snapshot), WSMsgType.TEXT)

    async def _read_loop(self, ws: web.WebSocketResponse) -> None:
        while True:
            await self._writable.wait()
            msg = await ws.receive()
            if msg.type is WSMsgType.TEXT:
                self.received.append(msg.data)
            elif msg.type in _CLOSED_TYPES:
                return
