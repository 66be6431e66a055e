"""Backtest safety: the monitor never acks event ids, and with wait_for_client never starts a backtest."""

from __future__ import annotations

import asyncio

import aiohttp
import orjson
import pytest
from structlog.testing import capture_logs
from support import sample, wait_for

from monitor.observer import connections_active
from monitor.simulator import SCENARIOS
from monitor.simulator.scenarios import CYCLE


def connected(mon) -> bool:
    return sample(mon, "gateway_monitor_ws_connected") == 1


def waiting(mon) -> float | None:
    return sample(mon, "gateway_monitor_ws_waiting_for_client")


def assert_never_acks_ids(received: list[str]) -> None:
    for text in received:
        message = orjson.loads(text)
        assert message == {"type": "pong"} or (message.get("type") == "event_ack"
                                               and message.get("events_processed") == []), text
        assert "evt_" not in text


async def test_every_scenario_and_restart_of_a_backtest_without_one_ack(simulator, monitor, figures) -> None:
    sim = await simulator(backtest=True)  # every frame carries an event_id, keys sorted
    mon = await monitor(sim.url)
    frames_sent = 0
    for round_ in range(2):
        await wait_for(lambda: connected(mon), what="connection")
        for name in CYCLE:
            await SCENARIOS[name](sim, 0.005)
        await sim.broadcast({"type": "ping", "timestamp": "2026-01-01T00:00:00Z"})
        await sim.broadcast({"type": "event_ack_request", "events": ["evt_1"]})  # a hostile invitation
        frames_sent += 2
        await wait_for(lambda n=round_: sample(mon, "gateway_monitor_error_events_total",  # type: ignore[misc]
                                               code="LIQUIDATION") == n + 1, what="scenarios counted")
        await sim.graceful_shutdown(down_seconds=0.1)
    await wait_for(lambda: len(sim.received) == 2, what="the two pongs")
    figures.inputs("backtest frames (event_id on every frame), 2 rounds of every scenario and a restart",
                   tried=int(sum(sample(mon, "gateway_monitor_frames_total", type=t) or 0 for t in
                                 ("order", "position", "account", "connection", "error", "rate_limit",
                                  "data_staleness", "trade", "ping", "other"))),
                   outcome=f"client sent {len(sim.received)} messages, all pongs; no event_ack naming ids")
    assert_never_acks_ids(sim.received)


async def strategy(sim) -> aiohttp.ClientWebSocketResponse:
    """The real client: a strategy connecting to the gateway."""
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(sim.url + "/v1/ws")
    ws._test_session = session  # type: ignore[attr-defined]
    return ws


async def leave(ws: aiohttp.ClientWebSocketResponse) -> None:
    await ws.close()
    await ws._test_session.close()  # type: ignore[attr-defined]


async def test_wait_for_client_never_starts_a_backtest(simulator, monitor, figures) -> None:
    sim = await simulator(backtest=True)
    with capture_logs() as logs:
        mon = await monitor(sim.url, wait_for_client=True)
        await wait_for(lambda: waiting(mon) == 1, what="waiting gauge")
        await asyncio.sleep(2.2)  # two polls of the gateway's /metrics
        assert sim.upgrade_attempts == 0
        assert not connected(mon)
        client = await strategy(sim)
        took = await wait_for(lambda: connected(mon), timeout=3, what="connect once a client is there")
        assert waiting(mon) == 0
        assert sim.client_count == 2
        # The strategy leaves, the gateway restarts: no client, so the monitor must wait again.
        await leave(client)
        await sim.go_down()
        await wait_for(lambda: waiting(mon) == 1, what="waiting again after the restart")
        await sim.come_up()
        attempts = sim.upgrade_attempts  # the strategy's and the monitor's
        await asyncio.sleep(1.5)
        assert sim.upgrade_attempts == attempts == 2
        client = await strategy(sim)
        await wait_for(lambda: connected(mon), timeout=3, what="reconnect behind the new client")
        await leave(client)
    events = [e["event"] for e in logs if e["event"].startswith("monitor.ws.")]
    figures.fault("backtest: monitor started before the strategy (MONITOR_WAIT_FOR_CLIENT=true)",
                  survived=True, reason="waiting_for_client", recovery=took, bound=1.0 + 0.2 + 0.4,
                  detail="0 upgrades while gateway_ws_connections_active was 0; recovery = strategy "
                         "connected to monitor connected (poll every 1 s)")
    assert took <= 1.0 + 0.2 + 0.4  # one poll, one backoff, slack
    assert events.count("monitor.ws.waiting_for_client") == 2  # once per wait, not once per poll
    assert events.count("monitor.ws.client_present") == 2


@pytest.mark.parametrize(("status", "body"), [(500, b"oops"), (200, b"<html>not metrics</html>"),
                                              (200, b"# TYPE gateway_orders_submitted_total counter\n"),
                                              (200, b"gateway_ws_connections_active NaN\n")])
async def test_wait_for_client_keeps_waiting_when_metrics_say_nothing(status, body, simulator,
                                                                      monitor) -> None:
    sim = await simulator()
    sim.set_endpoint_override("/metrics", status=status, body=body)
    with capture_logs() as logs:
        mon = await monitor(sim.url, wait_for_client=True)
        client = await strategy(sim)  # a client is there, but /metrics cannot say so
        await asyncio.sleep(1.2)
        assert sim.upgrade_attempts == 1 and waiting(mon) == 1
        sim.clear_endpoint_overrides()
        await wait_for(lambda: connected(mon), timeout=3, what="connect once /metrics is readable")
        await leave(client)
    line = next(e for e in logs if e["event"] == "monitor.ws.waiting_for_client")
    assert line["connections_active"] is None and line["problem"]


@pytest.mark.parametrize(("text", "expected"), [
    ("# TYPE gateway_ws_connections_active gauge\ngateway_ws_connections_active 2\n", 2.0),
    ("gateway_ws_connections_active 0\n", 0.0),
    ('gateway_ws_connections_active{pod="a"} 1\ngateway_ws_connections_active{pod="b"} 2\n', 3.0),
    ("gateway_ws_connections_active NaN\ngateway_ws_connections_active +Inf\n", None),
    ("gateway_ws_connections_active 1 1700000000000\n", 1.0),
    ("gateway_ws_connections_active_total 5\n", None),
    ("gateway_ws_slow_consumer_disconnects 9\n", None),
    ("gateway_ws_connections_active\n", None),
    ("", None),
])
def test_connections_active_is_read_from_the_exposition(text: str, expected: float | None) -> None:
    assert connections_active(text) == expected


async def test_wait_for_client_reads_a_large_exposition_to_its_end(simulator, monitor) -> None:
    sim = await simulator()
    padding = "".join(f'gateway_order_events_total{{platform="mock",event_type="E{i}"}} {i}\n'
                      for i in range(10_000))  # ~600 kB before the gauge: many TCP reads
    sim.set_endpoint_override("/metrics", status=200,
                              body=(padding + "gateway_ws_connections_active 1\n").encode())
    mon = await monitor(sim.url, wait_for_client=True)
    await wait_for(lambda: connected(mon), timeout=3, what="connect: the gauge at the end was read")
