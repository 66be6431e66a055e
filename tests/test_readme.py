"""The README's tables are the public contract: they must match what the monitor really does."""

from __future__ import annotations

import asyncio
import re
from pathlib import Path

from support import scrape, wait_for

from monitor.config import SETTINGS
from monitor.simulator import SCENARIOS, run_market_data

ROOT = Path(__file__).resolve().parent.parent
README = (ROOT / "README.md").read_text(encoding="utf-8")


def table_rows(heading: str) -> list[list[str]]:
    section = README.split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    return [[cell.strip() for cell in line.strip("|").split("|")]
            for line in section.splitlines() if line.startswith("| `")]


def test_configuration_table_lists_every_setting_with_its_default() -> None:
    rows = {row[0].strip("`"): row for row in table_rows("Configuration")}
    for setting in SETTINGS:
        row = rows.pop(setting.env)
        assert row[1] == f"`--{setting.name.replace('_', '-')}`"
        assert row[2] == f"`{setting.name}`"
        default = "unset" if setting.default is None else f"`{setting.default:g}`" \
            if isinstance(setting.default, float) else f"`{setting.default}`"
        assert row[3] == default, setting.env
    assert set(rows) == {"GATEWAY_API_KEY"}  # the one env-only setting


async def test_metrics_table_matches_a_live_scrape(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url, silence_floor_seconds=1.0, silence_multiple=1.0)
    await wait_for(lambda: mon.metrics.registry.get_sample_value("gateway_monitor_ws_connected") == 1)
    # Market data, and one instrument silent for good: the feed-health series exist too.
    stop = asyncio.Event()
    feed = asyncio.create_task(run_market_data(sim, 100, stop))
    value = mon.metrics.registry.get_sample_value
    await wait_for(lambda: value("gateway_monitor_quote_age_seconds_count", {"broker": "alpaca-paper"})
                   and value("gateway_monitor_instruments", {"broker": "alpaca-paper"}) == 4,
                   what="the feed seen")
    sim.market.muted.add("MSFT")
    await wait_for(lambda: len(mon.metrics.instrument_silent_since) == 1, timeout=5, what="MSFT silent")
    sim.market.muted.clear()
    await wait_for(lambda: mon.metrics.registry.get_sample_value(
        "gateway_monitor_silence_duration_seconds_count", {"broker": "alpaca-paper"}), what="a silence ended")
    sim.market.muted.add("NVDA")
    await wait_for(lambda: len(mon.metrics.instrument_silent_since) == 1, timeout=5, what="NVDA silent")
    stop.set()
    await feed
    # Exercise every event so that series labelled from frames exist too.
    for name in ("broker_outage", "broker_give_up", "rate_limit", "margin_call", "orders", "liquidation"):
        await SCENARIOS[name](sim, 0.01)
    await sim.broadcast({"type": "data_staleness", "event": "STALE", "symbols": ["AAPL"], "broker": "mock"})
    await wait_for(lambda: mon.metrics.registry.get_sample_value(
        "gateway_monitor_stale_symbols", {"broker": "mock"}) == 1, what="all scenarios seen")
    await wait_for(lambda: mon.metrics.registry.get_sample_value(
        "gateway_monitor_gateway_degraded") is not None and mon.prober.last_health, what="a health probe")
    exported = {name for name, _labels in (await scrape(mon)).samples}
    families = {re.sub(r"_(bucket|sum|count)$", "", n) for n in exported if n.startswith("gateway_monitor_")}
    documented = {row[0].strip("`"): row for row in table_rows("Metrics")}
    assert families == set(documented)
    for name, row in documented.items():
        if row[1] == "histogram":
            continue
        labels = row[2]
        samples = [lbls for n, lbls in (await scrape(mon)).samples if n == name]
        for lbls in samples:
            assert [k for k, _ in lbls] == sorted([] if labels == "\u2013" else
                                                  [x.strip() for x in labels.split(",")]), name


def test_readme_test_command_is_what_ci_runs() -> None:
    ci = (ROOT / ".ci" / "run").read_text(encoding="utf-8")
    assert "make test" in README and "\nmake test\n" in ci
