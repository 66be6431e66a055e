"""Shared fixtures: a real simulated gateway and a real monitor, both on 127.0.0.1."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import pytest
from support import FAST

from monitor.app import Monitor
from monitor.config import load
from monitor.simulator import Simulator
from monitor.simulator.control import control_routes


@pytest.fixture
async def simulator() -> AsyncIterator[Callable[..., Awaitable[Simulator]]]:
    """Factory of started simulators, all stopped at teardown."""
    started: list[Simulator] = []

    async def make(**kwargs: Any) -> Simulator:
        sim = Simulator(extra_routes=[control_routes], **kwargs)
        await sim.start("127.0.0.1", 0)
        started.append(sim)
        return sim

    yield make
    for sim in started:
        await sim.stop()


@pytest.fixture
async def monitor() -> AsyncIterator[Callable[..., Awaitable[Monitor]]]:
    """Factory of started monitors pointed at a gateway URL, all stopped at teardown."""
    started: list[Monitor] = []

    async def make(gateway_url: str, env: dict[str, str] | None = None, **settings: Any) -> Monitor:
        config = load({**FAST, "gateway_url": gateway_url, **settings}, environ=env or {})
        mon = Monitor(config)
        await mon.start()
        started.append(mon)
        return mon

    yield make
    for mon in started:
        await mon.stop()
