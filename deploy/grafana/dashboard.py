#!/usr/bin/env python3
"""The Grafana dashboard of gateway-monitor, as code.

    python deploy/grafana/dashboard.py              write deploy/grafana/gateway-monitor.json
    python deploy/grafana/dashboard.py --check      exit 1 if the committed JSON is out of date
    python deploy/grafana/dashboard.py --queries    print every panel query as JSON

Queries use only metric names the monitor exports (CONTRACT) or the gateway serves
(monitor/gateway_metric_catalog.py); tests/deploy checks that against the monitor's registry and that table.
Standard library only, so that it runs anywhere Python does.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

OUTPUT = Path(__file__).with_name("gateway-monitor.json")
UID = "gateway-monitor"
DATASOURCE = {"type": "prometheus", "uid": "${datasource}"}
# Every query is scoped by the namespace/pod template variables ("All" = ".*").
SEL = 'namespace=~"$namespace", pod=~"$pod"'
WINDOW = "$__rate_interval"
# What the template variables stand for when a query is run outside Grafana.
RESOLVED = {
    "$namespace": ".*",
    "$pod": ".*",
    "$__rate_interval": "5m",
    "$__range": "1h",
}
WIDTH = 24


@dataclass
class Target:
    """One PromQL query of a panel."""

    expr: str
    legend: str = ""
    instant: bool = False


@dataclass
class Panel:
    """One panel (or row, when kind == "row")."""

    kind: str
    title: str
    description: str = ""
    targets: list[Target] = field(default_factory=list)
    unit: str = "short"
    width: int = 8
    height: int = 8
    extra: dict[str, Any] = field(default_factory=dict)


def m(name: str, labels: str = "") -> str:
    """A selector for metric `name` within the chosen namespace/pod, plus extra matchers."""
    return f"{name}{{{SEL}{', ' + labels if labels else ''}}}"


def rate(name: str, by: str = "", labels: str = "", fn: str = "rate") -> str:
    """sum [by (...)] (fn(name{...}[window]))."""
    grouping = f" by ({by})" if by else ""
    return f"sum{grouping} ({fn}({m(name, labels)}[{WINDOW}]))"


def gateway_increase(name: str, by: str = "") -> str:
    """Increase of a gateway counter, counting the increment that created the series.

    The gateway exports a counter only from its first increment, so its series starts
    at 1 and increase() alone shows a first dropped notification as 0; a series that
    did not exist one window ago contributes its whole value (as the alert rules do).
    """
    grouping = f" by ({by})" if by else ""
    sel = m(name)
    return f"sum{grouping} (({sel} unless {sel} offset {WINDOW}) or increase({sel}[{WINDOW}]))"


def quantile(q: float, name: str, by: str) -> str:
    """histogram_quantile over a classic histogram, grouped by `by`."""
    return (
        f"histogram_quantile({q}, sum by (le, {by}) "
        f"(rate({m(name + '_bucket')}[{WINDOW}])))"
    )


def row(title: str) -> Panel:
    """A full-width row header."""
    return Panel("row", title, width=WIDTH, height=1)


def timeseries(title: str, description: str, *targets: Target, unit: str = "short",
               width: int = 8, stack: bool = False) -> Panel:
    """A time series panel."""
    extra: dict[str, Any] = {}
    if stack:
        extra["stacking"] = {"mode": "normal", "group": "A"}
    return Panel("timeseries", title, description, list(targets), unit, width, extra=extra)


def stat(title: str, description: str, *targets: Target, unit: str = "short",
         width: int = 4, mappings: list[dict[str, Any]] | None = None,
         thresholds: list[tuple[float | None, str]] | None = None) -> Panel:
    """A single-value panel, coloured by thresholds and value mappings."""
    extra = {"mappings": mappings or [], "thresholds": thresholds or [(None, "green")]}
    return Panel("stat", title, description, list(targets), unit, width, height=4, extra=extra)


def table(title: str, description: str, *targets: Target, width: int = 12) -> Panel:
    """A table of instant query results."""
    return Panel("table", title, description, list(targets), width=width)


UP_DOWN = [{"type": "value", "options": {"0": {"text": "DOWN", "color": "red"},
                                         "1": {"text": "UP", "color": "green"}}}]
NO_YES = [{"type": "value", "options": {"0": {"text": "no", "color": "green"},
                                        "1": {"text": "YES", "color": "red"}}}]


def panels() -> list[Panel]:
    """The dashboard's rows and panels, top to bottom."""
    return [
        row("Monitor ↔ gateway WebSocket"),
        stat("Monitor connected", "Is the monitor's WebSocket to the gateway open?",
             Target(f"min({m('gateway_monitor_ws_connected')})"),
             mappings=UP_DOWN, thresholds=[(None, "red"), (1, "green")]),
        stat("Unauthorized", "The gateway refused the monitor's API key (401/403).",
             Target(f"max({m('gateway_monitor_ws_unauthorized')})"),
             mappings=NO_YES, thresholds=[(None, "green"), (1, "red")]),
        stat("Consecutive connect failures", "Failed attempts since the last success.",
             Target(f"max({m('gateway_monitor_ws_consecutive_connect_failures')})"),
             thresholds=[(None, "green"), (3, "orange"), (10, "red")]),
        stat("Last frame age", "Seconds since the monitor received any frame.",
             Target(f"time() - max({m('gateway_monitor_ws_last_frame_timestamp_seconds')} > 0)"),
             unit="s", thresholds=[(None, "green"), (60, "orange"), (300, "red")]),
        stat("Gateway ready", "The monitor's probe of the gateway's /readyz.",
             Target("min(" + m("gateway_monitor_probe_success", 'endpoint="readyz"') + ")"),
             mappings=UP_DOWN, thresholds=[(None, "red"), (1, "green")]),
        stat("Gateway degraded", "The gateway's /health says degraded (a broker is down).",
             Target(f"max({m('gateway_monitor_gateway_degraded')})"),
             mappings=NO_YES, thresholds=[(None, "green"), (1, "red")]),
        timeseries("Connects, disconnects and failures",
                   "WebSocket connects, disconnects by reason and failed attempts by reason.",
                   Target(rate("gateway_monitor_ws_connects_total", fn="increase"), "connects"),
                   Target(rate("gateway_monitor_ws_disconnects_total", "reason", fn="increase"),
                          "disconnect: {{reason}}"),
                   Target(rate("gateway_monitor_ws_connect_failures_total", "reason",
                               fn="increase"), "connect failure: {{reason}}"),
                   width=24),
        row("Broker"),
        timeseries("Broker up (from the stream)",
                   "1 while the gateway reports its broker link up (connection frames).",
                   Target(f"max by (broker) ({m('gateway_monitor_broker_up')})", "{{broker}}"),
                   Target(f"max by (broker) ({m('gateway_monitor_broker_connection_failed')})",
                          "{{broker}} connection failed"),
                   width=8),
        timeseries("Broker connected (from /health)",
                   "providers[].connected of the gateway's /health, probed by the monitor.",
                   Target(f"max by (broker) ({m('gateway_monitor_gateway_broker_connected')})",
                          "{{broker}}"),
                   width=8),
        timeseries("Broker gaps (p50/p99)",
                   "Duration of broker outages reported by BROKER_RECONNECTED (gap_duration_ms).",
                   Target(quantile(0.5, "gateway_monitor_broker_gap_seconds", "broker"),
                          "p50 {{broker}}"),
                   Target(quantile(0.99, "gateway_monitor_broker_gap_seconds", "broker"),
                          "p99 {{broker}}"),
                   unit="s", width=8),
        timeseries("Gateway broker link events (gateway /metrics)",
                   "The gateway's own counters of broker disconnections and reconnects.",
                   Target(gateway_increase("gateway_broker_disconnections_total", "platform"),
                          "disconnections {{platform}}"),
                   Target(gateway_increase("gateway_broker_reconnect_attempts_total", "platform"),
                          "reconnect attempts {{platform}}"),
                   Target(gateway_increase("gateway_broker_reconnections_total", "platform"),
                          "reconnections {{platform}}"),
                   Target(gateway_increase("gateway_broker_reconnect_failures_total", "platform"),
                          "reconnect failures {{platform}}"),
                   width=12),
        timeseries("Connection events",
                   "connection frames by event and broker.",
                   Target(rate("gateway_monitor_connection_events_total", "event, broker",
                               fn="increase"), "{{event}} {{broker}}"),
                   width=12),
        row("Market data"),
        timeseries("Frames per second by type", "Every frame the monitor received, by type.",
                   Target(rate("gateway_monitor_frames_total", "type"), "{{type}}"),
                   unit="ops", width=12, stack=True),
        timeseries("Invalid frames", "Frames the monitor could not decode, by reason.",
                   Target(rate("gateway_monitor_invalid_frames_total", "reason"), "{{reason}}"),
                   Target(rate("gateway_monitor_symbol_series_dropped_total"),
                          "symbols not tracked (MONITOR_MAX_SYMBOL_SERIES)"),
                   unit="ops", width=12),
        timeseries("Stale symbols",
                   "Symbols whose market data is stale: from data_staleness frames and from "
                   "/health stale_instruments.",
                   Target(f"sum by (broker) ({m('gateway_monitor_stale_symbols')})",
                          "stream {{broker}}"),
                   Target(f"sum by (broker) ({m('gateway_monitor_gateway_stale_instruments')})",
                          "/health {{broker}}"),
                   width=8),
        table("Stale symbols now", "How long each stale symbol has been stale.",
              Target(f"time() - max by (broker, symbol) "
                     f"({m('gateway_monitor_symbol_stale_since_timestamp_seconds')} > 0)",
                     instant=True),
              width=8),
        timeseries("Staleness episodes (p50/p99)", "How long symbols stayed stale.",
                   Target(quantile(0.5, "gateway_monitor_stale_duration_seconds", "broker"),
                          "p50 {{broker}}"),
                   Target(quantile(0.99, "gateway_monitor_stale_duration_seconds", "broker"),
                          "p99 {{broker}}"),
                   unit="s", width=8),
        row("Errors and rate limits"),
        timeseries("Error events by code", "error frames received, by code.",
                   Target(rate("gateway_monitor_error_events_total", "code", fn="increase"),
                          "{{code}}"),
                   width=12, stack=True),
        timeseries("Rate limit events",
                   "rate_limit frames (monitor) and the gateway's own rate-limit counter.",
                   Target(rate("gateway_monitor_rate_limit_events_total", "event",
                               fn="increase"), "stream {{event}}"),
                   Target(gateway_increase("gateway_rate_limit_events_total", "platform, event_type"),
                          "gateway {{platform}} {{event_type}}"),
                   width=6),
        timeseries("Rate limit: requests remaining",
                   "requests_remaining of the last rate_limit frame.",
                   Target(f"min({m('gateway_monitor_rate_limit_requests_remaining')})",
                          "remaining"),
                   width=6),
        row("Gateway probes"),
        timeseries("Probe success", "The monitor's probes of /readyz, /livez and /health.",
                   Target(f"min by (endpoint) ({m('gateway_monitor_probe_success')})",
                          "{{endpoint}}"),
                   width=8),
        timeseries("Probe latency", "Duration of the last probe of each endpoint.",
                   Target(f"max by (endpoint) ({m('gateway_monitor_probe_duration_seconds')})",
                          "{{endpoint}}"),
                   unit="s", width=8),
        timeseries("Probe HTTP status / degraded",
                   "HTTP status of the last probe; 1 while /health says degraded.",
                   Target(f"max by (endpoint) "
                          f"({m('gateway_monitor_probe_http_status_code')})", "{{endpoint}}"),
                   Target(f"max({m('gateway_monitor_gateway_degraded')})", "degraded"),
                   width=8),
        table("Versions", "Gateway version (from /health) and monitor version per pod.",
              Target(f"max by (pod, version, git_sha) ({m('gateway_monitor_gateway_info')})",
                     instant=True),
              Target(f"max by (pod, version) ({m('gateway_monitor_build_info')})",
                     instant=True),
              width=24),
        row("Orders (gateway /metrics and stream)"),
        timeseries("Orders submitted", "The gateway's own order submissions per second.",
                   Target(rate("gateway_orders_submitted_total", "platform"), "{{platform}}"),
                   unit="ops", width=8),
        timeseries("Order submit latency (p50/p99)", "The gateway's broker round trip.",
                   Target(quantile(0.5, "gateway_order_submit_duration_seconds", "platform"),
                          "p50 {{platform}}"),
                   Target(quantile(0.99, "gateway_order_submit_duration_seconds", "platform"),
                          "p99 {{platform}}"),
                   unit="s", width=8),
        timeseries("Order events (gateway)", "The gateway's order events by type.",
                   Target(gateway_increase("gateway_order_events_total", "platform, event_type"),
                          "{{platform}} {{event_type}}"),
                   width=8),
        timeseries("Order, position and account events (stream)",
                   "order, position and account frames the monitor saw, by event.",
                   Target(rate("gateway_monitor_order_events_total", "event", fn="increase"),
                          "order {{event}}"),
                   Target(rate("gateway_monitor_position_events_total", "event", fn="increase"),
                          "position {{event}}"),
                   Target(rate("gateway_monitor_account_events_total", "event", fn="increase"),
                          "account {{event}}"),
                   width=12),
        timeseries("Safety counters (gateway)",
                   "Critical notifications that reached no client, OCO double exits and "
                   "circuit-breaker resets: any increase needs a look.",
                   Target(gateway_increase("gateway_critical_notifications_dropped_total", "platform"),
                          "critical dropped {{platform}}"),
                   Target(gateway_increase("gateway_oco_double_exit_total", "platform"),
                          "OCO double exit {{platform}}"),
                   Target(gateway_increase("gateway_circuit_breaker_resets_total"),
                          "circuit breaker resets"),
                   width=12),
        row("Gateway WebSocket clients"),
        timeseries("Active WebSocket clients", "Clients connected to the gateway (incl. monitor).",
                   Target(f"sum({m('gateway_ws_connections_active')})", "clients"),
                   width=12),
        timeseries("Slow-consumer drops",
                   "Messages the gateway dropped because a client's queue was full "
                   "(gateway_ws_slow_consumer_disconnects counts messages, not clients).",
                   Target(rate("gateway_ws_slow_consumer_disconnects"), "dropped messages/s"),
                   unit="ops", width=12),
    ]


