"""The API key stays secret on every channel; the HTTP server serves its endpoints and nothing else."""

from __future__ import annotations

import asyncio
import traceback

import aiohttp
import pytest
from harness.net import HOST, free_port
from reliability_support import MonitorProcess
from structlog.testing import capture_logs
from support import sample, wait_for

from monitor.connection import CannotConnect, connect

KEY = "leak-canary-key-" + "L" * 32
WRONG = "wrong-gateway-key-" + "w" * 30
OPENMETRICS = {"Accept": "application/openmetrics-text; version=1.0.0"}


async def channels(mon: MonitorProcess) -> dict[str, str]:
    """Everything the monitor serves, right now."""
    out = {}
    for name, path, headers in (("metrics", "/metrics", {}), ("openmetrics", "/metrics", OPENMETRICS),
                                ("status page", "/", {}), ("healthy", "/-/healthy", {}),
                                ("ready", "/-/ready", {}), ("404", "/nope", {})):
        answer = await mon.get(path, headers=headers)
        out[name] = "" if answer is None else answer[1]
    return out


async def test_the_key_never_leaks_through_errors_401s_and_echoes(simulator, monitor_process,
                                                                  figures) -> None:
    sim = await simulator(api_key=WRONG)
    mon = await monitor_process(sim.url, {"GATEWAY_API_KEY": KEY}, unauthorized_retry_seconds=0.5)
    await mon.until("gateway_monitor_ws_unauthorized", 1)
    served = [await channels(mon)]  # while unauthorized
    sim.api_key = KEY
    await mon.until("gateway_monitor_ws_connected", 1)
    # A gateway that echoes the key back in what it sends: logged (and redacted), never labelled.
    # Echoes into labels and into the status page's critical-event text, too.
    await sim.broadcast(b"{broken frame " + KEY.encode())
    await sim.broadcast(b"\x00" + KEY.encode(), binary=True)
    await sim.broadcast({"type": "error", "code": "POSITION_UNPROTECTED", "message": "stop-loss rejected",
                         "details": {"authorization": f"Bearer {KEY}", "nested": [KEY]}})
    await sim.broadcast({"type": "error", "code": "INVALID_REQUEST", "message": f"bad key {KEY}"})
    await sim.broadcast({"type": "connection", "event": "BROKER_CONNECTION_FAILED", "broker": "alpaca-paper",
                         "error": f"broker rejected {KEY}"})
    await sim.broadcast({"type": "rate_limit", "event": KEY, "requests_remaining": 1})
    await sim.broadcast({"type": "data_staleness", "event": "STALE", "symbols": ["AAPL"], "broker": KEY})
    await mon.until("gateway_monitor_error_events_total", 1, code="POSITION_UNPROTECTED")
    served.append(await channels(mon))
    await sim.close_clients(code=1011, message=f"internal error {KEY}".encode())
    await mon.until("gateway_monitor_ws_disconnects_total", 1, reason="closed_by_gateway")
    await sim.go_down()  # refused, with the key still in hand
    await mon.until("gateway_monitor_ws_connect_failures_total", lambda v: v >= 2, reason="refused")
    await sim.come_up()
    await mon.until("gateway_monitor_ws_connected", 1)
    served.append(await channels(mon))
    code, _took = await mon.sigterm()
    stderr, stdout = mon.stderr_path.read_text(), mon.stdout_path.read_text()
    texts = {"stderr (debug logs)": stderr, "stdout": stdout}
    for number, snapshot in enumerate(served):
        texts |= {f"{name} #{number}": text for name, text in snapshot.items()}
    leaks = [name for name, text in texts.items() if KEY in text]
    figures.inputs("API key hunt: 401, refused, closes and echoed frames; every channel grepped",
                   tried=len(texts), outcome="no leak" if not leaks else f"LEAKED in {leaks}")
    assert code == 0
    assert leaks == []
    assert "<redacted>" in stderr  # the key did reach the logging path, and was scrubbed there
    assert '"level":"debug"' in stderr  # debug lines were written, and checked


async def test_connection_errors_carry_no_key(simulator) -> None:
    sim = await simulator(api_key=WRONG)
    async with aiohttp.ClientSession() as session:
        for url in (sim.url.replace("http", "ws") + "/v1/ws", f"ws://{HOST}:{free_port()}/v1/ws",
                    "wss://gateway.invalid/v1/ws"):
            with pytest.raises(CannotConnect) as info:
                await connect(session, url, KEY, heartbeat=1, timeout=2, max_frame_bytes=65536)
            err = info.value
            for text in (str(err), err.detail, "".join(traceback.format_exception(err))):
                assert KEY not in text, url
    # Only aiohttp's own repr() of the chained cause shows request headers; the monitor never
    # renders it, and its log scrubber would redact it if anything did.


