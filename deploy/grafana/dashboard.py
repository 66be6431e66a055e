#!/usr/bin/env python3
"""The Grafana dashboards of gateway-monitor, as code (grafana-foundation-sdk).

    python deploy/grafana/dashboard.py              write gateway-monitor.json and gateway-fleet.json
    python deploy/grafana/dashboard.py --check      exit 1 if a committed JSON is out of date
    python deploy/grafana/dashboard.py --queries    print every panel query of both as JSON

- gateway-monitor.json (uid gateway-monitor): one gateway, or a few, picked by namespace/pod.
- gateway-fleet.json (uid gateway-fleet): every gateway at a glance, read only from the recording
  rules of alerts/rules (fleet.yml, and the broker:* counts of critical.yml and warning.yml), so
  that it stays cheap at 1,000 pods; each row of its table opens the per-gateway dashboard.

Queries use only metric names the monitor exports, the gateway serves
(monitor/gateway_metric_catalog.py) or the repository's recording rules; tests/deploy and
tests/alerts check that, and that every query returns data against a real Prometheus.
Needs grafana-foundation-sdk (the `test` extra of pyproject.toml).

Where the SDK has no typed builder, the generator says so in a comment marked "SDK:".
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import ascii_uppercase
from typing import Any

from grafana_foundation_sdk.builders import common as cb
from grafana_foundation_sdk.builders import dashboard as db
from grafana_foundation_sdk.builders import heatmap as heatmap_sdk
from grafana_foundation_sdk.builders import prometheus
from grafana_foundation_sdk.builders import stat as stat_sdk
from grafana_foundation_sdk.builders import table as table_sdk
from grafana_foundation_sdk.builders import timeseries as timeseries_sdk
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models import common as cm
from grafana_foundation_sdk.models import dashboard as dm
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

HERE = Path(__file__).resolve().parent
GATEWAY_UID = "gateway-monitor"
FLEET_UID = "gateway-fleet"
OUTPUTS = {GATEWAY_UID: HERE / "gateway-monitor.json", FLEET_UID: HERE / "gateway-fleet.json"}
DATASOURCE = dm.DataSourceRef(type_val="prometheus", uid="${datasource}")
# Every per-gateway query is scoped by the namespace/pod template variables ("All" = ".*").
SEL = 'namespace=~"$namespace", pod=~"$pod"'
# The fleet's per-gateway recordings are scoped by namespace only.
FLEET_SEL = 'namespace=~"$namespace"'
WINDOW = "$__rate_interval"
# What the template variables stand for when a query is run outside Grafana.
RESOLVED = {
    "$namespace": ".*",
    "$pod": ".*",
    "$__rate_interval": "5m",
    "$__range": "1h",
}
WIDTH = 24

Panel = Builder[dm.Panel]


@dataclass
class Row:
    """A row header and the panels under it, left to right (each line of the row fills 24 columns)."""

    title: str
    panels: Sequence[Panel]


# --- queries ---------------------------------------------------------------------------------


def q(expr: str, legend: str = "__auto", *, instant: bool = False,
      fmt: PromQueryFormat | None = None) -> prometheus.Dataquery:
    """One PromQL query of a panel (its refId is given by the panel, in order)."""
    query = prometheus.Dataquery().expr(expr).legend_format(legend).datasource(DATASOURCE)
    query = query.instant() if instant else query.range()
    return query.format(fmt) if fmt else query


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


def rec(name: str) -> str:
    """A per-gateway recording rule within the chosen namespaces."""
    return f"{name}{{{FLEET_SEL}}}"


# One series per gateway, value 0: what the fleet table's columns are filled with where a
# recording has no series (no stale symbol ever seen, no critical event in 24 h).
GATEWAYS = f"max by (namespace, pod) ({rec('namespace_pod:gateway_monitor_blind:max')})"


def column(name: str, expr: str, by: str = "namespace, pod") -> str:
    """`expr` aggregated by `by`, labelled column="name": one column of a fleet table.

    The table turns the label `column` into the value's field name (labelsToFields with
    valueLabel) and merges the queries on the remaining labels, so each row is one gateway
    (or one broker) with one column per query. (A query that sets `column` from a label, as the
    broker state does, makes one column per value of that label.)
    """
    return f'label_replace(max by ({by}) ({expr}), "column", "{name}", "", "")'


def or_zero(expr: str, zero: str = GATEWAYS) -> str:
    """`expr`, and 0 for every series of `zero` that `expr` lacks."""
    return f"({expr}) or (0 * {zero})"


# --- panels ----------------------------------------------------------------------------------

GREEN = [(None, "green")]
UP_DOWN = {"0": ("DOWN", "red"), "1": ("UP", "green")}
NO_YES = {"0": ("no", "green"), "1": ("YES", "red")}
BROKER_STATES = {"0": ("up", "green"), "1": ("disconnected", "orange"), "2": ("failed", "red")}


def thresholds(steps: Sequence[tuple[float | None, str]]) -> db.ThresholdsConfig:
    """Absolute thresholds: (from value, colour), the first from None (minus infinity)."""
    return db.ThresholdsConfig().mode(dm.ThresholdsMode.ABSOLUTE).steps(
        [dm.Threshold(value=v, color=c) for v, c in steps])


def mappings(values: dict[str, tuple[str, str]]) -> list[dm.ValueMapping]:
    """One value mapping: value -> (text, colour)."""
    return [dm.ValueMap(options={k: dm.ValueMappingResult(text=t, color=c, index=i)
                                 for i, (k, (t, c)) in enumerate(values.items())})]


def _common(panel: Any, title: str, description: str, targets: Sequence[prometheus.Dataquery],
            unit: str, width: int, height: int,
            steps: Sequence[tuple[float | None, str]] = GREEN) -> Any:
    panel.title(title).description(description).datasource(DATASOURCE).span(width).height(height)
    panel.unit(unit).thresholds(thresholds(steps))
    for ref, target in zip(ascii_uppercase, targets, strict=False):  # SDK: no refId by default
        panel.with_target(target.ref_id(ref))
    return panel


def timeseries(title: str, description: str, *targets: prometheus.Dataquery, unit: str = "short",
               width: int = 8, height: int = 8, stack: bool = False) -> Panel:
    """A time series panel: lines, legend as a table with last and max."""
    panel = (timeseries_sdk.Panel()
             .legend(cb.VizLegendOptions().display_mode(cm.LegendDisplayMode.TABLE)
                     .placement(cm.LegendPlacement.BOTTOM).show_legend(True).calcs(["lastNotNull", "max"]))
             .tooltip(cb.VizTooltipOptions().mode(cm.TooltipDisplayMode.MULTI).sort(cm.SortOrder.DESCENDING))
             .draw_style(cm.GraphDrawStyle.LINE).line_width(1).fill_opacity(10)
             .show_points(cm.VisibilityMode.NEVER).span_nulls(False)
             .stacking(cb.StackingConfig().mode(cm.StackingMode.NORMAL if stack else cm.StackingMode.NONE)
                       .group("A")))
    result: Panel = _common(panel, title, description, targets, unit, width, height)
    return result


def stat(title: str, description: str, *targets: prometheus.Dataquery, unit: str = "short",
         width: int = 4, height: int = 4, values: dict[str, tuple[str, str]] | None = None,
         steps: Sequence[tuple[float | None, str]] = GREEN) -> Panel:
    """A single-value panel (one per series), coloured by thresholds and value mappings."""
    panel = (stat_sdk.Panel()
             .reduce_options(cb.ReduceDataOptions().calcs(["lastNotNull"]).fields("").values(False))
             .color_mode(cm.BigValueColorMode.BACKGROUND).graph_mode(cm.BigValueGraphMode.NONE)
             .text_mode(cm.BigValueTextMode.AUTO if len(targets) > 1 else cm.BigValueTextMode.VALUE)
             .mappings(mappings(values) if values else []))
    result: Panel = _common(panel, title, description, targets, unit, width, height, steps)
    return result


def table(title: str, description: str, *targets: prometheus.Dataquery, width: int = 12,
          height: int = 8, unit: str = "short", rename: dict[str, str] | None = None,
          sort: str | None = None) -> Panel:
    """A table of instant queries in table format, merged into one table on their labels."""
    # SDK: transformations are typed only as (id, options object); their options are plain dicts.
    organize = {"excludeByName": {"Time": True}, "renameByName": rename or {}}
    panel = (table_sdk.Panel()
             .transformations([dm.DataTransformerConfig(id_val="merge", options={}),
                               dm.DataTransformerConfig(id_val="organize", options=organize)])
             .cell_height(cm.TableCellHeight.SM))
    if sort:
        panel.sort_by([cb.TableSortByFieldState().display_name(sort).desc(True)])
    result: Panel = _common(panel, title, description, targets, unit, width, height)
    return result


def heatmap(title: str, description: str, query: prometheus.Dataquery, unit: str,
            width: int = 12, height: int = 8) -> Panel:
    """A heatmap of a classic histogram's buckets (query in heatmap format, one series per le)."""
    panel = (heatmap_sdk.Panel().calculate(False).y_axis(heatmap_sdk.YAxisConfig().unit(unit))
             .cell_values(heatmap_sdk.CellValues().unit("short"))
             .rows_frame(heatmap_sdk.RowsHeatmapOptions().layout(cm.HeatmapCellLayout.AUTO)))
    result: Panel = _common(panel, title, description, [query], "short", width, height)
    return result


