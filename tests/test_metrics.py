"""The /metrics exposition: the registry's families plus the per-symbol block, in both formats."""

from __future__ import annotations

import aiohttp
import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from prometheus_client.parser import text_string_to_metric_families as parse_text

from monitor.metrics import Children, Metrics

OPENMETRICS = "application/openmetrics-text; version=1.0.0"
HOSTILE = 'a"b\\c\nd'
STALE_HELP = "When the symbol went stale; present only while it is stale."


def stale_samples(body: bytes, parse: object) -> dict[tuple[str, str], float]:
    families = {f.name: f for f in parse(body.decode())}  # type: ignore[operator]
    family = families["gateway_monitor_symbol_stale_since_timestamp_seconds"]
    assert family.type == "gauge" and family.documentation == STALE_HELP
    return {(s.labels["broker"], s.labels["symbol"]): s.value for s in family.samples}


@pytest.mark.parametrize(("accept", "parse"), [("", parse_text), (OPENMETRICS, parse_openmetrics)])
def test_symbol_series_parse_back_exactly_in_both_formats(accept: str, parse: object) -> None:
    metrics = Metrics(CollectorRegistry())
    series = metrics.symbol_stale_since
    series.set(("alpaca-paper", "AAPL"), 1736937000.0)
    series.set(("mock", HOSTILE), 1.5)
    series.set(("mock", "GONE"), 2.0)
    series.set(("mock", "AAPL"), 1e-7)
    series.remove(("mock", "GONE"))
    series.remove(("mock", "NEVER"))  # removing what is absent is harmless
    body, content_type = metrics.expose(accept)
    assert content_type.startswith("application/openmetrics-text" if accept else "text/plain")
    assert stale_samples(body, parse) == {("alpaca-paper", "AAPL"): 1736937000.0, ("mock", HOSTILE): 1.5,
                                          ("mock", "AAPL"): 1e-7}
    # The registry's own families are all still there, once.
    names = [f.name for f in parse(body.decode())]  # type: ignore[operator]
    assert len(names) == len(set(names)) and "gateway_monitor_frames" in names


def test_the_block_follows_every_change() -> None:
    metrics = Metrics(CollectorRegistry())
    series = metrics.symbol_stale_since
    assert stale_samples(metrics.expose()[0], parse_text) == {}
    series.set(("mock", "A"), 1.0)
    assert stale_samples(metrics.expose()[0], parse_text) == {("mock", "A"): 1.0}
    series.set(("mock", "A"), 3.0)
    assert stale_samples(metrics.expose()[0], parse_text) == {("mock", "A"): 3.0}
    series.remove(("mock", "A"))
    assert stale_samples(metrics.expose()[0], parse_text) == {}
    assert len(series) == 0 and series.get(("mock", "A")) is None


def test_name_filter_selects_families_like_prometheus_client() -> None:
    metrics = Metrics(CollectorRegistry())
    metrics.symbol_stale_since.set(("mock", "A"), 1.0)
    only_frames = metrics.expose("", ["gateway_monitor_frames_total"])[0].decode()
    assert [f.name for f in parse_text(only_frames)] == ["gateway_monitor_frames"]
    only_symbols = metrics.expose(OPENMETRICS, [metrics.symbol_stale_since.name])[0]
    assert stale_samples(only_symbols, parse_openmetrics) == {("mock", "A"): 1.0}


def test_children_are_the_metrics_own_children() -> None:
    metrics = Metrics(CollectorRegistry())
    errors = Children(metrics.error_events)
    errors("LIQUIDATION").inc()
    errors("LIQUIDATION").inc()
    assert errors("LIQUIDATION") is metrics.error_events.labels("LIQUIDATION")
    total = metrics.registry.get_sample_value("gateway_monitor_error_events_total", {"code": "LIQUIDATION"})
    assert total == 2


async def test_served_with_gzip_and_the_format_asked_for(monitor, simulator) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    mon.metrics.symbol_stale_since.set(("mock", HOSTILE), 7.0)
    async with aiohttp.ClientSession() as session:
        for accept, parse in (("text/plain;version=0.0.4", parse_text), (OPENMETRICS, parse_openmetrics)):
            async with session.get(f"http://127.0.0.1:{mon.port}/metrics",
                                   headers={"Accept": accept, "Accept-Encoding": "gzip"}) as resp:
                assert resp.status == 200 and resp.headers["Content-Encoding"] == "gzip"
                assert stale_samples(await resp.read(), parse) == {("mock", HOSTILE): 7.0}