def _template_variables() -> list[dict[str, Any]]:
    def query_var(name: str, label: str, query: str) -> dict[str, Any]:
        return {
            "name": name, "label": label, "type": "query", "datasource": DATASOURCE,
            "query": query, "definition": query, "refresh": 2, "sort": 1,
            "includeAll": True, "allValue": ".*", "multi": True,
            "current": {"selected": True, "text": ["All"], "value": ["$__all"]},
            "options": [], "hide": 0, "regex": "", "skipUrlSync": False,
        }

    return [
        {"name": "datasource", "label": "Data source", "type": "datasource",
         "query": "prometheus", "current": {}, "hide": 0, "includeAll": False,
         "multi": False, "options": [], "refresh": 1, "regex": "", "skipUrlSync": False},
        query_var("namespace", "Namespace", "label_values(gateway_monitor_build_info, namespace)"),
        query_var("pod", "Pod",
                  'label_values(gateway_monitor_build_info{namespace=~"$namespace"}, pod)'),
    ]


def _field_config(panel: Panel) -> dict[str, Any]:
    steps = [{"value": v, "color": c} for v, c in panel.extra.get("thresholds", [(None, "green")])]
    defaults: dict[str, Any] = {
        "unit": panel.unit,
        "thresholds": {"mode": "absolute", "steps": steps},
        "mappings": panel.extra.get("mappings", []),
    }
    if panel.kind == "timeseries":
        defaults["custom"] = {"drawStyle": "line", "lineWidth": 1, "fillOpacity": 10,
                              "showPoints": "never", "spanNulls": False,
                              "stacking": panel.extra.get("stacking", {"mode": "none"})}
    return {"defaults": defaults, "overrides": []}


