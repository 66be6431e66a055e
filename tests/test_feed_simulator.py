"""Feed health end to end over loopback: a real monitor reading the simulated gateway's market data."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import aiohttp
import pytest
from structlog.testing import capture_logs
from support import scrape, wait_for

from monitor.app import Monitor
from monitor.simulator import Simulator, run_market_data
from monitor.simulator.scenarios import CYCLE, SCENARIOS

BROKER = "alpaca-paper"
FLOOR = 1.0
EVERYONE = ("AAPL", "MSFT", "NVDA", "BTC/USD")


class Rig:
    """A simulator streaming 200 frames a second and a monitor that calls 1 s of quiet a silence
    (its floor), whatever the instrument's usual interval (multiple 1)."""

    def __init__(self, sim: Simulator, mon: Monitor, stop: asyncio.Event, feed: asyncio.Task[None]) -> None:
        self.sim, self.mon, self._stop, self._feed = sim, mon, stop, feed

    def silent(self) -> set[str]:
        return {symbol for (broker, symbol, _severity) in self._silent_series() if broker == BROKER}

    def _silent_series(self) -> list[tuple[str, ...]]:
        return list(self.mon.metrics.instrument_silent_since._samples)

    def value(self, name: str, **labels: str) -> float | None:
        return self.mon.metrics.registry.get_sample_value("gateway_monitor_" + name, labels)

    async def close(self) -> None:
        self._stop.set()
        await self._feed


@pytest.fixture
async def rig(simulator: Callable[..., Awaitable[Simulator]],
              monitor: Callable[..., Awaitable[Monitor]]) -> AsyncIterator[Rig]:
    sim = await simulator()
    mon = await monitor(sim.url, silence_floor_seconds=FLOOR, silence_multiple=1.0)
    stop = asyncio.Event()
    made = Rig(sim, mon, stop, asyncio.create_task(run_market_data(sim, 200, stop)))
    await wait_for(lambda: made.value("instruments", broker=BROKER) == len(EVERYONE),
                   what="every instrument tracked")
    yield made
    await made.close()


async def test_a_muted_instrument_is_named_and_the_others_never_are(rig: Rig) -> None:
    with capture_logs() as logs:
        rig.sim.market.muted.add("MSFT")
        await wait_for(lambda: rig.silent() == {"MSFT"}, timeout=5, what="MSFT silent")
        await asyncio.sleep(1.5)
        assert rig.silent() == {"MSFT"}
        assert rig.value("silent_instruments", broker=BROKER) == 1
        assert rig.value("feed_frozen", broker=BROKER) == 0
        rig.sim.market.muted.clear()
        await wait_for(lambda: not rig.silent(), timeout=5, what="MSFT ticking again")
    assert [e["symbol"] for e in logs if e["event"] == "monitor.feed.instrument_silent"] == ["MSFT"]
    resumed = [e for e in logs if e["event"] == "monitor.feed.instrument_resumed"]
    assert [(e["symbol"], e["reason"]) for e in resumed] == [("MSFT", "tick")]
    assert rig.value("silence_duration_seconds_count", broker=BROKER) == 1
    assert (await scrape(rig.mon)).value("gateway_monitor_silent_instruments", broker=BROKER) == 0


async def test_every_instrument_muted_with_the_broker_up_is_a_frozen_feed(rig: Rig) -> None:
    rig.sim.market.muted.update(EVERYONE)
    await wait_for(lambda: rig.value("feed_frozen", broker=BROKER) == 1, timeout=5, what="frozen")
    assert rig.silent() == set(EVERYONE)
    rig.sim.market.muted.clear()
    await wait_for(lambda: rig.value("feed_frozen", broker=BROKER) == 0, timeout=5, what="unfrozen")


async def test_a_closed_market_looks_like_a_frozen_feed_and_health_stays_green(rig: Rig) -> None:
    rig.sim.market.closed = True
    await wait_for(lambda: rig.value("feed_frozen", broker=BROKER) == 1, timeout=5, what="frozen")
    assert rig.value("gateway_degraded") == 0  # the gateway's /health says nothing: it cannot see it
    rig.sim.market.closed = False
    await wait_for(lambda: rig.value("feed_frozen", broker=BROKER) == 0, timeout=5, what="open again")


async def test_a_broker_outage_is_not_also_a_silence(rig: Rig) -> None:
    rig.sim.market.closed = True  # no market data during the outage, as with a real broker loss
    await SCENARIOS["broker_give_up"](rig.sim, 0.01)
    await asyncio.sleep(FLOOR + 2.0)
    assert rig.silent() == set() and rig.value("feed_frozen", broker=BROKER) == 0


async def test_late_quotes_show_in_the_age_histogram(rig: Rig) -> None:
    def observed() -> tuple[float, float]:
        return (rig.value("quote_age_seconds_count", broker=BROKER) or 0.0,
                rig.value("quote_age_seconds_sum", broker=BROKER) or 0.0)

    await wait_for(lambda: observed()[0] >= 5, what="some sampled quotes")
    count0, sum0 = observed()
    assert sum0 / count0 < 0.5  # loopback: milliseconds
    rig.sim.market.late_seconds = 5.0
    await asyncio.sleep(1.0)
    count1, sum1 = observed()
    rig.sim.market.late_seconds = 0.0
    assert count1 - count0 >= 20  # sampled: at most 100 a second, here bounded by the batches
    assert 4.5 < (sum1 - sum0) / (count1 - count0) < 5.5
    assert rig.value("quote_timestamps_invalid_total", reason="future") == 0


async def test_the_status_page_lists_each_instrument_with_its_silence(rig: Rig) -> None:
    rig.sim.market.muted.add("NVDA")
    await wait_for(lambda: rig.silent() == {"NVDA"}, timeout=5, what="NVDA silent")
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{rig.mon.port}/") as resp:
        html = await resp.text()
    assert "Instruments (4, 1 silent)" in html
    section = html.split("Instruments (4, 1 silent)", 1)[1]
    assert section.index("NVDA") < section.index("AAPL")  # the silent one first
    assert "silent since" in section and "usual interval" in section
    for symbol in EVERYONE:
        assert f"<td>{symbol}</td>" in section


def test_feed_scenarios_are_in_the_cycle() -> None:
    assert {"instrument_silent", "feed_frozen", "late_quotes", "market_closed"} <= set(CYCLE)



async def test_saxo_quotes_are_filed_under_the_saxo_platform_health_lists(
    simulator: Callable[..., Awaitable[Simulator]], monitor: Callable[..., Awaitable[Monitor]]
) -> None:
    sim = await simulator(broker="saxo-live")
    mon = await monitor(sim.url)
    stop = asyncio.Event()
    feed = asyncio.create_task(run_market_data(sim, 200, stop))
    try:
        def instruments(broker: str) -> float | None:
            return mon.metrics.registry.get_sample_value("gateway_monitor_instruments", {"broker": broker})

        await wait_for(lambda: instruments("saxo-live") == len(EVERYONE),
                       what="every Saxo instrument tracked under saxo-live")
        assert instruments("saxo-sim") is None
    finally:
        stop.set()
        await feed
