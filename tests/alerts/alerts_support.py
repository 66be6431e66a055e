"""Helpers and fixtures of the alerting tests (conftest.py registers the fixtures).

The monitor's metric names come from a live scrape: a real `gateway-monitor` process observing a
real simulated-gateway process, after every simulator scenario has run (`monitor_scrape_names`).
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from processes import (  # noqa: F401  (fixtures re-exported for the tests in this directory)
    INSTALL_HINT,
    ManagedProcess,
    VersionLine,
    alertmanager_factory,
    get_text,
    post,
    prometheus_factory,
    start_monitor,
    start_simulator,
    webhook_receiver,
)
from prometheus_client.parser import text_string_to_metric_families

from monitor.gateway_metric_catalog import exported_samples
from monitor.simulator.scenarios import SCENARIOS

REPO_ROOT = Path(__file__).resolve().parents[2]
ALERTS_DIR = REPO_ROOT / "alerts"
RULES_DIR = ALERTS_DIR / "rules"
UNIT_TESTS_DIR = ALERTS_DIR / "tests"

# Names every Prometheus has without any exporter: the scrape's own series and the alert series.
BUILTIN_NAMES = frozenset(
    {
        "up",
        "scrape_duration_seconds",
        "scrape_samples_scraped",
        "scrape_samples_post_metric_relabeling",
        "scrape_series_added",
        "ALERTS",
        "ALERTS_FOR_STATE",
    }
)

# Monitor series that exist only after some event (everything else exists from start-up).
# The live fixture waits for them, so that a scrape really shows every name the monitor has.
EVENT_BORN_NAMES = frozenset(
    {
        "gateway_monitor_connection_events_total",
        "gateway_monitor_broker_up",
        "gateway_monitor_broker_connection_failed",
        "gateway_monitor_broker_gap_seconds_bucket",
        "gateway_monitor_stale_symbols",
        "gateway_monitor_symbol_stale_since_timestamp_seconds",
        "gateway_monitor_stale_duration_seconds_bucket",
        "gateway_monitor_last_error_timestamp_seconds",
        "gateway_monitor_gateway_info",
        "gateway_monitor_gateway_broker_connected",
        "gateway_monitor_gateway_stale_instruments",
        "gateway_monitor_instruments",
        "gateway_monitor_instrument_last_tick_timestamp_seconds",
        "gateway_monitor_instrument_silent_since_timestamp_seconds",
        "gateway_monitor_silent_instruments",
        "gateway_monitor_feed_frozen",
        "gateway_monitor_silence_duration_seconds_bucket",
        "gateway_monitor_quote_age_seconds_bucket",
    }
)
LIVE_SCRAPE_TIMEOUT = 20.0


def sample_names(text: str) -> set[str]:
    """Names of every sample in a Prometheus text exposition."""
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def sample_value(text: str, name: str) -> float | None:
    """Value of the unlabelled sample `name` in a text exposition (None when absent)."""
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name and not sample.labels:
                return float(sample.value)
    return None


async def scrape_until(monitor: ManagedProcess, predicate: Callable[[str], bool], what: str) -> str:
    """Scrape the monitor's /metrics until `predicate(text)` holds; fail after a deadline."""
    deadline = time.monotonic() + LIVE_SCRAPE_TIMEOUT
    while time.monotonic() < deadline:
        text = await get_text(f"{monitor.base_url}/metrics")
        if predicate(text):
            return text
        await asyncio.sleep(0.1)
    pytest.fail(f"timed out waiting for {what}:\n{monitor.log_tail()}", pytrace=False)


