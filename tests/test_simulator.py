"""The simulated gateway over real loopback sockets: it must behave like the real gateway."""

from __future__ import annotations

import asyncio
import re
import signal
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import datetime
from typing import Any

import aiohttp
import orjson
import pytest
from harness.net import free_port
from prometheus_client.parser import text_string_to_metric_families

from monitor.protocol import CRITICAL_ERROR_CODES, ERROR_CODES
from monitor.simulator import SCENARIOS, Simulator, run_cycle, run_market_data, serve
from monitor.simulator import frames as build
from monitor.simulator.scenarios import CYCLE, DOCUMENTED_ONLY, RESTARTS

KEY = "simulator-test-key-" + "k" * 30
ISO_MS = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
PAUSE = 0.01
P = {"platform": "alpaca-paper"}

Make = Callable[..., Awaitable[Simulator]]
UPGRADE = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
           "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
UPGRADE_REQUEST = b"GET /v1/ws HTTP/1.1\r\nHost: 127.0.0.1\r\n" + b"".join(
    f"{name}: {value}\r\n".encode() for name, value in UPGRADE.items()) + b"\r\n"


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    # force_close: a pooled keep-alive socket would hide that the gateway stopped listening.
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True)) as s:
        yield s


_OPEN: list[aiohttp.ClientWebSocketResponse] = []


@pytest.fixture(autouse=True)
async def _close_websockets(simulator: Make) -> AsyncIterator[None]:
    # Depends on `simulator` so that the sockets close while their gateway still answers;
    # aiohttp warns (an error here) about a client socket that was never closed.
    yield
    while _OPEN:
        await _OPEN.pop().close()


async def open_ws(session: aiohttp.ClientSession, url: str, **kwargs: Any) -> Any:
    """ws_connect, closed again at teardown."""
    ws = await session.ws_connect(url, **kwargs)
    _OPEN.append(ws)
    return ws


async def connect(session: aiohttp.ClientSession, sim: Simulator, **kwargs: Any) -> Any:
    ws = await open_ws(session, sim.url + "/v1/ws", **kwargs)
    await eventually(lambda: sim.client_count > 0)
    return ws


async def read(ws: Any, count: int, timeout: float = 2.0) -> list[dict[str, Any]]:
    """The next `count` TEXT frames, decoded."""
    out = []
    for _ in range(count):
        msg = await ws.receive(timeout=timeout)
        assert msg.type is aiohttp.WSMsgType.TEXT, msg
        out.append(orjson.loads(msg.data))
    return out


async def assert_silent(ws: Any, seconds: float = 0.05) -> None:
    # wait_for, not receive(timeout=): each heartbeat pong would restart that timeout.
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(ws.receive(), seconds)


async def get_json(session: aiohttp.ClientSession, url: str) -> tuple[int, Any]:
    async with session.get(url) as resp:
        return resp.status, orjson.loads(await resp.read())


async def refused(session: aiohttp.ClientSession, url: str) -> bool:
    try:
        async with session.get(url):
            return False
    except aiohttp.ClientConnectorError:
        return True


async def reachable(session: aiohttp.ClientSession, url: str) -> bool:
    return not await refused(session, url)


