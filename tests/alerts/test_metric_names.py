"""Every metric an alert, a runbook query or a dashboard panel reads is really exported.

"Exported" means: in the live scrape of a real monitor process after every simulator scenario
(`monitor_scrape_names`), or in the gateway's metric table (monitor/gateway_metric_catalog.py, which the
simulated gateway serves).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_support import ALERTS_DIR, BUILTIN_NAMES, EVENT_BORN_NAMES, REPO_ROOT, rule_files
from metric_names import names_in_expr

# The per-gateway dashboard and the fleet dashboard (deploy/grafana/dashboard.py writes both).
DASHBOARDS = [
    REPO_ROOT / "deploy" / "grafana" / f"{uid}.json" for uid in ("gateway-monitor", "gateway-fleet")
]
# Grafana's built-in interval variables become a duration, every other variable a regex
# (all dashboard variables are used as `label=~"$var"`), so the expression lexes as PromQL.
GRAFANA_INTERVAL = re.compile(r"\$\{?__(?:rate_interval|interval|range)(?:_ms|_s)?\}?")
GRAFANA_VARIABLE = re.compile(r"\$\{?[A-Za-z_]\w*(?::\w+)?\}?")
LABEL_VALUES = re.compile(r"^\s*label_values\((?:(?P<expr>.+),)?\s*\w+\s*\)\s*$", re.DOTALL)

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


def recording_rules() -> list[dict[str, Any]]:
    """Every recording rule of alerts/rules/*.yml."""
    return [rule for path in rule_files() for group in yaml.safe_load(path.read_text())["groups"]
            for rule in group["rules"] if "record" in rule]


RECORDED_NAMES = frozenset(rule["record"] for rule in recording_rules())


def test_rule_expressions_use_only_exported_metrics(
    alerts: list[dict[str, Any]], monitor_scrape_names: set[str], gateway_metric_names: set[str]
) -> None:
    known = monitor_scrape_names | gateway_metric_names | BUILTIN_NAMES | RECORDED_NAMES
    used: set[str] = set()
    for rule in [*alerts, *recording_rules()]:
        name = rule.get("alert") or rule["record"]
        names = names_in_expr(rule["expr"])
        assert names or name == "Watchdog", name
        unknown = names - known
        assert not unknown, f"{name} uses metrics nobody exports: {sorted(unknown)}"
        used |= names
    # The check is not vacuous: both sources are really used.
    assert used & monitor_scrape_names and used & gateway_metric_names


def test_runbook_queries_use_only_exported_metrics(
    monitor_scrape_names: set[str], gateway_metric_names: set[str]
) -> None:
    known = monitor_scrape_names | gateway_metric_names | BUILTIN_NAMES | RECORDED_NAMES
    known |= PROMETHEUS_SELF_METRICS
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


def test_live_scrape_has_every_event_born_series(monitor_scrape_names: set[str]) -> None:
    """The live fixture really drove the monitor: series that need an event are in the scrape."""
    assert not EVENT_BORN_NAMES - monitor_scrape_names, sorted(EVENT_BORN_NAMES - monitor_scrape_names)
    assert "gateway_monitor_frames_total" in monitor_scrape_names


def resolve_grafana(expr: str) -> str:
    """`expr` with Grafana's template variables replaced, so that it lexes as PromQL."""
    return GRAFANA_VARIABLE.sub(".*", GRAFANA_INTERVAL.sub("5m", expr))


def dashboard_queries(path: Path) -> list[tuple[str, str]]:
    """(where, PromQL) of every panel target and every query variable of a dashboard JSON."""
    board = json.loads(path.read_text(encoding="utf-8"))
    out: list[tuple[str, str]] = []

    def walk(panels: list[dict[str, Any]]) -> None:
        for panel in panels:
            walk(panel.get("panels", []))  # panels nested in collapsed rows
            for target in panel.get("targets", []):
                out.append((f"panel {panel.get('title')!r} {target.get('refId')}", target["expr"]))

    walk(board["panels"])
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") == "query":
            query = variable["query"] if isinstance(variable["query"], str) else variable["query"]["query"]
            match = LABEL_VALUES.match(query)
            out.append((f"variable ${variable['name']}", (match.group("expr") or "") if match else query))
    return out


@pytest.mark.parametrize(("path", "least"), [(DASHBOARDS[0], 50), (DASHBOARDS[1], 20)],
                         ids=["gateway-monitor", "gateway-fleet"])
def test_dashboard_queries_are_found(path: Path, least: int) -> None:
    queries = dashboard_queries(path)
    assert len(queries) >= least, queries
    assert resolve_grafana('rate(x{pod=~"$pod"}[$__rate_interval])') == 'rate(x{pod=~".*"}[5m])'


@pytest.mark.parametrize("path", DASHBOARDS, ids=lambda p: p.name)
def test_dashboard_queries_use_only_exported_metrics(
    path: Path, monitor_scrape_names: set[str], gateway_metric_names: set[str]
) -> None:
    known = monitor_scrape_names | gateway_metric_names | BUILTIN_NAMES | RECORDED_NAMES
    used: set[str] = set()
    for where, expr in dashboard_queries(path):
        names = names_in_expr(resolve_grafana(expr))
        assert names, f"{where}: no metric in {expr!r}"
        unknown = names - known
        assert not unknown, f"{path.name} {where} uses metrics nobody exports: {sorted(unknown)}"
        used |= names
    if path == DASHBOARDS[0]:  # the check is not vacuous: both sources are really used
        assert used & monitor_scrape_names and used & gateway_metric_names
    else:  # the fleet reads the recordings (cheap at 1,000 pods), never a raw series
        assert used <= RECORDED_NAMES | {"ALERTS"} and used & RECORDED_NAMES, sorted(used)