def instant_table(expr: str) -> prometheus.Dataquery:
    """An instant query in table format (one row per series, one column per label)."""
    return q(expr, instant=True, fmt=PromQueryFormat.TABLE)


def column_table(title: str, description: str, *targets: prometheus.Dataquery, order: Sequence[str],
                 width: int, height: int) -> table_sdk.Panel:
    """A table whose every query labels its series with `column` (see column()): one row per
    key (namespace/pod, or broker), one column per query; `order` are the first columns."""
    # SDK: as in table(), the transformations' options are plain dicts.
    to_fields = {"mode": "columns", "valueLabel": "column"}
    transformations = [
        dm.DataTransformerConfig(id_val="labelsToFields", options=to_fields),
        dm.DataTransformerConfig(id_val="merge", options={}),
        dm.DataTransformerConfig(id_val="organize", options={
            "excludeByName": {"Time": True}, "indexByName": {name: i for i, name in enumerate(order)}}),
    ]
    panel = table_sdk.Panel().transformations(transformations).cell_height(cm.TableCellHeight.SM)
    result: table_sdk.Panel = _common(panel, title, description, targets, "short", width, height)
    return result


def override(name: str, *, regexp: bool = False, unit: str | None = None,
             values: dict[str, tuple[str, str]] | None = None,
             steps: Sequence[tuple[float | None, str]] | None = None,
             cell: dm.DynamicConfigValue | None = None) -> tuple[str, bool, list[dm.DynamicConfigValue]]:
    """Field overrides for the column `name` (a regexp when `regexp`)."""
    # SDK: override properties are (id, value) pairs, the ids plain strings as in Grafana's JSON.
    props = []
    if unit:
        props.append(dm.DynamicConfigValue(id_val="unit", value=unit))
    if values:
        props.append(dm.DynamicConfigValue(id_val="mappings", value=mappings(values)))
    if steps:
        props.append(dm.DynamicConfigValue(id_val="thresholds", value=thresholds(steps).build()))
    if cell:
        props.append(cell)
    return name, regexp, props


