"""Every panel query of every dashboard in deploy/grafana/*.json, ready to run against Prometheus.

The queries are read from the committed JSON, whatever generated it: every target with an `expr`
of every panel (panels nested in rows included) and every query variable. Grafana's variables
are replaced as tests/alerts/test_metric_names.py `resolve_grafana` does (intervals become 5m,
every other variable ".*"); a variable used with an equality matcher (`broker="$broker"`) becomes
a regex matcher first, so that ".*" means "all" there too.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from test_metric_names import LABEL_VALUES, resolve_grafana

from harness.paths import GRAFANA_DIR

EQUALS_VARIABLE = re.compile(r'(\w+)\s*=\s*"(\$\{?[A-Za-z_]\w*(?::\w+)?\}?)"')
TIME_FROM = re.compile(r"^now-(\d+)([smhdw])$")
UNIT_SECONDS = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class Query:
    """One query of one dashboard."""

    dashboard: str  # file name
    where: str  # panel title and refId, or the variable
    expr: str  # as in Grafana
    resolved: str  # as run against Prometheus
    range_seconds: float  # the dashboard's default time range


def resolve(expr: str) -> str:
    """`expr` with Grafana's variables replaced so that it runs as PromQL."""
    return resolve_grafana(EQUALS_VARIABLE.sub(r'\1=~"\2"', expr))


def _range_seconds(board: dict[str, Any]) -> float:
    match = TIME_FROM.match(str(board.get("time", {}).get("from", "now-6h")))
    return int(match.group(1)) * UNIT_SECONDS[match.group(2)] if match else 6 * 3600.0


def _panel_targets(panels: list[dict[str, Any]]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for panel in panels:
        out.extend(_panel_targets(panel.get("panels", [])))  # collapsed rows hold their panels
        for target in panel.get("targets", []):
            if isinstance(target.get("expr"), str) and target["expr"].strip():
                out.append((f"{panel.get('title', '?')} [{target.get('refId', '?')}]", target["expr"]))
    return out


def _variables(board: dict[str, Any]) -> list[tuple[str, str]]:
    out: list[tuple[str, str]] = []
    for variable in board.get("templating", {}).get("list", []):
        if variable.get("type") != "query":
            continue
        query = variable.get("query")
        text = query if isinstance(query, str) else (query or {}).get("query", "")
        match = LABEL_VALUES.match(text)
        expr = (match.group("expr") or "") if match else text
        if expr.strip():
            out.append((f"variable ${variable.get('name')}", expr))
    return out


def dashboard_queries(directory: Path = GRAFANA_DIR) -> list[Query]:
    """Every panel target and query variable of every dashboard JSON in `directory`."""
    queries: list[Query] = []
    for path in sorted(directory.glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        seconds = _range_seconds(board)
        for where, expr in [*_panel_targets(board.get("panels", [])), *_variables(board)]:
            queries.append(Query(path.name, where, expr, resolve(expr), seconds))
    return queries
