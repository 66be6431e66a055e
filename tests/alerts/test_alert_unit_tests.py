"""promtool unit tests (alerts/tests/*.yml): run them all and check that every alert is covered."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_support import UNIT_TESTS_DIR, run

UNIT_TEST_FILES = sorted(UNIT_TESTS_DIR.glob("*.yml"))


@pytest.mark.parametrize("path", UNIT_TEST_FILES, ids=lambda p: p.stem)
def test_promtool_unit_tests_pass(promtool: str, path: Path) -> None:
    result = run([promtool, "test", "rules", path.name], cwd=UNIT_TESTS_DIR)
    assert result.returncode == 0, f"promtool test rules {path.name}:\n{result.stdout}{result.stderr}"


def alert_rule_tests() -> list[dict[str, Any]]:
    """Every alert_rule_test case of every unit test file."""
    cases = []
    for path in UNIT_TEST_FILES:
        for test in yaml.safe_load(path.read_text())["tests"]:
            cases.extend(test.get("alert_rule_test", []))
    return cases


def test_every_alert_has_a_unit_test_file(alerts: list[dict[str, Any]]) -> None:
    files = {p.stem for p in UNIT_TEST_FILES}
    missing = {r["alert"] for r in alerts if r["alert"].lower() not in files}
    assert not missing, f"no alerts/tests/<alertname>.yml for {sorted(missing)}"


def test_every_alert_is_tested_firing_and_not_firing(alerts: list[dict[str, Any]]) -> None:
    cases = alert_rule_tests()
    for rule in alerts:
        name = rule["alert"]
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c.get("exp_alerts") for c in mine), f"{name}: never tested firing"
        if name != "Watchdog":
            assert any(not c.get("exp_alerts") for c in mine), f"{name}: never tested quiet"


def test_firing_cases_check_labels_and_all_annotations(alerts: list[dict[str, Any]]) -> None:
    annotations = {r["alert"]: set(r["annotations"]) for r in alerts}
    for case in alert_rule_tests():
        for expected in case.get("exp_alerts") or []:
            assert expected.get("exp_labels", {}).get("severity"), case["alertname"]
            assert set(expected["exp_annotations"]) == annotations[case["alertname"]], case