COLOURED_CELL = dm.DynamicConfigValue(id_val="custom.cellOptions",
                                      value=cm.TableColoredBackgroundCellOptions())
COLOURED_TEXT = dm.DynamicConfigValue(id_val="custom.cellOptions", value=cm.TableColorTextCellOptions())


def with_overrides(panel: Any, *overrides: tuple[str, bool, list[dm.DynamicConfigValue]]) -> Panel:
    for name, regexp, props in overrides:
        if regexp:
            panel.override_by_regexp(name, props)
        else:
            panel.override_by_name(name, props)
    result: Panel = panel
    return result


def dashboard_link(title: str, uid: str, tooltip: str) -> db.DashboardLink:
    """A link at the top of a dashboard to another one, keeping the time range and variables."""
    return (db.DashboardLink(title).type(dm.DashboardLinkType.LINK).url(f"/d/{uid}").tooltip(tooltip)
            .icon("dashboard").keep_time(True).include_vars(True))


# --- per-gateway dashboard -------------------------------------------------------------------


def websocket_row() -> Row:
    return Row("Monitor ↔ gateway WebSocket", [
        stat("Monitor connected", "Is the monitor's WebSocket to the gateway open?",
             q(f"min({m('gateway_monitor_ws_connected')})"),
             values=UP_DOWN, steps=[(None, "red"), (1, "green")]),
        stat("Unauthorized", "The gateway refused the monitor's API key (401/403).",
             q(f"max({m('gateway_monitor_ws_unauthorized')})"),
             values=NO_YES, steps=[(None, "green"), (1, "red")]),
        stat("Consecutive connect failures", "Failed attempts since the last success.",
             q(f"max({m('gateway_monitor_ws_consecutive_connect_failures')})"),
             steps=[(None, "green"), (3, "orange"), (10, "red")]),
        stat("Last frame age", "Seconds since the monitor received any frame.",
             q(f"time() - max({m('gateway_monitor_ws_last_frame_timestamp_seconds')} > 0)"),
             unit="s", steps=[(None, "green"), (60, "orange"), (300, "red")]),
        stat("Gateway ready", "The monitor's probe of the gateway's /readyz.",
             q("min(" + m("gateway_monitor_probe_success", 'endpoint="readyz"') + ")"),
             values=UP_DOWN, steps=[(None, "red"), (1, "green")]),
        stat("Gateway degraded", "The gateway's /health says degraded (a broker is down).",
             q(f"max({m('gateway_monitor_gateway_degraded')})"),
             values=NO_YES, steps=[(None, "green"), (1, "red")]),
        timeseries("Connects, disconnects and failures",
                   "WebSocket connects, disconnects by reason and failed attempts by reason.",
                   q(rate("gateway_monitor_ws_connects_total", fn="increase"), "connects"),
                   q(rate("gateway_monitor_ws_disconnects_total", "reason", fn="increase"),
                     "disconnect: {{reason}}"),
                   q(rate("gateway_monitor_ws_connect_failures_total", "reason", fn="increase"),
                     "connect failure: {{reason}}"),
                   width=24),
    ])