def _targets(panel: Panel) -> list[dict[str, Any]]:
    out = []
    for ref, t in zip("ABCDEFGHIJ", panel.targets, strict=False):
        target: dict[str, Any] = {"refId": ref, "datasource": DATASOURCE, "expr": t.expr,
                                  "legendFormat": t.legend or "__auto", "range": not t.instant,
                                  "instant": t.instant}
        if panel.kind == "table":
            target["format"] = "table"
        out.append(target)
    return out


def _layout(items: list[Panel]) -> Iterator[tuple[Panel, dict[str, int]]]:
    """Place panels left to right, wrapping at 24 columns; rows take a line of their own."""
    x = y = line_height = 0
    for panel in items:
        if panel.kind == "row" or x + panel.width > WIDTH:
            y, x, line_height = y + line_height, 0, 0
        yield panel, {"x": x, "y": y, "w": panel.width, "h": panel.height}
        if panel.kind == "row":
            y += panel.height
        else:
            x += panel.width
            line_height = max(line_height, panel.height)


def _panel_json(panel: Panel, pid: int, pos: dict[str, int]) -> dict[str, Any]:
    if panel.kind == "row":
        return {"type": "row", "id": pid, "title": panel.title, "gridPos": pos,
                "collapsed": False, "panels": []}
    options: dict[str, Any] = {}
    if panel.kind == "timeseries":
        options = {"legend": {"displayMode": "table", "placement": "bottom", "showLegend": True,
                              "calcs": ["lastNotNull", "max"]},
                   "tooltip": {"mode": "multi", "sort": "desc"}}
    elif panel.kind == "stat":
        options = {"reduceOptions": {"calcs": ["lastNotNull"], "fields": "", "values": False},
                   "colorMode": "background", "graphMode": "none", "textMode": "value"}
    body: dict[str, Any] = {
        "type": panel.kind, "id": pid, "title": panel.title, "description": panel.description,
        "datasource": DATASOURCE, "gridPos": pos, "targets": _targets(panel),
        "fieldConfig": _field_config(panel), "options": options,
    }
    if panel.kind == "table":
        body["transformations"] = [{"id": "merge", "options": {}},
                                   {"id": "organize", "options": {"excludeByName": {"Time": True}}}]
    return body


