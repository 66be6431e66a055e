"""checkov's Kubernetes checks pass on every rendered overlay, but for listed, reasoned skips."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from deploy_helpers import DEPLOY, Rendered, run, tool

SKIPS_FILE = DEPLOY / "checkov-skips.yaml"


def _skips() -> dict[str, str]:
    doc = yaml.safe_load(SKIPS_FILE.read_text(encoding="utf-8"))
    return {s["id"]: s["reason"] for s in doc["skips"]}


@pytest.fixture(scope="module")
def checkov_report(rendered: dict[str, Rendered], tmp_path_factory: pytest.TempPathFactory
                   ) -> list[dict[str, Any]]:
    """checkov's JSON report over all rendered overlays, run without any skip."""
    directory = tmp_path_factory.mktemp("checkov")
    for r in rendered.values():
        (directory / r.file.name).write_text(r.text, encoding="utf-8")
    result = run([tool("checkov"), "--framework", "kubernetes", "--skip-download",
                  "--output", "json", "--directory", str(directory)], timeout=150)
    assert result.returncode in (0, 1), result.stderr
    report = json.loads(result.stdout)
    reports: list[dict[str, Any]] = report if isinstance(report, list) else [report]
    return reports


def _failed(reports: list[dict[str, Any]]) -> dict[str, set[str]]:
    failed: dict[str, set[str]] = {}
    for report in reports:
        for check in report["results"]["failed_checks"]:
            failed.setdefault(check["check_id"], set()).add(
                f"{check['file_path']}: {check['resource']}")
    return failed


def test_checkov_scanned_every_overlay(checkov_report: list[dict[str, Any]],
                                      rendered: dict[str, Rendered]) -> None:
    summary = checkov_report[0]["summary"]
    assert summary["parsing_errors"] == 0
    assert summary["passed"] > 50
    scanned = {c["file_path"].lstrip("/") for r in checkov_report
               for c in r["results"]["passed_checks"]}
    assert scanned == {r.file.name for r in rendered.values()}


def test_checkov_passes_with_the_listed_skips(checkov_report: list[dict[str, Any]]) -> None:
    failed = _failed(checkov_report)
    unexpected = {cid: sorted(where) for cid, where in failed.items() if cid not in _skips()}
    assert not unexpected, (
        f"checkov checks failed: {json.dumps(unexpected, indent=2)}\n"
        f"fix the manifests, or add the check with its reason to {SKIPS_FILE}")


def test_every_skip_is_still_needed(checkov_report: list[dict[str, Any]]) -> None:
    stale = set(_skips()) - set(_failed(checkov_report))
    assert not stale, f"remove from {SKIPS_FILE}, they pass now: {sorted(stale)}"


def test_every_skip_has_a_reason() -> None:
    for check_id, reason in _skips().items():
        assert len(reason.split()) >= 8, f"{check_id}: give the reason in a sentence"


def test_checkov_passes_when_invoked_with_the_skips(rendered: dict[str, Rendered],
                                                    tmp_path: Path) -> None:
    """The command CI or a person would run: exit 0 with --skip-check."""
    file = tmp_path / "all.yaml"
    file.write_text("---\n".join(r.text for r in rendered.values()), encoding="utf-8")
    result = run([tool("checkov"), "--framework", "kubernetes", "--skip-download", "--quiet",
                  "--compact", "--skip-check", ",".join(_skips()), "--file", str(file)],
                 timeout=150)
    assert result.returncode == 0, result.stdout + result.stderr