def broker_row() -> Row:
    return Row("Broker", [
        timeseries("Broker up (from the stream)",
                   "1 while the gateway reports its broker link up (connection frames).",
                   q(f"max by (broker) ({m('gateway_monitor_broker_up')})", "{{broker}}"),
                   q(f"max by (broker) ({m('gateway_monitor_broker_connection_failed')})",
                     "{{broker}} connection failed")),
        timeseries("Broker connected (from /health)",
                   "providers[].connected of the gateway's /health, probed by the monitor.",
                   q(f"max by (broker) ({m('gateway_monitor_gateway_broker_connected')})", "{{broker}}")),
        timeseries("Broker gaps (p50/p99)",
                   "Duration of broker outages reported by BROKER_RECONNECTED (gap_duration_ms).",
                   q(quantile(0.5, "gateway_monitor_broker_gap_seconds", "broker"), "p50 {{broker}}"),
                   q(quantile(0.99, "gateway_monitor_broker_gap_seconds", "broker"), "p99 {{broker}}"),
                   unit="s"),
        timeseries("Gateway broker link events (gateway /metrics)",
                   "The gateway's own counters of broker disconnections and reconnects.",
                   q(gateway_increase("gateway_broker_disconnections_total", "platform"),
                     "disconnections {{platform}}"),
                   q(gateway_increase("gateway_broker_reconnect_attempts_total", "platform"),
                     "reconnect attempts {{platform}}"),
                   q(gateway_increase("gateway_broker_reconnections_total", "platform"),
                     "reconnections {{platform}}"),
                   q(gateway_increase("gateway_broker_reconnect_failures_total", "platform"),
                     "reconnect failures {{platform}}"),
                   width=12),
        timeseries("Connection events", "connection frames by event and broker.",
                   q(rate("gateway_monitor_connection_events_total", "event, broker", fn="increase"),
                     "{{event}} {{broker}}"),
                   width=12),
    ])


def market_data_row() -> Row:
    return Row("Market data", [
        timeseries("Frames per second by type", "Every frame the monitor received, by type.",
                   q(rate("gateway_monitor_frames_total", "type"), "{{type}}"),
                   unit="ops", width=12, stack=True),
        timeseries("Invalid frames", "Frames the monitor could not decode, by reason.",
                   q(rate("gateway_monitor_invalid_frames_total", "reason"), "{{reason}}"),
                   q(rate("gateway_monitor_symbol_series_dropped_total"),
                     "symbols not tracked (MONITOR_MAX_SYMBOL_SERIES)"),
                   unit="ops", width=12),
        timeseries("Stale symbols",
                   "Symbols whose market data is stale: from data_staleness frames and from "
                   "/health stale_instruments.",
                   q(f"sum by (broker) ({m('gateway_monitor_stale_symbols')})", "stream {{broker}}"),
                   q(f"sum by (broker) ({m('gateway_monitor_gateway_stale_instruments')})",
                     "/health {{broker}}")),
        table("Stale symbols now", "How long each stale symbol has been stale.",
              instant_table(f"time() - max by (broker, symbol) "
                            f"({m('gateway_monitor_symbol_stale_since_timestamp_seconds')} > 0)"),
              width=8),
        timeseries("Staleness episodes (p50/p99)", "How long symbols stayed stale.",
                   q(quantile(0.5, "gateway_monitor_stale_duration_seconds", "broker"), "p50 {{broker}}"),
                   q(quantile(0.99, "gateway_monitor_stale_duration_seconds", "broker"), "p99 {{broker}}"),
                   unit="s"),
    ])


def feed_health_row() -> Row:
    silent_since = f"max by (broker, symbol, severity) " \
                   f"({m('gateway_monitor_instrument_silent_since_timestamp_seconds')} > 0)"
    return Row("Feed health", [
        timeseries("Silent instruments",
                   "Instruments that stopped ticking while their broker is up (longer than "
                   "max(floor, multiple x usual interval)), and the instruments tracked.",
                   q(f"sum by (broker) ({m('gateway_monitor_silent_instruments')})", "silent {{broker}}"),
                   q(f"sum by (broker) ({m('gateway_monitor_instruments')})", "tracked {{broker}}")),
        stat("Feed frozen", "YES while every instrument of the broker is silent and the broker is up.",
             q(f"max by (broker) ({m('gateway_monitor_feed_frozen')})", "{{broker}}"),
             values=NO_YES, steps=[(None, "green"), (1, "red")], height=8),
        with_overrides(
            table("Silent instruments now",
                  "Each silent instrument, since when (its last tick, or when the monitor could "
                  "last expect one) and for how long.",
                  instant_table(f"{silent_since} * 1000"),
                  instant_table(f"time() - {silent_since}"),
                  rename={"Value #A": "Silent since", "Value #B": "Silent for"}, sort="Silent for"),
            override("Silent since", unit="dateTimeAsIso"),
            override("Silent for", unit="s")),
        with_overrides(
            table("Last tick age per instrument",
                  "Seconds since each instrument's last quote or candle, oldest first.",
                  instant_table(f"time() - max by (broker, symbol) "
                                f"({m('gateway_monitor_instrument_last_tick_timestamp_seconds')} > 0)"),
                  rename={"Value": "Last tick age"}, sort="Last tick age"),
            override("Last tick age", unit="s", cell=COLOURED_TEXT,
                     steps=[(None, "green"), (10, "orange"), (60, "red")])),
        heatmap("Quote age at arrival",
                "Sampled quotes by age at arrival (arrival minus quote.timestamp), per interval.",
                q(f"sum by (le) (increase({m('gateway_monitor_quote_age_seconds_bucket')}[{WINDOW}]))",
                  "{{le}}", fmt=PromQueryFormat.HEATMAP),
                unit="s"),
        timeseries("Quote age (p50/p99)",
                   "Median and 99th percentile age of sampled quotes at arrival; GatewayQuotesLate "
                   "watches the median.",
                   q(quantile(0.5, "gateway_monitor_quote_age_seconds", "broker"), "p50 {{broker}}"),
                   q(quantile(0.99, "gateway_monitor_quote_age_seconds", "broker"), "p99 {{broker}}"),
                   unit="s"),
        timeseries("Invalid quote timestamps",
                   "Sampled quotes whose timestamp was missing, unparseable, in the future or too old.",
                   q(rate("gateway_monitor_quote_timestamps_invalid_total", "reason", fn="increase"),
                     "{{reason}}")),
        timeseries("Silences (p50/p99)",
                   "How long instruments stayed silent, observed when they ticked again.",
                   q(quantile(0.5, "gateway_monitor_silence_duration_seconds", "broker"), "p50 {{broker}}"),
                   q(quantile(0.99, "gateway_monitor_silence_duration_seconds", "broker"), "p99 {{broker}}"),
                   unit="s"),
    ])


