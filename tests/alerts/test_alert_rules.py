"""The rule files: valid for promtool, generated from the templates, complete, documented."""

from __future__ import annotations

import functools
import importlib.util
import re
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml
from alerts_support import ALERTS_DIR, RULES_DIR, rule_files, run

RUNBOOK = ALERTS_DIR / "RUNBOOK.md"
THRESHOLDS = ALERTS_DIR / "thresholds.yaml"
RUNBOOK_BASE = "https://github.com/tektii/gateway-monitor/blob/main/alerts/RUNBOOK.md#"
SECTIONS = ("Meaning", "Impact", "Diagnosis", "Mitigation")


@functools.cache
def load_generator() -> ModuleType:
    """Import alerts/generate.py (not a package) as a module, once."""
    spec = importlib.util.spec_from_file_location("alerts_generate", ALERTS_DIR / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def test_rule_files_exist() -> None:
    names = ["critical.yml", "feed.yml", "fleet.yml", "warning.yml", "watchdog.yml"]
    assert [p.name for p in rule_files()] == names


@pytest.mark.parametrize("path", rule_files(), ids=lambda p: p.name)
def test_promtool_check_rules(promtool: str, path: Path) -> None:
    result = run([promtool, "check", "rules", str(path)])
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


def test_generated_rules_are_up_to_date() -> None:
    result = run([sys.executable, str(ALERTS_DIR / "generate.py"), "--check"])
    assert result.returncode == 0, (
        "alerts/rules differs from what alerts/generate.py renders; run "
        "`.venv/bin/python alerts/generate.py` and commit the result\n" + result.stdout + result.stderr
    )


def test_no_group_level_labels_for_prometheus_2() -> None:
    for path in rule_files():
        for group in yaml.safe_load(path.read_text())["groups"]:
            assert set(group) <= {"name", "interval", "rules"}, (path.name, group["name"])


def test_every_alert_has_severity_summary_description_and_runbook(
    alerts: list[dict[str, Any]],
) -> None:
    for rule in alerts:
        name = rule["alert"]
        assert rule["labels"]["severity"] in {"critical", "warning", "none"}, name
        annotations = rule["annotations"]
        assert annotations["summary"].strip(), name
        assert annotations["description"].strip(), name
        assert annotations["runbook_url"] == RUNBOOK_BASE + name.lower(), name


def test_alert_names_are_unique_per_severity(alerts: list[dict[str, Any]]) -> None:
    """One rule per name and severity; a name may have a warning and a critical rule (as
    kube-prometheus does), which share one runbook section and one unit test file."""
    keys = [(rule["alert"], rule["labels"]["severity"]) for rule in alerts]
    assert len(keys) == len(set(keys))


def test_rules_of_one_name_share_their_annotations(alerts: list[dict[str, Any]]) -> None:
    by_name: dict[str, dict[str, str]] = {}
    for rule in alerts:
        assert by_name.setdefault(rule["alert"], rule["annotations"]) == rule["annotations"], rule["alert"]


def test_descriptions_locate_the_problem(alerts: list[dict[str, Any]]) -> None:
    for rule in alerts:
        if rule["alert"] == "Watchdog":
            continue
        description = rule["annotations"]["description"]
        if rule["labels"].get("source") == "fleet":  # a broker's incident: it names the gateways hit
            assert "$labels.broker" in description and ".Labels.pod" in description, rule["alert"]
            continue
        assert "$labels.instance" in description or "$labels.job" in description, rule["alert"]


def test_watchdog_always_fires_with_severity_none(alerts: list[dict[str, Any]]) -> None:
    (watchdog,) = [r for r in alerts if r["alert"] == "Watchdog"]
    assert watchdog["expr"].strip() == "vector(1)"
    assert watchdog["labels"]["severity"] == "none"


def runbook_sections() -> dict[str, str]:
    """Map `## Heading` of RUNBOOK.md to the text of its section."""
    parts = re.split(r"^## (.+)$", RUNBOOK.read_text(), flags=re.MULTILINE)
    return {parts[i].strip(): parts[i + 1] for i in range(1, len(parts), 2)}


def test_runbook_has_a_complete_section_per_alert(alerts: list[dict[str, Any]]) -> None:
    sections = runbook_sections()
    for rule in alerts:
        name = rule["alert"]
        assert name in sections, f"RUNBOOK.md has no `## {name}` section"
        body = sections[name]
        for heading in SECTIONS:
            assert re.search(rf"^### {heading}\s*$", body, re.MULTILINE), (name, heading)
        diagnosis = body.split("### Diagnosis", 1)[1].split("### Mitigation", 1)[0]
        if name != "Watchdog":
            assert "```promql" in diagnosis, f"{name}: Diagnosis needs PromQL"


def test_runbook_has_no_section_for_a_missing_alert(alerts: list[dict[str, Any]]) -> None:
    names = {rule["alert"] for rule in alerts}
    extra = set(runbook_sections()) - names - {"Conventions used below"}
    assert not extra, f"RUNBOOK.md sections without an alert: {extra}"


def test_every_threshold_has_a_comment_explaining_it() -> None:
    lines = THRESHOLDS.read_text().splitlines()
    keys = [i for i, line in enumerate(lines) if re.match(r"^[a-z_]+:", line)]
    assert keys
    for i in keys:
        assert lines[i - 1].startswith("# "), f"thresholds.yaml: no comment above {lines[i]!r}"


def test_thresholds_are_in_one_place() -> None:
    """No literal duration in the templates: every window and `for` comes from thresholds.yaml."""
    for path in (ALERTS_DIR / "src").glob("*.yml"):
        for line in path.read_text().splitlines():
            if line.lstrip().startswith("#"):
                continue
            assert not re.search(r"\[\d+[smhdw]\]|for: *\d|offset +\d", line), (path.name, line)


class TestGenerator:
    """The template directives of alerts/generate.py."""

    def renderer(self, **thresholds: str) -> Any:
        return load_generator().Renderer(thresholds, {"where": "{{ $labels.instance }}"})

    def test_threshold_and_seconds(self) -> None:
        renderer = self.renderer(w="15m", long="1h30m")
        assert renderer.expand("x[${w}] > ${long:seconds}") == "x[15m] > 5400"

    def test_prometheus_templates_are_left_alone(self) -> None:
        text = '{{ $labels.pod }} {{ $value }} "$1" ${where}'
        assert self.renderer().expand(text) == '{{ $labels.pod }} {{ $value }} "$1" {{ $labels.instance }}'

    def test_increased_catches_first_appearance(self) -> None:
        out = self.renderer(w="10m").expand('${increased x{a="}"} over w}')
        assert 'increase(x{a="}"}[10m]) > 0' in out
        assert 'count_over_time(x{a="}"}[10m])' in out
        assert "group_left sum_over_time(up[10m])" in out

    def test_nested_source_and_rename(self) -> None:
        out = self.renderer().expand("${source gateway-metrics ${rename platform broker y}}")
        assert '"broker", "$1", "platform", "(.+)"' in out
        assert '"platform", "", "", ""' in out
        assert out.startswith("label_replace(") and '"source", "gateway-metrics", "", ""' in out

    def test_unknown_name_is_an_error(self) -> None:
        generate = load_generator()
        with pytest.raises(generate.TemplateError, match="unknown name"):
            self.renderer().expand("${nope}")

    def test_bad_duration_is_an_error(self) -> None:
        generate = load_generator()
        with pytest.raises(generate.TemplateError, match="not a Prometheus duration"):
            self.renderer(w="15 minutes").expand("${w:seconds}")

    def test_rendering_is_deterministic(self) -> None:
        generate = load_generator()
        assert generate.render_all() == generate.render_all()

    def test_rules_dir_is_the_output(self) -> None:
        generate = load_generator()
        assert set(generate.render_all()) == {p.name for p in RULES_DIR.glob("*.yml")}
