"""The rule files pass Thanos's own checker, the one of `thanos tools rules-check`.

The checker is tests/tools/thanos-rules-check: a main package calling rules.ValidateAndCount of
Thanos's pkg/rules (the module version pinned in its go.mod), built by tests/install-go-tools.sh.
Thanos Ruler loads rule files with that code: gopkg.in/yaml.v2 in strict mode, the rule format
of the Prometheus it embeds (3.9) and its own group field `partial_response_strategy`. A missing
binary, or one built from another Thanos version, fails the tests; they are never skipped.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest
import yaml
from alerts_support import REPO_ROOT, rule_files, run
from processes import LINES
from toolpaths import TOOLS_BIN

TOOL_DIR = REPO_ROOT / "tests" / "tools" / "thanos-rules-check"
GO_TOOLS_SCRIPT = REPO_ROOT / "tests" / "install-go-tools.sh"
INSTALL_HINT = "run `sh tests/install-go-tools.sh` (builds it from tests/tools/thanos-rules-check)"


def pinned_thanos_version() -> str:
    """The Thanos version the checker's go.mod requires, e.g. "0.42.5"."""
    match = re.search(r"^\tgithub\.com/thanos-io/thanos v(\S+)$", (TOOL_DIR / "go.mod").read_text(), re.M)
    assert match, f"{TOOL_DIR / 'go.mod'} does not require github.com/thanos-io/thanos"
    return match.group(1)


def checker_binary(path: Path) -> str:
    """Path of the checker; fails the test when it is missing or built from another Thanos."""
    if not (path.is_file() and os.access(path, os.X_OK)):
        pytest.fail(f"thanos-rules-check not at {path}: {INSTALL_HINT}", pytrace=False)
    out = run([str(path), "--version"]).stdout
    expected = pinned_thanos_version()
    if not out.startswith(f"thanos-rules-check, version {expected} "):
        pytest.fail(f"{path} is not built from Thanos {expected} ({out.strip()!r}): {INSTALL_HINT}")
    return str(path)


@pytest.fixture(scope="module")
def thanos_rules_check() -> str:
    """Path of thanos-rules-check in the tools venv."""
    return checker_binary(TOOLS_BIN / "thanos-rules-check")


def check(binary: str, *paths: Path) -> tuple[int, str]:
    """Run the checker on the files; return its exit code and its log (stderr)."""
    result = run([binary, *(arg for p in paths for arg in ("--rules", str(p)))])
    return result.returncode, result.stderr


def test_every_rule_file_passes_thanos_rules_check(thanos_rules_check: str) -> None:
    files = rule_files()
    assert files
    code, log = check(thanos_rules_check, *files)
    assert code == 0, log
    for path in files:
        groups = yaml.safe_load(path.read_text())["groups"]
        count = sum(len(group["rules"]) for group in groups)
        # The log line after "checking filename=F" is F's result, with the rules Thanos loaded.
        found = re.search(rf"filename={re.escape(str(path))}\n.* result=SUCCESS rulesfound={count}\n", log)
        assert found, f"no SUCCESS with {count} rules for {path}:\n{log}"


BROKEN = {
    "invalid PromQL": (
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: rate(up[5m]\n",
        'group \\"g\\", rule 0, \\"A\\": could not parse expression: 1:12: parse error: '
        "unclosed left parenthesis",
    ),
    "unknown rule field": (
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    annotation:\n"
        "      summary: typo of annotations\n",
        "line 6: field annotation not found in type rulefmt.Rule",
    ),
    "invalid partial_response_strategy": (
        "groups:\n- name: g\n  partial_response_strategy: sometimes\n  rules:\n"
        "  - alert: A\n    expr: up == 0\n",
        "failed to unmarshal \\\"sometimes\\\" as 'partial_response_strategy'. "
        "Possible values are ABORT,WARN",
    ),
    "broken annotation template": (
        "groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n    annotations:\n"
        "      summary: '{{ $labels.instance '\n",
        'annotation \\"summary\\": template: __alert_A:1: unclosed action',
    ),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_thanos_rules_check_rejects_a_broken_rule_file(
    thanos_rules_check: str, tmp_path: Path, case: str
) -> None:
    content, message = BROKEN[case]
    good, bad = tmp_path / "good.yml", tmp_path / "bad.yml"
    good.write_text("groups:\n- name: g\n  rules:\n  - alert: A\n    expr: up == 0\n", encoding="utf-8")
    bad.write_text(content, encoding="utf-8")
    code, log = check(thanos_rules_check, good, bad)
    assert code == 1, log
    assert "result=SUCCESS rulesfound=1" in log  # the good file still passes
    assert f"filename={bad}\n" in log and "result=FAILED" in log, log
    assert message in log, log
    assert "rules-check command failed" in log, log


def test_thanos_rules_check_fails_when_a_glob_matches_nothing(
    thanos_rules_check: str, tmp_path: Path
) -> None:
    code, log = check(thanos_rules_check, tmp_path / "*.yml")
    assert code == 1
    assert 'error="matching file not found"' in log, log


def test_partial_response_strategy_is_thanos_only(thanos_rules_check: str, tmp_path: Path) -> None:
    """What Thanos adds: its group field passes its checker and fails promtool 3.7."""
    rules = tmp_path / "thanos.yml"
    rules.write_text(
        "groups:\n- name: g\n  partial_response_strategy: warn\n  rules:\n  - alert: A\n    expr: up == 0\n",
        encoding="utf-8",
    )
    code, log = check(thanos_rules_check, rules)
    assert code == 0, log
    promtool = run([LINES["current"].binary("promtool"), "check", "rules", str(rules)])
    assert promtool.returncode == 1
    assert "field partial_response_strategy not found" in promtool.stdout + promtool.stderr


def test_missing_checker_fails_with_install_hint(tmp_path: Path) -> None:
    with pytest.raises(pytest.fail.Exception, match=r"sh tests/install-go-tools\.sh"):
        checker_binary(tmp_path / "thanos-rules-check")


def test_checker_of_another_thanos_version_fails(tmp_path: Path) -> None:
    fake = tmp_path / "thanos-rules-check"
    fake.write_text("#!/bin/sh\necho 'thanos-rules-check, version 0.41.0 (x)'\n", encoding="utf-8")
    fake.chmod(0o755)
    with pytest.raises(pytest.fail.Exception, match=r"not built from Thanos"):
        checker_binary(fake)


def test_go_tools_script_pins_the_checkers_thanos_version() -> None:
    text = GO_TOOLS_SCRIPT.read_text(encoding="utf-8")
    assert re.search(rf"^THANOS_VERSION={re.escape(pinned_thanos_version())}\b", text, re.M)
    assert 'link "$dir/thanos-rules-check"' in text