def errors_row() -> Row:
    return Row("Errors and rate limits", [
        timeseries("Error events by code", "error frames received, by code.",
                   q(rate("gateway_monitor_error_events_total", "code", fn="increase"), "{{code}}"),
                   width=12, stack=True),
        timeseries("Rate limit events",
                   "rate_limit frames (monitor) and the gateway's own rate-limit counter.",
                   q(rate("gateway_monitor_rate_limit_events_total", "event", fn="increase"),
                     "stream {{event}}"),
                   q(gateway_increase("gateway_rate_limit_events_total", "platform, event_type"),
                     "gateway {{platform}} {{event_type}}"),
                   width=6),
        timeseries("Rate limit: requests remaining", "requests_remaining of the last rate_limit frame.",
                   q(f"min({m('gateway_monitor_rate_limit_requests_remaining')})", "remaining"),
                   width=6),
    ])


def probes_row() -> Row:
    return Row("Gateway probes", [
        timeseries("Probe success", "The monitor's probes of /readyz, /livez and /health.",
                   q(f"min by (endpoint) ({m('gateway_monitor_probe_success')})", "{{endpoint}}")),
        timeseries("Probe latency", "Duration of the last probe of each endpoint.",
                   q(f"max by (endpoint) ({m('gateway_monitor_probe_duration_seconds')})", "{{endpoint}}"),
                   unit="s"),
        timeseries("Probe HTTP status / degraded",
                   "HTTP status of the last probe; 1 while /health says degraded.",
                   q(f"max by (endpoint) ({m('gateway_monitor_probe_http_status_code')})", "{{endpoint}}"),
                   q(f"max({m('gateway_monitor_gateway_degraded')})", "degraded")),
        table("Versions", "Gateway version (from /health) and monitor version per pod.",
              instant_table(f"max by (pod, version, git_sha) ({m('gateway_monitor_gateway_info')})"),
              instant_table(f"max by (pod, version) ({m('gateway_monitor_build_info')})"),
              width=24),
    ])


def orders_row() -> Row:
    return Row("Orders (gateway /metrics and stream)", [
        timeseries("Orders submitted", "The gateway's own order submissions per second.",
                   q(rate("gateway_orders_submitted_total", "platform"), "{{platform}}"), unit="ops"),
        timeseries("Order submit latency (p50/p99)", "The gateway's broker round trip.",
                   q(quantile(0.5, "gateway_order_submit_duration_seconds", "platform"), "p50 {{platform}}"),
                   q(quantile(0.99, "gateway_order_submit_duration_seconds", "platform"),
                     "p99 {{platform}}"),
                   unit="s"),
        timeseries("Order events (gateway)", "The gateway's order events by type.",
                   q(gateway_increase("gateway_order_events_total", "platform, event_type"),
                     "{{platform}} {{event_type}}")),
        timeseries("Order, position and account events (stream)",
                   "order, position and account frames the monitor saw, by event.",
                   q(rate("gateway_monitor_order_events_total", "event", fn="increase"), "order {{event}}"),
                   q(rate("gateway_monitor_position_events_total", "event", fn="increase"),
                     "position {{event}}"),
                   q(rate("gateway_monitor_account_events_total", "event", fn="increase"),
                     "account {{event}}"),
                   width=12),
        timeseries("Safety counters (gateway)",
                   "Critical notifications that reached no client, OCO double exits and "
                   "circuit-breaker resets: any increase needs a look.",
                   q(gateway_increase("gateway_critical_notifications_dropped_total", "platform"),
                     "critical dropped {{platform}}"),
                   q(gateway_increase("gateway_oco_double_exit_total", "platform"),
                     "OCO double exit {{platform}}"),
                   q(gateway_increase("gateway_circuit_breaker_resets_total"), "circuit breaker resets"),
                   width=12),
    ])


