"""Fixtures for the alerting tests: tool paths, rule files, exported metric names, processes."""

from __future__ import annotations

import re
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from processes import (  # noqa: F401  (fixtures re-exported for the tests in this directory)
    INSTALL_HINT,
    alertmanager_factory,
    find_binary,
    prometheus_factory,
    webhook_receiver,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
ALERTS_DIR = REPO_ROOT / "alerts"
RULES_DIR = ALERTS_DIR / "rules"
UNIT_TESTS_DIR = ALERTS_DIR / "tests"
GATEWAY_NOTES = REPO_ROOT.parent / "shared" / "GATEWAY-NOTES.md"

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

# TODO(lead): replace by the `monitor_scrape_names` fixture that scrapes a live monitor's
# /metrics. Until then this CONTRACT-like table (name and type, from the interface contract)
# stands in for the scrape, so the name check already runs. Delete this block and the fixture
# below once the live fixture exists in tests/conftest.py.
_CONTRACT_LIKE_METRICS = """
gateway_monitor_ws_connected                         gauge
gateway_monitor_ws_connects_total                    counter
gateway_monitor_ws_disconnects_total                 counter
gateway_monitor_ws_connect_failures_total            counter
gateway_monitor_ws_unauthorized                      gauge
gateway_monitor_ws_consecutive_connect_failures      gauge
gateway_monitor_ws_last_frame_timestamp_seconds      gauge
gateway_monitor_frames_total                         counter
gateway_monitor_invalid_frames_total                 counter
gateway_monitor_connection_events_total              counter
gateway_monitor_broker_up                            gauge
gateway_monitor_broker_connection_failed             gauge
gateway_monitor_broker_gap_seconds                   histogram
gateway_monitor_stale_symbols                        gauge
gateway_monitor_symbol_stale_since_timestamp_seconds gauge
gateway_monitor_symbol_series_dropped_total          counter
gateway_monitor_stale_duration_seconds               histogram
gateway_monitor_rate_limit_events_total              counter
gateway_monitor_rate_limit_requests_remaining        gauge
gateway_monitor_rate_limit_reset_timestamp_seconds   gauge
gateway_monitor_error_events_total                   counter
gateway_monitor_last_error_timestamp_seconds         gauge
gateway_monitor_account_events_total                 counter
gateway_monitor_order_events_total                   counter
gateway_monitor_position_events_total                counter
gateway_monitor_probe_success                        gauge
gateway_monitor_probe_duration_seconds               gauge
gateway_monitor_probe_http_status_code               gauge
gateway_monitor_gateway_degraded                     gauge
gateway_monitor_gateway_info                         gauge
gateway_monitor_gateway_broker_connected             gauge
gateway_monitor_gateway_stale_instruments            gauge
gateway_monitor_build_info                           gauge
"""


def exposition_names(name: str, kind: str) -> set[str]:
    """Return the sample names a metric of this type shows in a scrape."""
    if kind == "histogram":
        return {f"{name}_bucket", f"{name}_sum", f"{name}_count"}
    if kind == "summary":
        return {name, f"{name}_sum", f"{name}_count"}
    return {name}


@pytest.fixture(scope="session")
def monitor_scrape_names() -> set[str]:
    """Metric names the monitor exports. TODO(lead): take them from a live scrape instead."""
    names: set[str] = set()
    for line in _CONTRACT_LIKE_METRICS.strip().splitlines():
        name, kind = line.split()
        names |= exposition_names(name, kind)
    return names


@pytest.fixture(scope="session")
def gateway_metric_names() -> set[str]:
    """Metric names the gateway exports, from the table in ../shared/GATEWAY-NOTES.md."""
    if not GATEWAY_NOTES.exists():
        pytest.fail(f"{GATEWAY_NOTES} is missing; the gateway's metric table lives there")
    rows = re.findall(
        r"^\|\s*`([a-z_:][a-z0-9_:]*)`\s*\|\s*([a-z]+)", GATEWAY_NOTES.read_text(), flags=re.MULTILINE
    )
    if len(rows) < 10:
        pytest.fail(f"could not parse the metric table of {GATEWAY_NOTES} (found {rows})")
    return set().union(*(exposition_names(name, kind) for name, kind in rows))


@pytest.fixture(scope="session")
def promtool() -> str:
    """Path of promtool (fails, never skips, when it is missing)."""
    return find_binary("promtool")


@pytest.fixture(scope="session")
def amtool() -> str:
    """Path of amtool (fails, never skips, when it is missing)."""
    return find_binary("amtool")


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