async def eventually(check: Callable[[], bool | Awaitable[bool]], timeout: float = 2.0) -> None:
    """Poll `check` (plain or async) until true; fail after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if not isinstance(result, bool):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, "condition never became true"
        await asyncio.sleep(0.01)


def kind(frame: dict[str, Any]) -> tuple[str, str]:
    return frame["type"], frame.get("event") or frame.get("code") or ""


NON_CRITICAL = [("error", c) for c in ERROR_CODES if c not in CRITICAL_ERROR_CODES]
EXPECTED: dict[str, tuple[list[tuple[str, str]], dict[tuple[str, tuple[tuple[str, str], ...]], float]]] = {
    "broker_outage": (
        [("connection", "DISCONNECTING"), ("connection", "BROKER_DISCONNECTED"), ("data_staleness", "STALE"),
         ("connection", "BROKER_RECONNECTED"), ("data_staleness", "FRESH")],
        {("gateway_broker_disconnections_total", ()): 1,
         ("gateway_broker_reconnect_attempts_total", ()): 1,
         ("gateway_broker_reconnections_total", ()): 1},
    ),
    "broker_give_up": (
        [("connection", "DISCONNECTING"), ("connection", "BROKER_DISCONNECTED"), ("data_staleness", "STALE"),
         ("connection", "BROKER_CONNECTION_FAILED")],
        {("gateway_broker_disconnections_total", ()): 1,
         ("gateway_broker_reconnect_failures_total", ()): 1},
    ),
    "documented_recovery": ([("connection", "CONNECTED"), ("data_staleness", "FRESH")], {}),
    "rate_limit": (
        [("rate_limit", "RATE_LIMIT_WARNING"), ("rate_limit", "RATE_LIMIT_HIT")],
        {("gateway_rate_limit_events_total", (("event_type", "RATE_LIMIT_WARNING"),)): 1,
         ("gateway_rate_limit_events_total", (("event_type", "RATE_LIMIT_HIT"),)): 1},
    ),
    "error_codes": (NON_CRITICAL, {}),
    "position_unprotected": ([("error", "POSITION_UNPROTECTED")], {}),
    "liquidation": ([("error", "LIQUIDATION"), ("position", "POSITION_CLOSED")], {}),
    "oco_double_exit": (
        [], {("gateway_oco_double_exit_total", ()): 1,
             ("gateway_critical_notifications_dropped_total", ()): 1}
    ),
    "oco_double_exit_frame": (
        [("error", "OCO_DOUBLE_EXIT")], {("gateway_oco_double_exit_total", ()): 1}
    ),
    "margin_call": ([("account", "MARGIN_WARNING"), ("account", "MARGIN_CALL")], {}),
    "unprotected_fill": ([], {("gateway_critical_notifications_dropped_total", ()): 1}),
    "orders": (
        [("order", "ORDER_CREATED"), ("order", "ORDER_PARTIALLY_FILLED"), ("order", "ORDER_FILLED"),
         ("trade", "TRADE_FILLED"), ("position", "POSITION_OPENED"), ("account", "BALANCE_UPDATED")],
        {("gateway_orders_submitted_total", ()): 1,
         ("gateway_order_events_total", (("event_type", "ORDER_FILLED"),)): 1},
    ),
    # The feed scenarios send no frame and count nothing, as the real gateway: only market data
    # changes (test_feed_scenarios_change_only_the_market_data).
    "instrument_silent": ([], {}),
    "feed_frozen": ([], {}),
    "late_quotes": ([], {}),
    "market_closed": ([], {}),
}


def test_every_scenario_but_the_restarts_has_an_expectation() -> None:
    assert set(SCENARIOS) == {*EXPECTED, *RESTARTS}


@pytest.mark.parametrize("name", sorted(EXPECTED))
async def test_scenario_frames_and_gateway_metrics(name: str, simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    await SCENARIOS[name](sim, PAUSE)
    sequence, metrics = EXPECTED[name]
    received = await read(ws, len(sequence))
    assert [kind(f) for f in received] == sequence
    await assert_silent(ws)
    for frame in received:
        assert ISO_MS.match(frame["timestamp"]), frame
        assert next(iter(frame)) == "type"
    for (metric, labels), value in metrics.items():
        assert sim.metrics.value(metric, {**P, **dict(labels)}) == value, metric
    # A critical notification that reached a client is not counted as dropped.
    if ("gateway_critical_notifications_dropped_total", ()) not in metrics:
        assert sim.metrics.value("gateway_critical_notifications_dropped_total", P) is None


async def test_broker_outage_fields_and_health(simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    task = asyncio.create_task(SCENARIOS["broker_outage"](sim, 0.1))
    announced, lost, stale = await read(ws, 3)
    assert "broker" not in announced  # the broker adapter's DISCONNECTING, as v0.2.0's Saxo adapter
    assert lost["broker"] == "AlpacaPaper" and lost["error"]  # a provider-level frame: variant name
    assert stale["symbols"] == ["AAPL", "MSFT"] and ISO_MS.match(stale["stale_since"])
    _, health = await get_json(session, sim.url + "/health")
    assert health["status"] == "degraded"
    assert health["providers"] == [
        {"platform": "alpaca-paper", "connected": False, "stale_instruments": ["AAPL", "MSFT"]}
    ]
    back, fresh = await read(ws, 2)
    assert isinstance(back["gap_duration_ms"], int) and back["gap_duration_ms"] >= 200
    assert "stale_since" not in fresh and fresh["broker"] == "alpaca-paper"
    await task
    _, health = await get_json(session, sim.url + "/health")
    assert health["status"] == "connected"


async def test_a_give_up_degrades_health_until_the_gateway_restarts(simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    await SCENARIOS["broker_give_up"](sim, 0.05)
    *_, failed = await read(ws, 4)
    assert failed["event"] == "BROKER_CONNECTION_FAILED" and failed["broker"] == "alpaca-paper"
    await asyncio.sleep(0.3)
    status, health = await get_json(session, sim.url + "/health")
    assert (status, health["status"]) == (200, "degraded")
    assert health["providers"] == [
        {"platform": "alpaca-paper", "connected": False, "stale_instruments": ["AAPL", "MSFT"]}]
    await sim.graceful_shutdown(down_seconds=0.1)
    _, health = await get_json(session, sim.url + "/health")
    assert health["status"] == "connected"
    assert sim.metrics.value("gateway_broker_reconnect_failures_total", P) is None  # a new process
    fresh = await connect(session, sim)
    await assert_silent(fresh)  # the replacement says nothing about the failure it replaced


async def test_a_saxo_gateway_names_its_broker_everywhere(simulator: Make, session) -> None:
    sim = await simulator(broker="saxo-live")
    ws = await connect(session, sim)
    stop = asyncio.Event()
    feed = asyncio.create_task(run_market_data(sim, 200, stop))
    quote = next(f for f in await read(ws, 3) if f["type"] == "quote")
    stop.set()
    await feed
    assert quote["quote"]["provider"] == "saxo"  # as the Saxo adapter spells it
    while True:  # drain the market data queued before the stop
        try:
            await asyncio.wait_for(ws.receive(), 0.1)
        except TimeoutError:
            break
    await SCENARIOS["broker_give_up"](sim, PAUSE)
    _, lost, stale, failed = await read(ws, 4)
    assert (lost["broker"], stale["broker"], failed["broker"]) == ("SaxoLive", "saxo-live", "saxo-live")
    saxo = {"platform": "saxo-live"}
    assert sim.metrics.value("gateway_broker_reconnect_failures_total", saxo) == 1
    assert sim.metrics.value("gateway_broker_reconnect_failures_total", P) is None
    _, health = await get_json(session, sim.url + "/health")
    assert [p["platform"] for p in health["providers"]] == ["saxo-live"]


async def test_critical_notification_without_clients_is_counted_as_dropped(simulator: Make) -> None:
    sim = await simulator()
    await SCENARIOS["position_unprotected"](sim, PAUSE)
    assert sim.metrics.value("gateway_critical_notifications_dropped_total", P) == 1


async def test_upgrade_is_the_whole_handshake(simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    await assert_silent(ws, 0.2)
    assert sim.client_count == 1 and sim.upgrade_attempts == 1
    assert await sim.broadcast({"type": "ping", "timestamp": build.iso()}) == 1
    assert kind((await read(ws, 1))[0]) == ("ping", "")


async def test_only_a_staleness_snapshot_greets_a_client_while_something_is_stale(
    simulator: Make, session
) -> None:
    sim = await simulator()
    sim.set_broker("alpaca-paper", stale_instruments=["AAPL", "MSFT"])
    sim.set_broker("oanda-practice", stale_instruments=["EUR/USD"])
    ws = await connect(session, sim)
    snapshots = await read(ws, 2)
    assert [(f["broker"], f["symbols"]) for f in snapshots] == [
        ("alpaca-paper", ["AAPL", "MSFT"]), ("oanda-practice", ["EUR/USD"])]
    assert all(kind(f) == ("data_staleness", "STALE") and f["stale_since"] for f in snapshots)
    await assert_silent(ws)


async def test_documented_connected_frame_and_staleness_snapshot(simulator: Make, session) -> None:
    sim = await simulator(send_connected=True)
    sim.set_broker("alpaca-paper", stale_instruments=["AAPL"])
    ws = await connect(session, sim)
    connected, snapshot = await read(ws, 2)
    assert kind(connected) == ("connection", "CONNECTED")
    assert kind(snapshot) == ("data_staleness", "STALE") and snapshot["symbols"] == ["AAPL"]


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"X-API-Key": "wrong"},
     {"Authorization": "Bearer wrong", "X-API-Key": KEY}, {"Authorization": KEY}],
    ids=["missing", "wrong-bearer", "wrong-x-api-key", "authorization-wins", "no-scheme"],
)
async def test_bad_key_is_a_plain_401_with_json(headers: dict[str, str], simulator: Make, session) -> None:
    sim = await simulator(api_key=KEY)
    async with session.get(sim.url + "/v1/ws", headers={**UPGRADE, **headers}) as resp:
        assert resp.status == 401
        assert orjson.loads(await resp.read()) == {
            "code": "UNAUTHORIZED", "message": "API key missing or invalid"}
    with pytest.raises(aiohttp.WSServerHandshakeError) as err:
        await session.ws_connect(sim.url + "/v1/ws", headers=headers)
    assert err.value.status == 401
    assert (sim.upgrade_attempts, sim.unauthorized_attempts, sim.client_count) == (2, 2, 0)


@pytest.mark.parametrize("headers", [{"Authorization": f"Bearer {KEY}"}, {"X-API-Key": KEY}])
async def test_right_key_in_either_header_upgrades(headers: dict[str, str], simulator: Make, session) -> None:
    sim = await simulator(api_key=KEY)
    await connect(session, sim, headers=headers)
    assert sim.client_count == 1 and sim.unauthorized_attempts == 0
    status, _ = await get_json(session, sim.url + "/livez")  # public endpoints need no key
    assert status == 200


async def test_frames_are_serde_ordered_and_client_text_is_recorded(simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    await sim.broadcast({"timestamp": "2025-01-15T10:30:00.000Z", "type": "ping"})
    msg = await ws.receive(timeout=1)
    assert msg.data.startswith('{"type":"ping"')
    await ws.send_str('{"type":"pong"}')
    await ws.send_bytes(b"ignored")
    await ws.send_str('{"type":"event_ack","events_processed":[]}')
    await eventually(lambda: len(sim.received) == 2)
    assert sim.received == ['{"type":"pong"}', '{"type":"event_ack","events_processed":[]}']


async def test_backtest_adds_event_ids_and_sorts_keys(simulator: Make, session) -> None:
    sim = await simulator(backtest=True)
    ws = await connect(session, sim)
    await SCENARIOS["rate_limit"](sim, PAUSE)
    raws = [(await ws.receive(timeout=1)).data for _ in range(2)]
    decoded = [orjson.loads(raw) for raw in raws]
    assert [d["event_id"] for d in decoded] == ["evt_1", "evt_2"]
    assert all(list(d) == sorted(d) for d in decoded)
    assert not raws[0].startswith('{"type"')


async def test_raw_str_bytes_and_binary_are_sent_verbatim(simulator: Make, session) -> None:
    sim = await simulator(backtest=True)
    ws = await connect(session, sim)
    await sim.broadcast("{not json")
    await sim.broadcast(b"\xff\xfe", binary=True)
    assert (await ws.receive(timeout=1)).data == "{not json"
    msg = await ws.receive(timeout=1)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.BINARY, b"\xff\xfe")


async def test_probe_endpoints_shapes(simulator: Make, session) -> None:
    sim = await simulator()
    assert await get_json(session, sim.url + "/livez") == (200, {"status": "ok"})
    assert await get_json(session, sim.url + "/readyz") == (
        200, {"ready": True, "providers": ["alpaca-paper"], "provider_count": 1})
    status, health = await get_json(session, sim.url + "/health")
    assert status == 200 and set(health) == {"status", "version", "git_sha", "providers"}
    assert health["status"] == "connected" and health["version"] == "0.2.3-sim"
    assert health["providers"] == [{"platform": "alpaca-paper", "connected": True}]
    sim.set_broker("alpaca-paper", connected=False)
    status, health = await get_json(session, sim.url + "/health")
    assert (status, health["status"]) == (200, "degraded")
    status, ready = await get_json(session, sim.url + "/readyz")
    assert status == 200 and ready["ready"] is True  # ready even when the broker is down


async def test_endpoint_overrides_inject_status_body_and_delay(simulator: Make, session) -> None:
    sim = await simulator()
    sim.set_endpoint_override("/readyz", status=500)
    sim.set_endpoint_override("/health", body=b"<html>oops</html>")
    sim.set_endpoint_override("/livez", delay=0.2)
    async with session.get(sim.url + "/readyz") as resp:
        assert resp.status == 500 and (await resp.json())["ready"] is True
    async with session.get(sim.url + "/health") as resp:
        assert resp.status == 200 and await resp.read() == b"<html>oops</html>"
    started = time.monotonic()
    assert (await get_json(session, sim.url + "/livez"))[0] == 200
    assert time.monotonic() - started >= 0.2
    sim.clear_endpoint_overrides()
    assert (await get_json(session, sim.url + "/readyz"))[0] == 200


async def scrape_gateway(session: aiohttp.ClientSession, sim: Simulator) -> str:
    async with session.get(sim.url + "/metrics") as resp:
        assert resp.status == 200 and resp.content_type == "text/plain"
        return await resp.text()


async def test_gateway_metrics_have_no_help_and_appear_on_first_increment(simulator: Make, session) -> None:
    sim = await simulator()
    text = await scrape_gateway(session, sim)
    assert "# HELP" not in text
    assert [f.name for f in text_string_to_metric_families(text)] == ["gateway_ws_connections_active"]
    ws = await connect(session, sim)
    sim.inc_metric("gateway_rate_limit_events_total", {**P, "event_type": "RATE_LIMIT_HIT"})
    sim.inc_metric("gateway_ws_slow_consumer_disconnects", value=3)
    sim.inc_metric("gateway_order_submit_duration_seconds", P, 0.042)
    text = await scrape_gateway(session, sim)
    assert "# HELP" not in text
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value
               for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples[("gateway_ws_connections_active", ())] == 1 and not ws.closed
    # The counter without _total (client_python's parser would append one, Prometheus does not).
    assert "\ngateway_ws_slow_consumer_disconnects 3\n" in text
    assert samples[("gateway_rate_limit_events_total",
                    (("event_type", "RATE_LIMIT_HIT"), ("platform", "alpaca-paper")))] == 1
    assert samples[("gateway_order_submit_duration_seconds_count", (("platform", "alpaca-paper"),))] == 1
    assert not any(name == "gateway_orders_submitted_total" for name, _ in samples)
    with pytest.raises(ValueError, match="labels"):
        sim.inc_metric("gateway_orders_submitted_total", {"broker": "x"})


async def test_full_queue_drops_and_counts_but_keeps_the_client(simulator: Make, session) -> None:
    sim = await simulator(queue_size=4)
    ws = await connect(session, sim)
    # No await yields to the writer inside broadcast(), so this burst meets a full queue.
    queued = [await sim.broadcast({"type": "quote", "n": n}) for n in range(10)]
    assert queued == [1, 1, 1, 1, 0, 0, 0, 0, 0, 0]
    assert sim.metrics.value("gateway_ws_slow_consumer_disconnects") == 6
    assert [f["n"] for f in await read(ws, 4)] == [0, 1, 2, 3]
    await assert_silent(ws)
    assert await sim.broadcast({"type": "quote", "n": 10}) == 1
    assert (await read(ws, 1))[0]["n"] == 10 and sim.client_count == 1


async def test_protocol_pings_are_answered(simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim, heartbeat=0.1)
    await assert_silent(ws, 0.5)  # five heartbeats came and went
    assert not ws.closed


async def test_black_hole_leaves_pings_unanswered_until_lifted(simulator: Make, session) -> None:
    sim = await simulator()
    # autoping=False hands any PONG to receive() instead of swallowing it, so an answered
    # heartbeat shows up as a message rather than as a later timeout. No wall-clock bound:
    # the heartbeat runs on the same event loop, so a loaded machine delays it past any bound.
    ws = await connect(session, sim, heartbeat=0.2, autoping=False)
    sim.black_hole(True)
    await sim.broadcast({"type": "ping"})
    msg = await ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.ERROR, aiohttp.WSMsgType.CLOSED), msg
    assert isinstance(ws.exception(), aiohttp.ServerTimeoutError)
    reader, writer = await asyncio.open_connection("127.0.0.1", sim.port)
    writer.write(UPGRADE_REQUEST)
    with pytest.raises(TimeoutError):  # nor is a new upgrade answered
        await asyncio.wait_for(reader.read(1), 0.3)
    writer.close()
    await writer.wait_closed()
    sim.black_hole(False)
    fresh = await open_ws(session, sim.url + "/v1/ws")
    await eventually(lambda: sim.client_count == 1)
    assert await sim.broadcast({"type": "ping"}) == 1
    assert kind((await read(fresh, 1))[0]) == ("ping", "")


async def test_graceful_shutdown_sequence(simulator: Make, session) -> None:
    sim = await simulator()
    port = sim.port
    ws = await connect(session, sim)
    task = asyncio.create_task(sim.graceful_shutdown(down_seconds=0.5))
    assert kind((await read(ws, 1))[0]) == ("connection", "DISCONNECTING")
    assert await get_json(session, sim.url + "/readyz") == (
        503, {"ready": False, "message": "shutting down"})
    msg = await ws.receive(timeout=2)
    assert (msg.type, msg.data) == (aiohttp.WSMsgType.CLOSE, 1001)
    await eventually(lambda: refused(session, sim.url + "/livez"))
    assert not task.done()
    await eventually(lambda: reachable(session, sim.url + "/livez"), timeout=2)
    await task
    assert sim.port == port
    await connect(session, sim)
    assert sim.client_count == 1


async def test_shutdown_without_close_frame(simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    task = asyncio.create_task(sim.graceful_shutdown(down_seconds=0.2, close_frame=False))
    assert kind((await read(ws, 1))[0]) == ("connection", "DISCONNECTING")
    msg = await ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)  # never a CLOSE frame
    await task
    await connect(session, sim)


async def test_go_down_drops_sockets_without_close_frame_and_come_up_reuses_port(
    simulator: Make, session
) -> None:
    sim = await simulator()
    port = sim.port
    ws = await connect(session, sim)
    await sim.go_down()
    msg = await ws.receive(timeout=2)
    assert msg.type in (aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR)
    assert sim.client_count == 0
    assert await refused(session, sim.url + "/livez")
    await sim.come_up()
    assert sim.port == port and (await get_json(session, sim.url + "/livez"))[0] == 200


def test_frame_builders_use_strings_for_prices_and_ms_timestamps() -> None:
    quote = build.quote("EUR/USD", "oanda", "1.0845", "1.0847", "1.0846", size="100000")
    assert list(quote["quote"]) == [
        "symbol", "provider", "bid", "bid_size", "ask", "ask_size", "last", "timestamp"]
    assert ISO_MS.match(str(quote["timestamp"]))
    err = build.error("INTERNAL_ERROR", "Internal error")
    assert "details" not in err and list(err) == ["type", "code", "message", "timestamp"]
    conn = build.connection("BROKER_RECONNECTED", broker="alpaca-paper", gap_duration_ms=4200)
    assert list(conn) == ["type", "event", "broker", "gap_duration_ms", "timestamp"]


async def test_market_data_sustains_a_high_rate(simulator: Make, session) -> None:
    sim = await simulator(queue_size=100_000)
    ws = await connect(session, sim)
    stop = asyncio.Event()
    task = asyncio.create_task(run_market_data(sim, 2000, stop))
    await asyncio.sleep(0.5)
    stop.set()
    await task
    frames = []
    while True:
        try:
            msg = await ws.receive(timeout=0.2)
        except TimeoutError:
            break
        frames.append(orjson.loads(msg.data))
    assert 800 <= len(frames) <= 1300
    symbols = {f["quote"]["symbol"] for f in frames if f["type"] == "quote"}
    assert symbols == {"AAPL", "MSFT", "NVDA", "BTC/USD"}
    assert any(f["type"] == "candle" for f in frames)
    assert all(isinstance(f["quote"]["bid"], str) for f in frames if f["type"] == "quote")


async def test_cycle_runs_what_the_real_gateway_does_and_ends_with_the_give_up(
    simulator: Make, session
) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    await run_cycle(sim, 0.001)
    assert set(CYCLE) == set(EXPECTED) - DOCUMENTED_ONLY
    expected = [k for name in CYCLE for k in EXPECTED[name][0]]
    received = await read(ws, len(expected))
    assert [kind(f) for f in received] == expected
    assert CYCLE[-1] == "broker_give_up"
    await assert_silent(ws)


async def test_control_api_drives_the_simulator(simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    url = sim.url + "/_sim"
    async with session.post(url + "/scenario/rate_limit?pause=0.001") as resp:
        assert resp.status == 200
    async with session.post(url + "/scenario/nope") as resp:
        assert resp.status == 404
    async with session.post(url + "/frame", data=b'{"type":"ping"}') as resp:
        assert (await resp.json()) == {"queued": 1}
    async with session.post(url + "/frame?binary=1", data=b"\x00") as resp:
        assert resp.status == 200
    frames = await read(ws, 3)
    assert [kind(f) for f in frames][-1] == ("ping", "")
    assert (await ws.receive(timeout=1)).type is aiohttp.WSMsgType.BINARY
    body = {"name": "gateway_circuit_breaker_resets_total", "labels": {}, "value": 2}
    async with session.post(url + "/metric", data=orjson.dumps(body)) as resp:
        assert resp.status == 200
    assert sim.metrics.value("gateway_circuit_breaker_resets_total") == 2
    await ws.send_str('{"type":"pong"}')
    await eventually(lambda: bool(sim.received))
    assert await get_json(session, url + "/received") == (200, ['{"type":"pong"}'])
    async with session.post(url + "/api_key", data=KEY) as resp:
        assert resp.status == 200 and sim.api_key == KEY
    async with session.post(url + "/black_hole?on=1") as resp:
        assert resp.status == 200
    await sim.broadcast({"type": "ping"})
    await assert_silent(ws, 0.1)
    async with session.post(url + "/black_hole?on=0") as resp:
        assert resp.status == 200
    assert kind((await read(ws, 1))[0]) == ("ping", "")


async def test_control_shutdown_returns_at_once_then_restarts(simulator: Make, session) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    async with session.post(sim.url + "/_sim/shutdown?down_seconds=0.3") as resp:
        assert resp.status == 202
    assert kind((await read(ws, 1))[0]) == ("connection", "DISCONNECTING")
    assert (await ws.receive(timeout=2)).data == 1001
    await eventually(lambda: refused(session, sim.url + "/livez"))
    await eventually(lambda: reachable(session, sim.url + "/livez"))


async def test_serve_runs_until_stopped(session) -> None:
    port = free_port()
    stop = asyncio.Event()
    task = asyncio.create_task(serve("127.0.0.1", port, api_key=None, cycle=True,
                                     market_data_rate=200, pause=0.001, stop=stop))
    url = f"http://127.0.0.1:{port}"
    await eventually(lambda: reachable(session, url + "/livez"))
    ws = await open_ws(session, url + "/v1/ws")
    seen = {kind(f)[0] for f in await read(ws, 60)}
    assert {"quote"} <= seen and len(seen) > 1
    stop.set()
    await asyncio.wait_for(task, 2)
    assert await refused(session, url + "/livez")


async def test_simulate_subprocess_is_driven_over_http(session, tmp_path) -> None:
    port = free_port()
    key_file = tmp_path / "key"
    key_file.write_text(KEY + "\n")
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "monitor", "simulate", "--listen", f"127.0.0.1:{port}",
        "--api-key-file", str(key_file), "--no-cycle", "--market-data-rate", "0",
        stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.PIPE,
    )
    url = f"http://127.0.0.1:{port}"
    try:
        await eventually(lambda: reachable(session, url + "/livez"), timeout=10)
        ws = await open_ws(session, url + "/v1/ws", headers={"X-API-Key": KEY})
        async with session.post(url + "/_sim/scenario/margin_call?pause=0.001") as resp:
            assert resp.status == 200
        assert [kind(f)[1] for f in await read(ws, 2)] == ["MARGIN_WARNING", "MARGIN_CALL"]
        proc.send_signal(signal.SIGTERM)
        _, stderr = await asyncio.wait_for(proc.communicate(), 5)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert b"simulator.scenario.started" in stderr and KEY.encode() not in stderr



async def market_frames(ws: Any, seconds: float) -> list[dict[str, Any]]:
    """Every frame received within `seconds`."""
    out: list[dict[str, Any]] = []
    deadline = time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        try:
            msg = await asyncio.wait_for(ws.receive(), left)
        except TimeoutError:
            break
        if msg.type is aiohttp.WSMsgType.TEXT:
            out.append(orjson.loads(msg.data))
    return out


@pytest.mark.parametrize(("scenario", "ticking", "late"), [
    ("instrument_silent", {"AAPL", "NVDA", "BTC/USD"}, False),
    ("feed_frozen", set(), False),
    ("market_closed", set(), False),
    ("late_quotes", {"AAPL", "MSFT", "NVDA", "BTC/USD"}, True),
])
async def test_feed_scenarios_change_only_the_market_data(
    scenario: str, ticking: set[str], late: bool, simulator: Make, session
) -> None:
    sim = await simulator()
    ws = await connect(session, sim)
    stop = asyncio.Event()
    running = asyncio.create_task(SCENARIOS[scenario](sim, 0.1))  # lasts 0.5 s
    await asyncio.sleep(0)  # the scenario has set the market: every frame from here is under it
    feed = asyncio.create_task(run_market_data(sim, 200, stop))
    try:
        during = await market_frames(ws, 0.3)
        await running
        after = await market_frames(ws, 0.3)
        status, health = await get_json(session, sim.url + "/health")
    finally:
        stop.set()
        await feed
    symbols = {(f.get("quote") or f.get("bar") or {}).get("symbol") for f in during}
    assert symbols == ticking and {f["type"] for f in during} <= {"quote", "candle"}
    ages = [datetime.fromisoformat(f["timestamp"]) - datetime.fromisoformat(f["quote"]["timestamp"])
            for f in during if f["type"] == "quote"]
    assert all(abs(age.total_seconds() - (5.0 if late else 0.0)) < 0.5 for age in ages), ages
    everyone = {"AAPL", "MSFT", "NVDA", "BTC/USD"}
    assert {(f.get("quote") or f.get("bar") or {}).get("symbol") for f in after} == everyone
    assert {f["quote"]["provider"] for f in after if f["type"] == "quote"} == {"alpaca-paper"}
    assert status == 200 and health["status"] == "connected"  # /health never shows it