def clients_row() -> Row:
    return Row("Gateway WebSocket clients", [
        timeseries("Active WebSocket clients", "Clients connected to the gateway (incl. monitor).",
                   q(f"sum({m('gateway_ws_connections_active')})", "clients"), width=12),
        timeseries("Slow-consumer drops",
                   "Messages the gateway dropped because a client's queue was full "
                   "(gateway_ws_slow_consumer_disconnects counts messages, not clients).",
                   q(rate("gateway_ws_slow_consumer_disconnects"), "dropped messages/s"),
                   unit="ops", width=12),
    ])


def gateway_dashboard() -> db.Dashboard:
    """One gateway (or a few), picked by namespace and pod."""
    board = base("Trading Gateway / gateway-monitor", GATEWAY_UID,
                 "The Tektii Trading Gateway seen by gateway-monitor and by its own /metrics.")
    board.with_variable(query_variable(
        "namespace", "Namespace", "label_values(gateway_monitor_build_info, namespace)"))
    board.with_variable(query_variable(
        "pod", "Pod", 'label_values(gateway_monitor_build_info{namespace=~"$namespace"}, pod)'))
    board.link(dashboard_link("Fleet", FLEET_UID, "Every gateway at a glance"))
    return layout(board, [websocket_row(), broker_row(), market_data_row(), feed_health_row(), errors_row(),
                          probes_row(), orders_row(), clients_row()])


# --- fleet dashboard -------------------------------------------------------------------------


def glance_row() -> Row:
    broker_down = f"count(max by (namespace, pod) " \
                  f"({rec('namespace_pod_broker:gateway_monitor_broker_state:max')}) > 0) or vector(0)"
    return Row("Fleet at a glance", [
        stat("Gateways", "Gateways whose monitor Prometheus scrapes (or scraped until it went down).",
             q(f"count({rec('namespace_pod:gateway_monitor_blind:max')})")),
        stat("Blind gateways",
             "Gateways whose monitor cannot see them: WebSocket down or the monitor unscraped.",
             q(f"sum({rec('namespace_pod:gateway_monitor_blind:max')})"),
             steps=[(None, "green"), (1, "red")]),
        stat("Gateways with a broker down", "Gateways that report a broker disconnected or failed.",
             q(broker_down), steps=[(None, "green"), (1, "orange")]),
        stat("Stale symbols", "Stale symbols over all gateways (data_staleness frames).",
             q(f"sum({rec('namespace_pod:gateway_monitor_stale_symbols:sum')}) or vector(0)"),
             steps=[(None, "green"), (1, "orange")]),
        stat("Silent instruments", "Silent instruments over all gateways (feed health).",
             q(f"sum({rec('namespace_pod:gateway_monitor_silent_instruments:sum')}) or vector(0)"),
             steps=[(None, "green"), (1, "orange")]),
        stat("Fleet alerts firing",
             "Broker-wide incidents firing now (GatewayBrokerOutage, GatewayBrokerFeedFrozen, "
             "GatewayBrokerDegraded), in every namespace.",
             q('count(ALERTS{alertstate="firing", source="fleet"}) or vector(0)'),
             steps=[(None, "green"), (1, "red")]),
    ])


# The fleet table's columns: every query yields one series per gateway, labelled column="...".
FLEET_COLUMNS = ("namespace", "pod", "Blind", "Last frame age", "Stale symbols", "Silent instruments",
                 "Critical events (24 h)")
# Each gateway row opens the per-gateway dashboard with its namespace and pod, the same data
# source and time range.
GATEWAY_LINK = (f"/d/{GATEWAY_UID}?var-namespace=${{__data.fields.namespace}}"
                f"&var-pod=${{__data.fields.pod}}&${{datasource:queryparam}}&${{__url_time_range}}")


def gateways_row() -> Row:
    events = rec("namespace_pod:gateway_critical_events:increase")
    critical = f"sum by (namespace, pod) (sum_over_time({events}[24h]))"
    last_frame = rec("namespace_pod:gateway_monitor_last_frame_timestamp_seconds:max")
    broker_state = "label_replace(" + rec("namespace_pod_broker:gateway_monitor_broker_state:max") \
                   + ', "column", "Broker $1", "broker", "(.+)")'
    gateways = column_table(
        "Every gateway",
        "One row per gateway, from the fleet recording rules. Blind: the monitor cannot see the gateway. "
        "Broker <name>: up, disconnected or failed, per broker the gateway reports. Last frame age: "
        "seconds since the monitor's last frame. Critical events: unprotected positions, "
        "liquidations, OCO double exits, margin calls, dropped critical notifications and failed "
        "broker reconnects of the last 24 h. Click a row for that gateway's dashboard.",
        q(column("Blind", rec("namespace_pod:gateway_monitor_blind:max")), instant=True),
        q(column("Last frame age", f"time() - ({last_frame} > 0)"), instant=True),
        q(column("Stale symbols", or_zero(rec("namespace_pod:gateway_monitor_stale_symbols:sum"))),
          instant=True),
        q(column("Silent instruments", or_zero(rec("namespace_pod:gateway_monitor_silent_instruments:sum"))),
          instant=True),
        q(column("Critical events (24 h)", or_zero(critical)), instant=True),
        # One column per broker: the label `column` is "Broker <broker>".
        q(f"max by (namespace, pod, column) ({broker_state})", instant=True),
        order=FLEET_COLUMNS, width=24, height=12)
    # SDK: field-config links (data links) are typed as dashboard links, so the JSON carries the
    # dashboard-link keys too (type, icon, tags, asDropdown, includeVars, keepTime); Grafana reads
    # only title, url and targetBlank of a data link and ignores the rest.
    gateways.data_links([db.DashboardLink("Gateway ${__data.fields.namespace}/${__data.fields.pod}")
                         .url(GATEWAY_LINK)])
    gateways.sort_by([cb.TableSortByFieldState().display_name("Blind").desc(True)])
    return Row("Gateways", [with_overrides(
        gateways,
        override("Blind", values={"0": ("no", "green"), "1": ("BLIND", "red")}, cell=COLOURED_CELL),
        override("Broker .*", regexp=True, values=BROKER_STATES, cell=COLOURED_CELL),
        override("Last frame age", unit="s", cell=COLOURED_TEXT,
                 steps=[(None, "green"), (60, "orange"), (300, "red")]),
        override("Stale symbols", cell=COLOURED_TEXT, steps=[(None, "green"), (1, "orange")]),
        override("Silent instruments", cell=COLOURED_TEXT, steps=[(None, "green"), (1, "orange")]),
        override("Critical events (24 h)", cell=COLOURED_TEXT, steps=[(None, "green"), (1, "red")]),
    )])


