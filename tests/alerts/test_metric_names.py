"""Every metric an alert or a runbook query reads is exported by the monitor or the gateway."""

from __future__ import annotations

import re
from typing import Any

import pytest
from conftest import ALERTS_DIR, BUILTIN_NAMES
from metric_names import names_in_expr

# Prometheus's own metrics, used only by the Watchdog runbook.
PROMETHEUS_SELF_METRICS = frozenset(
    {"prometheus_notifications_dropped_total", "prometheus_notifications_alertmanagers_discovered"}
)


@pytest.mark.parametrize(
    ("expr", "names"),
    [
        ("up", {"up"}),
        ('up{job="gateway-monitor"} == 0', {"up"}),
        ('absent(up{job="x"})', {"up"}),
        ("sum by (le, broker) (rate(foo_bucket[5m]))", {"foo_bucket"}),
        ("sum(rate(foo_total[5m])) without (instance)", {"foo_total"}),
        ("a / on (job, instance) group_left (version) b", {"a", "b"}),
        ("a unless ignoring(reason) b offset 1h", {"a", "b"}),
        ("x > bool 0 and y or z", {"x", "y", "z"}),
        ('label_replace(x, "dst", "$1", "src_metric_like", "(.+)")', {"x"}),
        ('{__name__="via_matcher", a="b"}', {"via_matcher"}),
        ('{__name__=~"regex.*"}', set()),
        ("max_over_time(x[5m:30s]) > 1e9", {"x"}),
        ("time() - ts_seconds > 600 and ts_seconds > 0x10", {"ts_seconds"}),
        ("histogram_quantile(0.9, sum by (le) (rate(h_bucket[1d])))", {"h_bucket"}),
        ("topk(3, x) + Inf - NaN", {"x"}),
        ("vector(1)", set()),
        ("# comment mentions not_a_metric\nx # trailing", {"x"}),
        ('x{a="has } brace and # hash"}', {"x"}),
        ("ns:recording:rate5m", {"ns:recording:rate5m"}),
        ("x @ 1609746000", {"x"}),
    ],
)
def test_names_in_expr(expr: str, names: set[str]) -> None:
    assert names_in_expr(expr) == names


def test_names_in_expr_rejects_garbage() -> None:
    with pytest.raises(ValueError, match="cannot tokenize"):
        names_in_expr("x $ y")


def test_rule_expressions_use_only_exported_metrics(
    alerts: list[dict[str, Any]], monitor_scrape_names: set[str], gateway_metric_names: set[str]
) -> None:
    known = monitor_scrape_names | gateway_metric_names | BUILTIN_NAMES
    used: set[str] = set()
    for rule in alerts:
        names = names_in_expr(rule["expr"])
        assert names or rule["alert"] == "Watchdog", rule["alert"]
        unknown = names - known
        assert not unknown, f"{rule['alert']} uses metrics nobody exports: {sorted(unknown)}"
        used |= names
    # The check is not vacuous: both sources are really used.
    assert used & monitor_scrape_names and used & gateway_metric_names


def test_runbook_queries_use_only_exported_metrics(
    monitor_scrape_names: set[str], gateway_metric_names: set[str]
) -> None:
    known = monitor_scrape_names | gateway_metric_names | BUILTIN_NAMES | PROMETHEUS_SELF_METRICS
    runbook = (ALERTS_DIR / "RUNBOOK.md").read_text()
    blocks = re.findall(r"```promql\n(.*?)```", runbook, flags=re.DOTALL)
    assert len(blocks) >= 15
    for block in blocks:
        for line in block.splitlines():
            unknown = names_in_expr(line) - known
            assert not unknown, f"RUNBOOK.md query {line!r} uses unknown metrics {unknown}"


def test_gateway_table_is_parsed(gateway_metric_names: set[str]) -> None:
    assert "gateway_ws_slow_consumer_disconnects" in gateway_metric_names
    assert "gateway_order_submit_duration_seconds_bucket" in gateway_metric_names
