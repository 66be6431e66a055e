"""Probes of /readyz, /livez, /health: every failure mode reflected, none reaching the socket side."""

from __future__ import annotations

import asyncio

import aiohttp
from support import sample, scrape, wait_for


def probe(mon, endpoint: str) -> tuple[float | None, float | None]:
    return (sample(mon, "gateway_monitor_probe_success", endpoint=endpoint),
            sample(mon, "gateway_monitor_probe_http_status_code", endpoint=endpoint))


async def test_healthy_gateway(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: probe(mon, "health") == (1, 200), what="health probe")
    result = await scrape(mon)
    for endpoint in ("readyz", "livez", "health"):
        assert result.value("gateway_monitor_probe_success", endpoint=endpoint) == 1
        assert 0 < result.value("gateway_monitor_probe_duration_seconds", endpoint=endpoint) < 0.2
    assert result.value("gateway_monitor_gateway_degraded") == 0
    assert result.value("gateway_monitor_gateway_broker_connected", broker="alpaca-paper") == 1
    assert result.value("gateway_monitor_gateway_stale_instruments", broker="alpaca-paper") == 0
    assert result.value("gateway_monitor_gateway_info", version="0.2.3-sim", git_sha=sim_sha(result)) == 1


def sim_sha(result) -> str:
    return next(dict(labels)["git_sha"] for (name, labels) in result.samples
                if name == "gateway_monitor_gateway_info")


async def test_degraded_gateway_and_stale_instruments(simulator, monitor) -> None:
    sim = await simulator()
    sim.set_broker("alpaca-paper", connected=False, stale_instruments=["AAPL", "MSFT"])
    mon = await monitor(sim.url)
    await wait_for(lambda: sample(mon, "gateway_monitor_gateway_degraded") == 1, what="degraded")
    assert sample(mon, "gateway_monitor_gateway_stale_instruments", broker="alpaca-paper") == 2
    assert sample(mon, "gateway_monitor_gateway_broker_connected", broker="alpaca-paper") == 0


async def test_503_on_readyz(simulator, monitor) -> None:
    sim = await simulator()
    sim.set_endpoint_override("/readyz", status=503, body=b'{"ready":false,"message":"shutting down"}')
    mon = await monitor(sim.url)
    await wait_for(lambda: probe(mon, "readyz") == (0, 503), what="readyz 503")
    assert probe(mon, "livez") == (1, 200)


async def test_timeout_counts_as_failure_with_status_0(simulator, monitor) -> None:
    sim = await simulator()
    sim.set_endpoint_override("/livez", delay=5.0)
    mon = await monitor(sim.url, probe_timeout_seconds=0.1)
    await wait_for(lambda: sample(mon, "gateway_monitor_probe_duration_seconds", endpoint="livez") > 0,
                   what="first livez probe")
    assert probe(mon, "livez") == (0, 0)
    assert 0.09 < sample(mon, "gateway_monitor_probe_duration_seconds", endpoint="livez") < 0.5


async def test_garbage_health_body_fails_the_probe(simulator, monitor) -> None:
    sim = await simulator()
    sim.set_endpoint_override("/health", status=200, body=b"<html>oops</html>")
    mon = await monitor(sim.url)
    await wait_for(lambda: probe(mon, "health") == (0, 200), what="garbage health")


async def test_refused_probes_do_not_touch_readiness_or_socket_state(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: sample(mon, "gateway_monitor_ws_connected") == 1)
    sim.set_endpoint_override("/readyz", status=500)
    sim.set_endpoint_override("/health", status=200, body=b"garbage")
    await wait_for(lambda: probe(mon, "readyz") == (0, 500))
    await asyncio.sleep(0.3)
    assert sample(mon, "gateway_monitor_ws_connected") == 1
    assert sample(mon, "gateway_monitor_ws_connects_total") == 1
    await sim.go_down()
    await wait_for(lambda: probe(mon, "livez") == (0, 0), what="refused probe")
    async with aiohttp.ClientSession() as session:
        for path in ("/-/ready", "/-/healthy"):
            async with session.get(f"http://127.0.0.1:{mon.port}{path}") as resp:
                assert resp.status == 200, path


async def test_unknown_paths_are_404_and_the_server_fetches_nothing(monitor) -> None:
    mon = await monitor("http://127.0.0.1:9")
    async with aiohttp.ClientSession() as session:
        for path in ("/index.html", "/metrics/../etc/passwd", "/probe?target=http://example.com",
                     "/-/reload"):
            async with session.get(f"http://127.0.0.1:{mon.port}{path}") as resp:
                assert resp.status == 404, path
        async with session.post(f"http://127.0.0.1:{mon.port}/metrics") as resp:
            assert resp.status == 405


async def test_metrics_negotiates_openmetrics(monitor) -> None:
    mon = await monitor("http://127.0.0.1:9")
    headers = {"Accept": "application/openmetrics-text; version=1.0.0"}
    async with aiohttp.ClientSession() as session, \
            session.get(f"http://127.0.0.1:{mon.port}/metrics", headers=headers) as resp:
        body = await resp.text()
    assert resp.headers["Content-Type"].startswith("application/openmetrics-text")
    assert body.rstrip().endswith("# EOF")