def brokers_row() -> Row:
    gateways = "sum by (broker) (broker:gateway_monitor_gateways:count)"

    def hit(name: str) -> str:  # 0 for a broker with gateways but none hit (the count is then absent)
        return or_zero(f"sum by (broker) ({name})", f"{gateways}")

    failed = hit("broker:gateway_monitor_gateways_failed:count")
    frozen = hit("broker:gateway_monitor_gateways_frozen:count")
    degraded = hit("broker:gateway_monitor_gateways_degraded:count")
    hit_steps = [(None, "green"), (1, "red")]
    return Row("Brokers", [
        with_overrides(
            column_table("Gateways per broker",
                         "Per broker: the gateways that report it, those whose session gave up (failed), "
                         "whose feed is frozen or a critical instrument silent (frozen), and those with a "
                         "broker warning firing (degraded). All namespaces.",
                         q(column("Gateways", gateways, "broker"), instant=True),
                         q(column("Failed", failed, "broker"), instant=True),
                         q(column("Frozen", frozen, "broker"), instant=True),
                         q(column("Degraded", degraded, "broker"), instant=True),
                         order=("broker", "Gateways", "Failed", "Frozen", "Degraded"), width=12, height=8),
            override("Failed", cell=COLOURED_TEXT, steps=hit_steps),
            override("Frozen", cell=COLOURED_TEXT, steps=hit_steps),
            override("Degraded", cell=COLOURED_TEXT, steps=[(None, "green"), (1, "orange")])),
        timeseries("Gateways hit per broker",
                   "Failed, frozen and degraded gateways per broker over time: the counts the "
                   "broker-wide alerts compare with fleet_min_gateways (alerts/thresholds.yaml).",
                   q(failed, "failed {{broker}}"), q(frozen, "frozen {{broker}}"),
                   q(degraded, "degraded {{broker}}"), width=12),
        table("Fleet alerts firing now",
              "Broker-wide incidents firing now: one page or ticket per broker instead of one per "
              "gateway (the per-gateway alerts of that broker are inhibited meanwhile). Empty while "
              "no broker is down on several gateways at once.",
              instant_table('max by (alertname, broker, severity) '
                            '(ALERTS{alertstate="firing", source="fleet"})'),
              rename={"Value": "Firing"}, width=24, height=6),
    ])


def fleet_trend_row() -> Row:
    return Row("Fleet over time", [
        timeseries("Blind gateways and brokers down",
                   "Gateways over time: all of them, those blind, those with a broker down.",
                   q(f"count({rec('namespace_pod:gateway_monitor_blind:max')})", "gateways"),
                   q(f"sum({rec('namespace_pod:gateway_monitor_blind:max')})", "blind"),
                   q(f"count(max by (namespace, pod) "
                     f"({rec('namespace_pod_broker:gateway_monitor_broker_state:max')}) > 0) or vector(0)",
                     "broker down"),
                   width=12),
        timeseries("Stale symbols and silent instruments",
                   "Over all gateways; the table above says which.",
                   q(f"sum({rec('namespace_pod:gateway_monitor_stale_symbols:sum')}) or vector(0)",
                     "stale symbols"),
                   q(f"sum({rec('namespace_pod:gateway_monitor_silent_instruments:sum')}) or vector(0)",
                     "silent instruments"),
                   width=12),
    ])


def fleet_dashboard() -> db.Dashboard:
    """Every gateway at a glance, from the fleet recording rules."""
    board = base("Trading Gateway / fleet", FLEET_UID,
                 "Every Trading Gateway at a glance, from the recording rules of alerts/rules/fleet.yml: "
                 "one table row per gateway, the brokers they share, the broker-wide alerts.")
    board.with_variable(query_variable("namespace", "Namespace",
                                       "label_values(namespace_pod:gateway_monitor_blind:max, namespace)"))
    board.link(dashboard_link("Gateway detail", GATEWAY_UID, "One gateway's dashboard"))
    return layout(board, [glance_row(), gateways_row(), brokers_row(), fleet_trend_row()])