async def drive_every_scenario(sim: ManagedProcess, monitor: ManagedProcess) -> None:
    """Run every simulator scenario once, silence an instrument, then leave one symbol stale."""
    await scrape_until(monitor, lambda t: sample_value(t, "gateway_monitor_ws_connected") == 1, "connect")
    for scenario in SCENARIOS:
        await post(f"{sim.base_url}/_sim/scenario/{scenario}?pause=0.05")
        if scenario == "graceful_shutdown":  # runs in the background: wait for the reconnect
            await scrape_until(
                monitor,
                lambda t: (sample_value(t, "gateway_monitor_ws_connects_total") or 0) >= 2,
                "reconnect",
            )
    # A silence that ends (the monitor calls 1 s of quiet a silence here), then one that lasts:
    # instrument_silent_since exists only while an instrument is silent.
    for muted in (["MSFT"], [], ["NVDA"]):
        await post(f"{sim.base_url}/_sim/market", {"muted": muted})
        name = "gateway_monitor_silence_duration_seconds_bucket" if not muted else \
            "gateway_monitor_instrument_silent_since_timestamp_seconds"
        await scrape_until(monitor, lambda t, name=name: name in sample_names(t), name)
    # A STALE without its FRESH: symbol_stale_since exists only while a symbol is stale.
    stale = {"type": "data_staleness", "event": "STALE", "symbols": ["LIVE"], "broker": "alpaca-paper"}
    await post(f"{sim.base_url}/_sim/frame", stale)


async def live_monitor_scrape(workdir: Path) -> str:
    """Start a simulator and a monitor process, run every scenario, return the monitor's scrape."""
    started: list[ManagedProcess] = []
    try:
        sim = await start_simulator(workdir / "simulator")
        started.append(sim)
        monitor = await start_monitor(workdir / "monitor", sim.base_url, "--silence-floor-seconds", "1",
                                      "--silence-multiple", "1")
        started.append(monitor)
        await drive_every_scenario(sim, monitor)
        return await scrape_until(
            monitor, lambda t: sample_names(t) >= EVENT_BORN_NAMES, "every event-born series"
        )
    finally:
        for proc in reversed(started):
            proc.stop()


@pytest.fixture(scope="session")
def monitor_scrape_text(tmp_path_factory: pytest.TempPathFactory) -> str:
    """The /metrics text of a real monitor process after every simulator scenario ran."""
    return asyncio.run(live_monitor_scrape(tmp_path_factory.mktemp("live-monitor")))


@pytest.fixture(scope="session")
def monitor_scrape_names(monitor_scrape_text: str) -> set[str]:
    """Metric (sample) names the monitor exports, from that live scrape."""
    return sample_names(monitor_scrape_text)


@pytest.fixture(scope="session")
def gateway_metric_names() -> set[str]:
    """Sample names the gateway exports, from the project's table (monitor/gateway_metric_catalog.py)."""
    return set(exported_samples())


@pytest.fixture(scope="session")
def promtool(version_line: VersionLine) -> str:
    """Path of the version line's promtool (fails, never skips, when it is missing)."""
    return version_line.binary("promtool")


@pytest.fixture(scope="session")
def amtool(version_line: VersionLine) -> str:
    """Path of the version line's amtool (fails, never skips, when it is missing)."""
    return version_line.binary("amtool")


def rule_files() -> list[Path]:
    """The generated rule files."""
    return sorted(RULES_DIR.glob("*.yml"))


def load_alerts() -> list[dict[str, Any]]:
    """Every alerting rule of every rule file."""
    alerts = []
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            alerts.extend(r for r in group["rules"] if "alert" in r)
    return alerts


@pytest.fixture(scope="session")
def alerts() -> list[dict[str, Any]]:
    """Every alerting rule of alerts/rules/*.yml."""
    found = load_alerts()
    assert found, f"no alerts in {RULES_DIR}"
    return found


def run(argv: list[str], **kwargs: Any) -> subprocess.CompletedProcess[str]:
    """Run a command with a deadline, capturing text output."""
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False, **kwargs)


@pytest.fixture
def no_leftover_daemons() -> Iterator[None]:
    """Assert that nothing listens on 0.0.0.0 on Prometheus/Alertmanager ports afterwards."""
    yield
    out = run(["ss", "-ltnH"]).stdout
    wide = [
        line for line in out.splitlines() if re.search(r"(0\.0\.0\.0|\*|\[::\]):(9090|9093|9094)\s", line)
    ]
    assert not wide, f"a daemon listens on all interfaces: {wide}"
