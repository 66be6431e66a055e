"""The reconnect policy with injected time and randomness: no real waiting."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from support import FAST

from monitor.backoff import Backoff
from monitor.config import load
from monitor.events import EventHandler
from monitor.gateway_state import GatewayState
from monitor.metrics import Metrics
from monitor.observer import Observer
from monitor.stream import FrameProcessor


class FakeTime:
    """A clock that moves only when the observer sleeps."""

    def __init__(self, stop_after: int) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []
        self._stop_after = stop_after

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if len(self.sleeps) >= self._stop_after:
            raise asyncio.CancelledError
        await asyncio.sleep(0)


@pytest.fixture
async def session() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as client:
        yield client


def observer_for(url: str, session: aiohttp.ClientSession, fake: FakeTime, **settings: object) -> Observer:
    config = load({**FAST, "gateway_url": url, "reconnect_initial_seconds": 1.0,
                   "reconnect_max_seconds": 30.0, **settings}, environ={})
    metrics = Metrics(CollectorRegistry())
    state = GatewayState(metrics, 10, grace_seconds=15.0)
    processor = FrameProcessor(metrics.stream, EventHandler(metrics, state), config.max_frame_bytes)
    ceiling = Backoff(1.0, 2.0, 30.0, uniform=lambda _low, high: high)  # the top of each jitter range
    return Observer(config, session, metrics, processor, sleep=fake.sleep, clock=fake.clock, backoff=ceiling)


async def test_failed_attempts_wait_1_2_4_8_16_30_30(session) -> None:
    fake = FakeTime(stop_after=7)
    observer = observer_for("http://127.0.0.1:9", session, fake)
    with pytest.raises(asyncio.CancelledError):
        await observer.run()
    assert fake.sleeps == [1, 2, 4, 8, 16, 30, 30]


async def test_delay_resets_only_after_a_connection_that_stayed_up(simulator, session) -> None:
    sim = await simulator()
    fake = FakeTime(stop_after=4)
    observer = observer_for(sim.url, session, fake, reconnect_reset_after_seconds=10.0)
    observer.backoff.ceiling = 16.0  # as after several failures

    async def drop_clients() -> None:
        for _ in range(4):
            while sim.client_count == 0:
                await asyncio.sleep(0.005)
            fake.now += 11.0 if len(fake.sleeps) == 2 else 0.0  # only the third connection stays up 11 s
            await sim.close_clients(code=1000)
            while sim.client_count:
                await asyncio.sleep(0.005)

    dropper = asyncio.create_task(drop_clients())
    with pytest.raises(asyncio.CancelledError):
        await asyncio.wait_for(observer.run(), timeout=10)
    dropper.cancel()
    # Short-lived connections keep growing the delay; the one that stayed up resets it to 1 s.
    assert fake.sleeps == [16, 30, 1, 2]