# --- dashboards ------------------------------------------------------------------------------


def base(title: str, uid: str, description: str) -> db.Dashboard:
    """A dashboard with the settings both share and the data source variable."""
    built_in = (db.AnnotationQuery().name("Annotations & Alerts").built_in(1).enable(True).hide(True)
                .datasource(dm.DataSourceRef(type_val="grafana", uid="-- Grafana --"))
                .icon_color("rgba(0, 211, 255, 1)").type("dashboard"))
    return (db.Dashboard(title).uid(uid).description(description)
            .tags(["trading-gateway", "gateway-monitor"]).timezone("browser").editable()
            .tooltip(dm.DashboardCursorSync.CROSSHAIR).refresh("30s").time("now-6h", "now")
            .annotation(built_in)
            .with_variable(db.DatasourceVariable("datasource").label("Data source").type("prometheus")))


def query_variable(name: str, label: str, query: str) -> db.QueryVariable:
    """A multi-value variable over label values, "All" meaning any value."""
    return (db.QueryVariable(name).label(label).datasource(DATASOURCE).query(query)
            .refresh(dm.VariableRefresh.ON_TIME_RANGE_CHANGED).sort(dm.VariableSort.ALPHABETICAL_ASC)
            .include_all(True).all_value(".*").multi(True)
            .current(dm.VariableOption(selected=True, text=["All"], value=["$__all"])))


def layout(board: db.Dashboard, rows: Sequence[Row]) -> db.Dashboard:
    """Add the rows and their panels, numbering them.

    SDK: panel ids are left to the caller (every row would be id 0). The SDK places each panel
    right of the previous one and starts a new line once 24 columns are full, but does not move
    a panel that would overflow: so each row must fill whole lines, which is asserted here.
    """
    ids = iter(range(1, 1000))
    for row in rows:
        widths = [p.build().grid_pos.w for p in row.panels]
        assert _fills_lines(widths), f"row {row.title!r}: widths {widths} do not fill lines of {WIDTH}"
        board.with_row(db.Row(row.title).id(next(ids)))
        for panel in row.panels:
            panel.id(next(ids))
            board.with_panel(panel)
    return board


def _fills_lines(widths: Sequence[int]) -> bool:
    used = 0
    for width in widths:
        used += width
        if used > WIDTH:
            return False
        used %= WIDTH
    return used == 0


DASHBOARDS = {GATEWAY_UID: gateway_dashboard, FLEET_UID: fleet_dashboard}


def model(uid: str) -> dict[str, Any]:
    """A dashboard's JSON model."""
    result: dict[str, Any] = json.loads(json.dumps(DASHBOARDS[uid]().build(), cls=JSONEncoder))
    return result


def render(uid: str = GATEWAY_UID) -> str:
    """A dashboard file's exact text."""
    return json.dumps(DASHBOARDS[uid]().build(), cls=JSONEncoder, indent=2, ensure_ascii=False) + "\n"


def rendered() -> dict[Path, str]:
    """Each dashboard file and the text it must have."""
    return {path: render(uid) for uid, path in OUTPUTS.items()}


def resolve(expr: str) -> str:
    """`expr` with the template variables replaced, for running it outside Grafana."""
    for var, value in sorted(RESOLVED.items(), key=lambda kv: -len(kv[0])):
        expr = expr.replace(var, value)
    return expr


def _panels(panels: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for panel in panels:
        yield panel
        yield from _panels(panel.get("panels", []))


def queries(uids: Sequence[str] = tuple(DASHBOARDS)) -> list[dict[str, str]]:
    """Every panel query: dashboard uid, panel title, refId, expr as in Grafana and resolved."""
    out = []
    for uid in uids:
        for panel in _panels(model(uid)["panels"]):
            for target in panel.get("targets", []):
                out.append({"dashboard": uid, "panel": panel["title"], "refId": target["refId"],
                            "expr": target["expr"], "resolved": resolve(target["expr"])})
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--check", action="store_true", help="fail if a JSON file is out of date")
    parser.add_argument("--queries", action="store_true", help="print every query as JSON")
    parser.add_argument("--dashboard", choices=list(DASHBOARDS), action="append",
                        help="only this dashboard (repeatable; default: both)")
    args = parser.parse_args(argv)
    uids = args.dashboard or list(DASHBOARDS)
    if args.queries:
        json.dump(queries(uids), sys.stdout, indent=2, ensure_ascii=False)
        sys.stdout.write("\n")
        return 0
    stale = []
    for uid in uids:
        path, text = OUTPUTS[uid], render(uid)
        if args.check:
            if not path.exists() or path.read_text(encoding="utf-8") != text:
                stale.append(path.name)
        else:
            path.write_text(text, encoding="utf-8")
    if stale:
        print(f"out of date: {', '.join(stale)}: run python {__file__}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
