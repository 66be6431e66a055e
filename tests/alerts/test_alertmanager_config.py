"""alerts/alertmanager.yml: valid for amtool, and every alert reaches the right receiver."""

from __future__ import annotations

from typing import Any

import pytest
from alerts_support import ALERTS_DIR, run

CONFIG = ALERTS_DIR / "alertmanager.yml"
RECEIVER_BY_SEVERITY = {"critical": "pager", "warning": "ticket", "none": "watchdog"}


def route(amtool: str, labels: dict[str, str]) -> str:
    """Return the receiver(s) amtool resolves for an alert with `labels`."""
    argv = [amtool, "config", "routes", "test", f"--config.file={CONFIG}"]
    argv += [f"{k}={v}" for k, v in labels.items()]
    result = run(argv)
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout.strip()


def test_amtool_check_config(amtool: str) -> None:
    result = run([amtool, "check-config", str(CONFIG)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.parametrize(
    ("labels", "receiver"),
    [
        ({"alertname": "GatewayPositionUnprotected", "severity": "critical"}, "pager"),
        ({"alertname": "GatewayRateLimited", "severity": "warning"}, "ticket"),
        ({"alertname": "Watchdog", "severity": "none"}, "watchdog"),
        ({"alertname": "Watchdog", "severity": "critical"}, "watchdog"),
        ({"alertname": "SomethingElse", "severity": "info"}, "ticket"),
        ({"alertname": "NoSeverity"}, "ticket"),
    ],
)
def test_routes(amtool: str, labels: dict[str, str], receiver: str) -> None:
    assert route(amtool, labels) == receiver


def test_verify_receivers_flag_rejects_a_wrong_receiver(amtool: str) -> None:
    argv = [
        amtool,
        "config",
        "routes",
        "test",
        f"--config.file={CONFIG}",
        "--verify.receivers=pager",
        "alertname=GatewayRateLimited",
        "severity=warning",
    ]
    assert run(argv).returncode != 0


def test_every_alert_routes_by_its_severity(amtool: str, alerts: list[dict[str, Any]]) -> None:
    for rule in alerts:
        labels = {"alertname": rule["alert"], **rule["labels"]}
        expected = RECEIVER_BY_SEVERITY[rule["labels"]["severity"]]
        argv = [
            amtool,
            "config",
            "routes",
            "test",
            f"--config.file={CONFIG}",
            f"--verify.receivers={expected}",
        ] + [f"{k}={v}" for k, v in labels.items()]
        result = run(argv)
        assert result.returncode == 0, (rule["alert"], result.stdout + result.stderr)


def test_webhooks_are_placeholders_on_localhost() -> None:
    text = CONFIG.read_text()
    urls = [line.split("url:", 1)[1].strip() for line in text.splitlines() if "url:" in line]
    assert urls and all(u.startswith("http://127.0.0.1:") for u in urls), urls
