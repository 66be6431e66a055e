"""Helpers shared by the tests: bounded waits and real scrapes of /metrics."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

import aiohttp
from prometheus_client.parser import text_string_to_metric_families

from monitor.app import Monitor

# Fast but realistic timings: every wait in the tests is bounded by these.
FAST = {
    "listen": "127.0.0.1:0",
    "heartbeat_seconds": 0.5,
    "connect_timeout_seconds": 2.0,
    "reconnect_initial_seconds": 0.05,
    "reconnect_max_seconds": 0.2,
    "reconnect_reset_after_seconds": 1.0,
    "unauthorized_retry_seconds": 30.0,
    "probe_interval_seconds": 0.2,
    "probe_timeout_seconds": 0.2,
}


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> float:
    """Poll `predicate` until truthy; return the seconds it took, fail after `timeout`."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"timed out after {timeout}s waiting for {what}")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


class Scrape:
    """One real scrape of a monitor's /metrics, parsed with the Prometheus text parser."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.samples = {
            (s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
        }

    def value(self, name: str, **labels: str) -> float | None:
        return self.samples.get((name, tuple(sorted(labels.items()))))


async def scrape(mon: Monitor) -> Scrape:
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{mon.port}/metrics") as resp:
        assert resp.status == 200
        return Scrape(await resp.text())


def sample(mon: Monitor, name: str, **labels: str) -> float | None:
    """Read a value straight from the monitor's registry (for polling without HTTP)."""
    return mon.metrics.registry.get_sample_value(name, labels)


async def get_metrics(port: int) -> Scrape | None:
    """One scrape of the monitor on 127.0.0.1:port, or None while nothing listens there."""
    try:
        async with aiohttp.ClientSession() as session, \
                session.get(f"http://127.0.0.1:{port}/metrics") as resp:
            return Scrape(await resp.text())
    except aiohttp.ClientConnectionError:
        return None
