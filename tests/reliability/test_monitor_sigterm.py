"""SIGTERM to the monitor process, in every state it can be in: it closes with 1000 and exits 0 in 2 s."""

from __future__ import annotations

import asyncio
import contextlib
import signal
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import pytest
from aiohttp import WSMsgType, web
from harness.net import HOST, free_port
from reliability_support import MonitorProcess

STOP_BOUND = 2.0
KEY = "sigterm-test-key-" + "t" * 30


@dataclass
class RecordingGateway:
    """A gateway stand-in that records the close code of every WebSocket that ends."""

    mode: str = "serve"
    close_codes: list[int | None] = field(default_factory=list)
    upgrades: int = 0
    port: int = 0

    async def ws(self, request: web.Request) -> web.StreamResponse:
        if self.mode == "unauthorized":
            return web.json_response({"code": "UNAUTHORIZED", "message": "API key missing or invalid"},
                                     status=401)
        if self.mode == "silent":  # accepts the TCP connection, never answers the upgrade
            await asyncio.sleep(3600)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        self.upgrades += 1
        await ws.send_str('{"type":"error","code":"LIQUIDATION","message":"m"}')
        async for msg in ws:
            if msg.type is WSMsgType.ERROR:
                break
        self.close_codes.append(ws.close_code)
        return ws

    async def metrics(self, _request: web.Request) -> web.Response:
        return web.Response(text="# TYPE gateway_ws_connections_active gauge\n"
                                 "gateway_ws_connections_active 0\n")

    async def ok(self, _request: web.Request) -> web.Response:
        return web.json_response({"status": "connected", "version": "x", "git_sha": "y", "providers": []})


@pytest.fixture
async def recording_gateway() -> AsyncIterator[RecordingGateway]:
    gateway = RecordingGateway()
    app = web.Application()
    app.router.add_get("/v1/ws", gateway.ws)
    app.router.add_get("/metrics", gateway.metrics)
    for path in ("/livez", "/readyz", "/health"):
        app.router.add_get(path, gateway.ok)
    runner = web.AppRunner(app, handle_signals=False, shutdown_timeout=0.1)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    gateway.port = runner.addresses[0][1]
    yield gateway
    with contextlib.suppress(Exception):
        await asyncio.wait_for(runner.cleanup(), 5)


# state name -> (gateway mode, extra monitor settings, the log event that shows the state was reached)
STATES = {
    "connected": ("serve", {}, "monitor.ws.connected"),
    "waiting for an upgrade answer": ("silent", {"connect_timeout_seconds": 30}, "monitor.started"),
    "backing off after refused": ("closed port", {}, "monitor.ws.connect_failed"),
    "waiting out a 401": ("unauthorized", {"unauthorized_retry_seconds": 60}, "monitor.ws.unauthorized"),
    "waiting for a client": ("serve", {"wait_for_client": "true"}, "monitor.ws.waiting_for_client"),
}


@pytest.mark.parametrize("state", list(STATES))
async def test_sigterm_stops_cleanly(state: str, recording_gateway: RecordingGateway, monitor_process,
                                     figures) -> None:
    mode, settings, reached = STATES[state]
    recording_gateway.mode = mode
    port = free_port() if mode == "closed port" else recording_gateway.port
    mon: MonitorProcess = await monitor_process(f"http://{HOST}:{port}", {"GATEWAY_API_KEY": KEY}, **settings)
    for _ in range(500):
        if reached in mon.events():
            break
        await asyncio.sleep(0.01)
    assert reached in mon.events()
    if mode == "silent":
        await asyncio.sleep(0.3)  # the upgrade request is on its way
    code, took = await mon.sigterm()
    lines = mon.log_lines()
    if state == "connected":
        for _ in range(100):
            if recording_gateway.close_codes:
                break
            await asyncio.sleep(0.01)
        assert recording_gateway.close_codes == [1000]  # as the gateway saw it
    figures.fault(f"monitor gets SIGTERM while {state}", survived=code == 0 and took < STOP_BOUND,
                  reason=f"exit {code}", recovery=took, bound=STOP_BOUND,
                  detail="close code 1000 at the gateway" if state == "connected" else
                  f"last log line: {lines[-1]['event']} ({lines[-1].get('reason')})")
    assert code == 0
    assert took < STOP_BOUND
    assert lines[-1]["event"] == "monitor.stopped" and lines[-1]["reason"] == "received SIGTERM"
    assert not [line for line in lines if line["level"] in ("error", "critical")
                and line["event"].startswith("monitor.") and line["event"] != "monitor.ws.unauthorized"]
    if mode == "serve" and "wait_for_client" in settings:
        assert recording_gateway.upgrades == 0


async def test_sigterm_while_the_gateway_is_frozen(gateway_process, monitor_process, figures) -> None:
    gateway = await gateway_process(market_data_rate=50)
    mon: MonitorProcess = await monitor_process(gateway.url, heartbeat_seconds=30)
    await mon.until("gateway_monitor_ws_connected", 1)
    gateway.signal(signal.SIGSTOP)  # the close handshake can never complete
    try:
        code, took = await mon.sigterm()
    finally:
        gateway.signal(signal.SIGCONT)
    lines = mon.log_lines()
    figures.fault("monitor gets SIGTERM while connected to a frozen (SIGSTOP) gateway",
                  survived=code == 0 and took < STOP_BOUND, reason=f"exit {code}", recovery=took,
                  bound=STOP_BOUND, detail="close 1000 is sent, the frozen peer's reply is not awaited")
    assert code == 0
    assert took < STOP_BOUND
    assert lines[-1]["event"] == "monitor.stopped" and lines[-1]["reason"] == "received SIGTERM"
