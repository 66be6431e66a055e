"""The monitor's picture of the gateway against a simulated gateway that behaves like v0.2.0.

Restarts, reconnects and lost frames: after each, /metrics and the status page agree with
what the gateway says now, not with the last frame the monitor saw.
"""

from __future__ import annotations

import aiohttp
from support import sample, wait_for

from monitor.simulator import SCENARIOS

BROKER = "alpaca-paper"
STALE = ("AAPL", "MSFT")


def broker(mon, name: str = BROKER) -> tuple[float | None, float | None, float | None]:
    return (sample(mon, "gateway_monitor_broker_up", broker=name),
            sample(mon, "gateway_monitor_broker_connection_failed", broker=name),
            sample(mon, "gateway_monitor_stale_symbols", broker=name))


def stale_series(mon) -> int:
    return len(mon.metrics.symbol_stale_since)


def connects(mon) -> float:
    return sample(mon, "gateway_monitor_ws_connects_total") or 0


def disconnects(mon, reason: str) -> float:
    return sample(mon, "gateway_monitor_ws_disconnects_total", reason=reason) or 0


async def status_page(mon) -> str:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{mon.port}/") as resp:
        return await resp.text()


async def given_up(simulator, monitor, **settings):
    sim = await simulator()
    mon = await monitor(sim.url, **settings)
    await wait_for(lambda: broker(mon) == (1, 0, 0), what="the broker up, from /health")
    await SCENARIOS["broker_give_up"](sim, 0.05)
    await wait_for(lambda: broker(mon) == (0, 1, 2), what="the give-up")
    return sim, mon


async def test_a_restarted_gateway_clears_a_give_up_and_its_staleness(simulator, monitor) -> None:
    sim, mon = await given_up(simulator, monitor)
    await SCENARIOS["graceful_shutdown"](sim, 0.1)
    await wait_for(lambda: connects(mon) == 2, what="reconnect to the new process")
    await wait_for(lambda: broker(mon) == (1, 0, 0), timeout=2, what="the give-up cleared by /health")
    assert stale_series(mon) == 0
    html = await status_page(mon)
    assert 'badge bad">failed' not in html and "<h2>Stale symbols</h2><p>None.</p>" in html
    assert 'badge ok">up' in html


async def test_a_give_up_keeps_its_page_across_a_reconnect_of_the_monitor(simulator, monitor) -> None:
    sim, mon = await given_up(simulator, monitor)
    await sim.close_clients(1000)  # the monitor's socket only: the gateway is not restarted
    await wait_for(lambda: connects(mon) == 2, what="the monitor's reconnect")
    probes = sample(mon, "gateway_monitor_probe_duration_seconds", endpoint="health")
    await wait_for(lambda: sample(mon, "gateway_monitor_probe_duration_seconds", endpoint="health") != probes,
                   what="a /health answer after the reconnect")
    await wait_for(lambda: stale_series(mon) == 2, what="staleness from the snapshot")
    assert broker(mon) == (0, 1, 2)
    assert 'badge bad">failed' in await status_page(mon)


async def test_a_fresh_missed_while_the_socket_was_down_is_not_kept(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: broker(mon)[0] == 1, what="the broker, from /health")
    await sim.broadcast({"type": "data_staleness", "event": "STALE", "symbols": list(STALE),
                         "broker": BROKER, "stale_since": "2026-11-21T03:00:00Z"})
    await wait_for(lambda: stale_series(mon) == 2, what="stale symbols")
    await sim.go_down()
    fresh = {"type": "data_staleness", "event": "FRESH", "symbols": list(STALE), "broker": BROKER}
    await sim.broadcast(fresh)  # reaches nobody
    await sim.come_up()  # nothing is stale now, so the new connection gets no snapshot
    await wait_for(lambda: connects(mon) == 2, what="reconnect")
    await wait_for(lambda: stale_series(mon) == 0 and broker(mon) == (1, 0, 0), timeout=2,
                   what="no stale symbol after the reconnect")


async def test_a_lost_reconnect_frame_is_corrected_by_health_after_the_grace(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url, reconcile_grace_seconds=0.5)
    await wait_for(lambda: broker(mon)[0] == 1, what="the broker, from /health")
    # A BROKER_DISCONNECTED whose BROKER_RECONNECTED the gateway dropped (slow-consumer queue):
    await sim.broadcast({"type": "connection", "event": "BROKER_DISCONNECTED", "broker": BROKER})
    await wait_for(lambda: broker(mon)[0] == 0, what="the frame, at once")
    took = await wait_for(lambda: broker(mon)[0] == 1, timeout=3, what="/health winning")
    assert took >= 0.5  # not before the grace: a fresh frame wins over /health
    assert mon.state.brokers[BROKER].source == "/health"


async def test_a_broker_named_by_its_variant_name_is_its_platform(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: broker(mon)[0] == 1, what="the broker, from /health")
    await SCENARIOS["broker_outage"](sim, 0.05)
    await wait_for(lambda: broker(mon) == (1, 0, 0), what="the end of the outage")
    assert sample(mon, "gateway_monitor_connection_events_total",
                  event="BROKER_DISCONNECTED", broker=BROKER) == 1
    assert sample(mon, "gateway_monitor_broker_up", broker="other") is None


async def test_a_shutdown_without_close_frame_is_a_shutdown(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: connects(mon) == 1)
    await SCENARIOS["shutdown_without_close_frame"](sim, 0.1)
    await wait_for(lambda: connects(mon) == 2, what="reconnect")
    assert disconnects(mon, "gateway_shutdown") == 1
    assert disconnects(mon, "connection_lost") == 0


async def test_a_broker_loss_does_not_make_a_later_drop_a_shutdown(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: connects(mon) == 1)
    await SCENARIOS["broker_outage"](sim, 0.05)  # starts with the adapter's DISCONNECTING
    await wait_for(lambda: broker(mon) == (1, 0, 0), what="the end of the outage")
    await sim.go_down()  # a crash within the shutdown pause of that DISCONNECTING
    await sim.come_up()
    await wait_for(lambda: connects(mon) == 2, what="reconnect")
    assert disconnects(mon, "connection_lost") == 1
    assert disconnects(mon, "gateway_shutdown") == 0
