"""Faults around the socket: failing probes, a wrong gateway address, and SIGTERM to the monitor."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import aiohttp
import orjson
import pytest
from aiohttp import web
from harness.net import HOST, free_port
from reliability_support import SLACK
from structlog.testing import capture_logs
from support import sample, wait_for

ENDPOINTS = ("readyz", "livez", "health")
CRITICAL = {"type": "error", "code": "POSITION_UNPROTECTED", "message": "stop-loss rejected"}
KEY = "edge-fault-key-" + "e" * 30


def probe(mon, endpoint: str) -> tuple[float | None, float | None]:
    return (sample(mon, "gateway_monitor_probe_success", endpoint=endpoint),
            sample(mon, "gateway_monitor_probe_http_status_code", endpoint=endpoint))


async def get_status(port: int, path: str) -> int:
    async with aiohttp.ClientSession() as session, session.get(f"http://{HOST}:{port}{path}") as resp:
        return resp.status


# Each failure mode of the probed endpoints, with the status the monitor must export for it.
PROBE_FAULTS = [
    ("503", {"status": 503, "body": '{"ready":false,"message":"shutting down"}'}, 503),
    ("no answer within the timeout", {"delay": 30.0}, 0),
    ("garbage body", {"status": 200, "body": "<html>oops</html>"}, 200),
    ("JSON array body", {"status": 200, "body": "[1,2,3]"}, 200),
    ("invalid UTF-8 body", {"status": 200, "body": "\udcff\udcfe"}, 200),
    ("status of the wrong type", {"status": 200, "body": '{"status": 5, "providers": "x"}'}, 200),
    ("deeply nested body", {"status": 200, "body": "[" * 5000 + "]" * 5000}, 200),
]


async def test_probe_failures_never_touch_the_socket_or_readiness(simulator, monitor, figures) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: all(probe(mon, e)[0] == 1 for e in ENDPOINTS) and
                   sample(mon, "gateway_monitor_ws_connected") == 1, what="steady state")
    injected = 0
    for name, fault, status in PROBE_FAULTS:
        body = fault.get("body")
        raw = body.encode("utf-8", "surrogateescape") if isinstance(body, str) else None
        for endpoint in ENDPOINTS:
            sim.set_endpoint_override(f"/{endpoint}", status=fault.get("status"), body=raw,
                                      delay=fault.get("delay"))
        # /readyz and /livez need only a 2xx: a bad body fails just /health.
        failing = ENDPOINTS if status != 200 else ("health",)
        await wait_for(lambda f=failing, s=status: all(probe(mon, e) == (0, s) for e in f),  # type: ignore[misc]
                       what=f"probes reflecting {name}")
        await sim.broadcast(CRITICAL)
        injected += 1
        await wait_for(lambda n=injected: sample(mon, "gateway_monitor_error_events_total",  # type: ignore[misc]
                                                 code="POSITION_UNPROTECTED") == n, what="critical frame")
        assert sample(mon, "gateway_monitor_ws_connected") == 1
        assert await get_status(mon.port, "/-/ready") == 200
        sim.clear_endpoint_overrides()
        await wait_for(lambda: all(probe(mon, e)[0] == 1 for e in ENDPOINTS), what=f"recovery from {name}")
        figures.inputs(f"probe fault: {name}", tried=len(ENDPOINTS),
                       outcome=f"probe_success 0, status {status}; socket and /-/ready untouched")
    assert sample(mon, "gateway_monitor_ws_connects_total") == 1
    counted = sample(mon, "gateway_monitor_error_events_total", code="POSITION_UNPROTECTED")
    figures.events("critical frames during probe faults", injected=injected, counted=int(counted))


@contextlib.asynccontextmanager
async def silent_server() -> AsyncIterator[tuple[int, list[int]]]:
    """A TCP server that accepts and reads but never answers; yields (port, accepted count)."""
    accepted: list[int] = []
    writers: list[asyncio.StreamWriter] = []

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append(1)
        writers.append(writer)
        with contextlib.suppress(ConnectionError):
            while await reader.read(65536):
                pass

    server = await asyncio.start_server(handle, HOST, 0)
    try:
        yield server.sockets[0].getsockname()[1], accepted
    finally:
        for writer in writers:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


async def test_a_gateway_that_never_answers(monitor, figures) -> None:
    async with silent_server() as (port, accepted):
        mon = await monitor(f"http://{HOST}:{port}", connect_timeout_seconds=0.5)
        await wait_for(lambda: all(probe(mon, e) == (0, 0) for e in ENDPOINTS), what="probes timing out")
        await wait_for(lambda: (sample(mon, "gateway_monitor_ws_connect_failures_total", reason="timeout")
                                or 0) >= 2, what="upgrade timeouts")
        duration = sample(mon, "gateway_monitor_probe_duration_seconds", endpoint="livez")
        assert 0.15 < duration < 0.2 + SLACK  # probe_timeout_seconds is 0.2
        assert await get_status(mon.port, "/-/ready") == 200
        assert await get_status(mon.port, "/-/healthy") == 200
        assert len(accepted) >= 2
    figures.fault("gateway accepts TCP and never answers", survived=True, reason="timeout (connect)",
                  recovery=None, bound=None,
                  detail=f"probes fail, status 0, after {duration:.3f}s (timeout 0.2 s); monitor stays ready")


@pytest.mark.parametrize(
    ("where", "reason", "detail"),
    [
        ("unresolvable host", "dns", "cannot resolve gateway.invalid"),
        ("closed port", "refused", "Connect call failed"),
        ("port of another HTTP service", "http_error", "HTTP 404 on upgrade"),
    ],
)
async def test_wrong_gateway_address_backs_off_without_crashing(where, reason, detail, monitor,
                                                              figures, aiohttp_404_port) -> None:
    url = {"unresolvable host": "http://gateway.invalid:8080",
           "closed port": f"http://{HOST}:{free_port()}",
           "port of another HTTP service": f"http://{HOST}:{aiohttp_404_port}"}[where]
    with capture_logs() as logs:
        mon = await monitor(url, reconnect_initial_seconds=0.1, reconnect_max_seconds=0.2)
        started = time.monotonic()
        await wait_for(lambda: (sample(mon, "gateway_monitor_ws_connect_failures_total", reason=reason)
                                or 0) >= 3, what=f"{reason} failures")
        await asyncio.sleep(1.0)
        window = time.monotonic() - started
        attempts = sample(mon, "gateway_monitor_ws_connect_failures_total", reason=reason)
        assert await get_status(mon.port, "/-/healthy") == 200
        assert await get_status(mon.port, "/-/ready") == 200
    lines = [e for e in logs if e["event"] == "monitor.ws.connect_failed"]
    assert lines and all(e["reason"] == reason and detail in e["detail"] for e in lines), lines[:2]
    assert all(0 <= e["retry_in_seconds"] <= 0.2 for e in lines)
    # Full jitter in [0, 0.2 s]: about 10 attempts a second, never a tight loop.
    assert attempts <= window / 0.02
    assert sample(mon, "gateway_monitor_ws_consecutive_connect_failures") >= attempts  # still counting
    assert not [e for e in logs if e["event"] in ("monitor.ws.unexpected_error", "monitor.task_crashed")]
    probe_lines = [e for e in logs if e["event"] == "monitor.probe.failed"]
    assert len(probe_lines) == 3  # one per endpoint, not one per round
    figures.fault(f"gateway URL: {where}", survived=True, reason=reason, recovery=None, bound=None,
                  detail=f"{int(attempts)} attempts in {window:.1f}s; log: {lines[0]['detail']!r}")


@pytest.fixture
async def aiohttp_404_port() -> AsyncIterator[int]:
    """A plain HTTP server that is not a gateway: 404 for everything."""
    runner = web.AppRunner(web.Application(), handle_signals=False)
    await runner.setup()
    site = web.TCPSite(runner, HOST, 0)
    await site.start()
    yield runner.addresses[0][1]
    await runner.cleanup()


async def test_a_large_health_body_is_read_whole(simulator, monitor) -> None:
    sim = await simulator()
    stale = [f"SYM{i}" for i in range(20_000)]  # ~170 kB: a gateway with many stale instruments
    sim.set_endpoint_override("/health", status=200, body=orjson.dumps(
        {"status": "degraded", "version": "v", "git_sha": "s",
         "providers": [{"platform": "mock", "connected": True, "stale_instruments": stale}]}))
    mon = await monitor(sim.url)
    await wait_for(lambda: probe(mon, "health")[1] == 200, what="a health probe")
    await asyncio.sleep(0.5)
    assert probe(mon, "health") == (1, 200)
    assert sample(mon, "gateway_monitor_gateway_stale_instruments", broker="mock") == 20_000
