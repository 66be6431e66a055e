"""The gateway's own /metrics: the project's one table of them.

The Trading Gateway (v0.2.x) serves these on its API port, at `/metrics`, without the API key.
They carry what never reaches the WebSocket (fill-time unprotected positions, OCO double exits,
slow-consumer drops), so the alert rules and the dashboard read them beside the monitor's own.
Its exposition differs from prometheus_client's: it has no `# HELP` lines, a series exists only
from its first increment, and one counter (`gateway_ws_slow_consumer_disconnects`) has no
`_total`.

Read by the simulated gateway (monitor/simulator/gateway_exposition.py renders them) and by the
checks that every alert rule, runbook query and dashboard panel uses only exported names and
labels (tests/alerts/test_metric_names.py, tests/deploy/test_deploy_generated.py).
"""

from __future__ import annotations

from dataclasses import dataclass

COUNTER = "counter"
GAUGE = "gauge"
HISTOGRAM = "histogram"

CONNECTIONS_ACTIVE = "gateway_ws_connections_active"
SLOW_CONSUMER = "gateway_ws_slow_consumer_disconnects"


@dataclass(frozen=True)
class GatewayMetric:
    """One metric family of the gateway's /metrics."""

    kind: str
    labels: tuple[str, ...]
    meaning: str


GATEWAY_METRICS: dict[str, GatewayMetric] = {
    CONNECTIONS_ACTIVE: GatewayMetric(GAUGE, (), "WebSocket clients connected now"),
    SLOW_CONSUMER: GatewayMetric(
        COUNTER, (), "messages dropped because a client's queue (1024 messages) was full"
    ),
    "gateway_orders_submitted_total": GatewayMetric(COUNTER, ("platform",), "orders sent to the broker"),
    "gateway_order_submit_duration_seconds": GatewayMetric(
        HISTOGRAM, ("platform",), "time to submit an order to the broker"
    ),
    "gateway_order_events_total": GatewayMetric(
        COUNTER, ("platform", "event_type"), "order updates from the broker"
    ),
    "gateway_critical_notifications_dropped_total": GatewayMetric(
        COUNTER,
        ("platform",),
        "critical notifications (POSITION_UNPROTECTED, OCO_DOUBLE_EXIT, ...) that reached no client",
    ),
    "gateway_oco_double_exit_total": GatewayMetric(COUNTER, ("platform",), "OCO groups, both legs filled"),
    "gateway_broker_disconnections_total": GatewayMetric(COUNTER, ("platform",), "broker connections lost"),
    "gateway_broker_reconnect_attempts_total": GatewayMetric(COUNTER, ("platform",), "reconnect attempts"),
    "gateway_broker_reconnections_total": GatewayMetric(COUNTER, ("platform",), "successful reconnects"),
    "gateway_broker_reconnect_failures_total": GatewayMetric(
        COUNTER, ("platform",), "reconnects given up (BROKER_CONNECTION_FAILED)"
    ),
    "gateway_rate_limit_events_total": GatewayMetric(
        COUNTER, ("platform", "event_type"), "broker rate-limit warnings and hits"
    ),
    "gateway_circuit_breaker_resets_total": GatewayMetric(COUNTER, (), "circuit breaker resets"),
}


def sample_names(name: str) -> tuple[str, ...]:
    """The sample names metric `name` shows in a scrape (a histogram's _bucket, _sum, _count)."""
    if GATEWAY_METRICS[name].kind == HISTOGRAM:
        return f"{name}_bucket", f"{name}_sum", f"{name}_count"
    return (name,)


def exported_samples() -> dict[str, tuple[str, ...]]:
    """Every sample name the gateway can export -> its label names (a bucket's `le` not included)."""
    return {
        sample: metric.labels for name, metric in GATEWAY_METRICS.items() for sample in sample_names(name)
    }
