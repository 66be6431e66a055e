"""The process harness with a real Prometheus and Alertmanager (no monitor needed yet)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_support import ALERTS_DIR, rule_files
from processes import (
    Notification,
    StartFn,
    WebhookReceiver,
    alertmanager_test_config,
    get_json,
    post_alerts,
    prometheus_config,
)

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("no_leftover_daemons")]

ALWAYS_FIRING = {
    "groups": [
        {
            "name": "harness",
            "rules": [
                {
                    "alert": "HarnessAlwaysFiring",
                    "expr": "vector(1)",
                    "labels": {"severity": "critical"},
                    "annotations": {"summary": "harness check"},
                }
            ],
        }
    ]
}


def production_alertmanager_config() -> dict[str, Any]:
    """alerts/alertmanager.yml as a dict."""
    config: dict[str, Any] = yaml.safe_load((ALERTS_DIR / "alertmanager.yml").read_text())
    return config


def is_firing(name: str, path: str) -> Any:
    """Predicate: a firing notification for alert `name` that arrived at `path`."""
    return lambda n: n.path == path and n.status == "firing" and name in n.alertnames


async def test_always_firing_rule_reaches_the_webhook(
    tmp_path: Path,
    webhook_receiver: WebhookReceiver,
    alertmanager_factory: StartFn,
    prometheus_factory: StartFn,
) -> None:
    alertmanager = await alertmanager_factory(
        alertmanager_test_config(production_alertmanager_config(), webhook_receiver)
    )
    rules = tmp_path / "always.yml"
    rules.write_text(yaml.safe_dump(ALWAYS_FIRING))
    scrape = [
        {"job_name": "alertmanager", "static_configs": [{"targets": [f"127.0.0.1:{alertmanager.port}"]}]}
    ]
    prometheus = await prometheus_factory(prometheus_config(scrape, [rules], alertmanager.port))
    note = await webhook_receiver.wait_for(is_firing("HarnessAlwaysFiring", "/pager"), 20)
    assert note.receiver == "pager"
    assert len(note.payload["alerts"]) == 1
    assert note.received_monotonic > 0 and note.received_wall > 0
    await asyncio.sleep(3)  # longer than group_interval: a duplicate would have arrived
    matching = [n for n in webhook_receiver.notifications if "HarnessAlwaysFiring" in n.alertnames]
    assert len(matching) == 1, [n.payload for n in matching]
    # The scrape config is live too: Prometheus scraped Alertmanager with the short interval.
    result = await get_json(f'{prometheus.base_url}/api/v1/query?query=up{{job="alertmanager"}}')
    assert [float(r["value"][1]) for r in result["data"]["result"]] == [1.0]


async def test_real_prometheus_loads_the_rules_and_watchdog_reaches_its_receiver(
    webhook_receiver: WebhookReceiver,
    alertmanager_factory: StartFn,
    prometheus_factory: StartFn,
) -> None:
    alertmanager = await alertmanager_factory(
        alertmanager_test_config(production_alertmanager_config(), webhook_receiver)
    )
    prometheus = await prometheus_factory(prometheus_config([], rule_files(), alertmanager.port))
    groups = (await get_json(f"{prometheus.base_url}/api/v1/rules"))["data"]["groups"]
    loaded = {rule["name"] for group in groups for rule in group["rules"]}
    assert {"Watchdog", "GatewayPositionUnprotected", "GatewaySlowConsumerDrops"} <= loaded
    assert all(rule["health"] != "err" for g in groups for rule in g["rules"]), groups
    note = await webhook_receiver.wait_for(is_firing("Watchdog", "/watchdog"), 20)
    assert note.receiver == "watchdog"
    assert not [n for n in webhook_receiver.notifications if n.path == "/pager"]


def alert(name: str, severity: str, **labels: str) -> dict[str, Any]:
    """An alert as Prometheus would post it to Alertmanager."""
    return {"labels": {"alertname": name, "severity": severity, **labels}, "annotations": {"summary": name}}


POD0 = {"namespace": "trading", "pod": "gateway-0"}
MONITOR0 = {"job": "gateway-monitor", "instance": "10.1.2.3:9478", **POD0}
GATEWAY0 = {"job": "gateway", "instance": "10.1.2.3:8080", **POD0}
MONITOR1 = {"job": "gateway-monitor", "instance": "10.1.2.4:9478", "namespace": "trading", "pod": "gateway-1"}
MONITOR2 = {"job": "gateway-monitor", "instance": "10.1.2.5:9478", "namespace": "trading", "pod": "gateway-2"}
GATEWAY3 = {"job": "gateway", "instance": "10.1.2.6:8080", "namespace": "trading", "pod": "gateway-3"}
GATEWAY4 = {"job": "gateway", "instance": "10.1.2.7:8080", "namespace": "trading", "pod": "gateway-4"}
BARE_A = {"job": "gateway-monitor", "instance": "127.0.0.1:9478"}
BARE_B = {"job": "gateway-monitor", "instance": "127.0.0.2:9478"}


async def test_inhibition_rules(webhook_receiver: WebhookReceiver, alertmanager_factory: StartFn) -> None:
    alertmanager = await alertmanager_factory(
        alertmanager_test_config(production_alertmanager_config(), webhook_receiver)
    )
    await post_alerts(
        alertmanager,
        [
            # Kubernetes: a critical on gateway-0 (from the gateway's metrics) mutes the
            # warnings of gateway-0 whichever target they come from, not those of gateway-2.
            alert("GatewayOcoDoubleExit", "critical", source="gateway-metrics", **GATEWAY0),
            alert("GatewayRateLimited", "warning", source="socket-event", **MONITOR0),
            alert("GatewayRateLimited", "warning", source="socket-event", **MONITOR2),
            # Blind monitor on gateway-1: mutes its socket-state alerts, even critical ones,
            # but not events it already received.
            alert("GatewayMonitorCannotSeeGateway", "critical", source="monitor", **MONITOR1),
            alert("GatewayBrokerConnectionFailed", "critical", source="socket", broker="mock", **MONITOR1),
            alert("GatewayLiquidation", "critical", source="socket-event", code="LIQUIDATION", **MONITOR1),
            # An OCO double exit counted by the gateway mutes the dropped-notification page of the
            # same gateway and broker (v0.2.0 counts the undelivered OCO notification there too),
            # not that of another broker.
            alert("GatewayOcoDoubleExit", "critical", source="gateway-metrics", broker="mock", **GATEWAY3),
            alert("GatewayPositionUnprotected", "critical", source="gateway-metrics", broker="mock",
                  **GATEWAY3),
            alert("GatewayOcoDoubleExit", "critical", source="gateway-metrics", broker="mock", **GATEWAY4),
            alert("GatewayPositionUnprotected", "critical", source="gateway-metrics", broker="saxo-sim",
                  **GATEWAY4),
            # No Kubernetes labels: a critical mutes warnings of its own instance only.
            alert("GatewayMarginCall", "critical", source="socket-event", **BARE_A),
            alert("GatewayNotReady", "warning", source="probe", **BARE_A),
            alert("GatewayDegraded", "warning", source="probe", **BARE_B),
        ],
    )
    states = {
        (a["labels"]["alertname"], a["labels"].get("pod") or a["labels"]["instance"]): a["status"]["state"]
        for a in await get_json(f"{alertmanager.base_url}/api/v2/alerts")
    }
    assert states == {
        ("GatewayOcoDoubleExit", "gateway-0"): "active",
        ("GatewayRateLimited", "gateway-0"): "suppressed",
        ("GatewayRateLimited", "gateway-2"): "active",
        ("GatewayMonitorCannotSeeGateway", "gateway-1"): "active",
        ("GatewayBrokerConnectionFailed", "gateway-1"): "suppressed",
        ("GatewayLiquidation", "gateway-1"): "active",
        ("GatewayOcoDoubleExit", "gateway-3"): "active",
        ("GatewayPositionUnprotected", "gateway-3"): "suppressed",
        ("GatewayOcoDoubleExit", "gateway-4"): "active",
        ("GatewayPositionUnprotected", "gateway-4"): "active",
        ("GatewayMarginCall", "127.0.0.1:9478"): "active",
        ("GatewayNotReady", "127.0.0.1:9478"): "suppressed",
        ("GatewayDegraded", "127.0.0.2:9478"): "active",
    }
    for name in ("GatewayDegraded", "GatewayRateLimited"):
        ticket: Notification = await webhook_receiver.wait_for(is_firing(name, "/ticket"), 15)
        assert ticket.alertnames == {name}
    await webhook_receiver.wait_for(is_firing("GatewayLiquidation", "/pager"), 15)
    active = {key for key, state in states.items() if state == "active"}
    for key in active:
        await webhook_receiver.wait_for(lambda n, key=key: key in alert_keys(n), 15)
    sent = set().union(*(alert_keys(n) for n in webhook_receiver.notifications))
    assert sent == active


def alert_keys(note: Notification) -> set[tuple[str, str]]:
    """(alertname, pod or instance) of every alert in a notification."""
    return {
        (a["labels"]["alertname"], a["labels"].get("pod") or a["labels"]["instance"])
        for a in note.payload["alerts"]
    }