async def test_a_key_echoed_by_the_gateway_is_not_served(simulator, monitor) -> None:
    sim = await simulator()
    sim.set_endpoint_override("/health", status=200,
                              body=b'{"status":"connected","version":"' + KEY.encode() + b'","providers":[]}')
    mon = await monitor(sim.url, env={"GATEWAY_API_KEY": KEY})
    await wait_for(lambda: sample(mon, "gateway_monitor_ws_connected") == 1)
    await sim.broadcast({"type": "data_staleness", "event": "STALE", "symbols": [KEY], "broker": "mock"})
    await sim.broadcast({"type": "error", "code": "LIQUIDATION", "message": f"margin account {KEY}"})
    await wait_for(lambda: sample(mon, "gateway_monitor_stale_symbols", broker="mock") == 1)
    await wait_for(lambda: sample(mon, "gateway_monitor_error_events_total", code="LIQUIDATION") == 1)
    await wait_for(lambda: mon.prober.last_health is not None)
    async with aiohttp.ClientSession() as session:
        for path in ("/metrics", "/"):
            async with session.get(f"http://{HOST}:{mon.port}{path}") as resp:
                assert KEY not in await resp.text(), path


@pytest.mark.parametrize(("url", "warned"), [("http://gateway.invalid:8080", True),
                                             ("http://10.1.2.3:8080", True),
                                             ("https://gateway.invalid:8443", False),
                                             ("http://127.0.0.1:9", False), ("http://localhost:9", False)])
async def test_insecure_transport_warning_at_start(url: str, warned: bool, monitor) -> None:
    with capture_logs() as logs:
        await monitor(url, env={"GATEWAY_API_KEY": KEY}, connect_timeout_seconds=0.2)
    warnings = [e for e in logs if e["event"] == "monitor.config.insecure_transport"]
    assert len(warnings) == (1 if warned else 0)
    assert all(e["log_level"] == "warning" and KEY not in repr(e) for e in warnings)


# Requests that an open proxy, a blackbox-style prober or a careless router would act on, with the
# status the monitor answers: its own page for an absolute-form URI, /metrics ignoring its query.
RAW_REQUESTS: list[tuple[bytes, str]] = [
    (b"GET http://127.0.0.1:{canary}/ HTTP/1.1\r\nHost: 127.0.0.1:{canary}\r\n\r\n", "200"),
    (b"CONNECT 127.0.0.1:{canary} HTTP/1.1\r\nHost: 127.0.0.1:{canary}\r\n\r\n", "404"),
    (b"GET /metrics HTTP/1.1\r\nHost: 127.0.0.1:{canary}\r\nX-Forwarded-Host: 127.0.0.1:{canary}\r\n\r\n",
     "200"),
    (b"GET /probe?target=http://127.0.0.1:{canary}/&module=http_2xx HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"GET /metrics?target=127.0.0.1:{canary} HTTP/1.1\r\nHost: x\r\n\r\n", "200"),
    (b"GET //127.0.0.1:{canary}/ HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"GET /-/ready/../../../../etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"GET /%2e%2e/%2e%2e/etc/passwd HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"POST /-/reload HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "404"),
    (b"POST /-/quit HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\n\r\n", "404"),
    (b"PUT /metrics HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\n{}", "405"),
    (b"DELETE /metrics HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
    (b"TRACE / HTTP/1.1\r\nHost: x\r\n\r\n", "405"),
    (b"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"GET /v1/ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
     b"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n", "404"),
    (b"GET /debug/pprof/ HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"GET /_sim/state HTTP/1.1\r\nHost: x\r\n\r\n", "404"),
    (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03" + b"\x00" * 40, "400"),  # a TLS ClientHello
    (b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n", "400"),
]
DOCUMENTED = {"/", "/metrics", "/-/healthy", "/-/ready"}


async def raw_request(port: int, request: bytes) -> bytes:
    reader, writer = await asyncio.open_connection(HOST, port)
    try:
        writer.write(request)
        await writer.drain()
        return await asyncio.wait_for(reader.read(200), 5)
    except ConnectionError:
        return b""
    finally:
        writer.close()


async def test_the_http_server_serves_its_endpoints_and_fetches_nothing(monitor, figures) -> None:
    accepted: list[bytes] = []

    async def canary(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(await reader.read(100))
        writer.close()

    server = await asyncio.start_server(canary, HOST, 0)
    canary_port = server.sockets[0].getsockname()[1]
    try:
        mon = await monitor(f"http://{HOST}:{free_port()}")  # the gateway is elsewhere and down
        routes = {r.resource.canonical for r in mon.app.router.routes()}  # type: ignore[union-attr]
        answers = [await raw_request(mon.port, r.replace(b"{canary}", str(canary_port).encode()))
                   for r, _ in RAW_REQUESTS]
        await asyncio.sleep(0.3)
    finally:
        server.close()
        await server.wait_closed()
    statuses = [a.split(b" ")[1].decode() if a.startswith(b"HTTP/1.") else "closed" for a in answers]
    figures.inputs("requests to the monitor's HTTP server: proxy, CONNECT, SSRF targets, traversal, "
                   "other methods, TLS, 100 kB header", tried=len(RAW_REQUESTS),
                   outcome=f"statuses {sorted(set(statuses))}; the canary saw {len(accepted)} connections")
    assert routes == DOCUMENTED
    assert accepted == []  # nothing the monitor was asked made it connect anywhere
    assert statuses == [expected for _, expected in RAW_REQUESTS]