def dashboard() -> dict[str, Any]:
    """The whole dashboard JSON model."""
    return {
        "uid": UID,
        "title": "Trading Gateway / gateway-monitor",
        "description": "The Tektii Trading Gateway seen by gateway-monitor and by its own /metrics.",
        "tags": ["trading-gateway", "gateway-monitor"],
        "timezone": "browser",
        "editable": True,
        "graphTooltip": 1,
        "refresh": "30s",
        "schemaVersion": 39,
        "version": 1,
        "time": {"from": "now-6h", "to": "now"},
        "timepicker": {},
        "annotations": {"list": [{
            "builtIn": 1, "datasource": {"type": "grafana", "uid": "-- Grafana --"},
            "enable": True, "hide": True, "iconColor": "rgba(0, 211, 255, 1)",
            "name": "Annotations & Alerts", "type": "dashboard"}]},
        "links": [],
        "templating": {"list": _template_variables()},
        "panels": [_panel_json(p, i, pos) for i, (p, pos) in enumerate(_layout(panels()), 1)],
    }


def render() -> str:
    """The dashboard file's exact text."""
    return json.dumps(dashboard(), indent=2, ensure_ascii=False) + "\n"


def resolve(expr: str) -> str:
    """`expr` with the template variables replaced, for running it outside Grafana."""
    for var, value in sorted(RESOLVED.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def queries() -> list[dict[str, str]]:
    """Every panel query: panel title, refId, expr as in Grafana and resolved for Prometheus."""
    out = []
    for panel in dashboard()["panels"]:
        for target in panel.get("targets", []):
            out.append({"panel": panel["title"], "refId": target["refId"],
                        "expr": target["expr"], "resolved": resolve(target["expr"])})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if the JSON is out of date")
    parser.add_argument("--queries", action="store_true", help="print every query as JSON")
    parser.add_argument("--output", type=Path, default=OUTPUT, help="file to write or check")
    args = parser.parse_args(argv)
    if args.queries:
        json.dump(queries(), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    text = render()
    if args.check:
        if not args.output.exists() or args.output.read_text(encoding="utf-8") != text:
            print(f"{args.output} is out of date: run python {__file__}", file=sys.stderr)
            return 1
        return 0
    args.output.write_text(text, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main())
