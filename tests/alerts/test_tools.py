"""The tool setup: missing tools fail loudly, install-tools.sh is sound."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from alerts_support import ALERTS_DIR, INSTALL_HINT, REPO_ROOT, run
from processes import LINES, VersionLine

INSTALL_SCRIPT = ALERTS_DIR / "install-tools.sh"
GO_TOOLS_SCRIPT = REPO_ROOT / "tests" / "install-go-tools.sh"


def test_missing_tool_fails_with_install_hint(tmp_path: Path) -> None:
    line = VersionLine("test", "2.42.0", "0.25.0", {"promtool": tmp_path / "promtool"}, INSTALL_HINT)
    with pytest.raises(pytest.fail.Exception, match=r"alerts/install-tools\.sh"):
        line.binary("promtool")
    assert "install-tools.sh" in INSTALL_HINT


def test_tool_of_another_version_fails(tmp_path: Path) -> None:
    fake = tmp_path / "promtool"
    fake.write_text("#!/bin/sh\necho 'promtool, version 3.7.2 (branch: x)'\n", encoding="utf-8")
    fake.chmod(0o755)
    line = VersionLine("test", "3.7.3", "0.29.0", {"promtool": fake}, "the hint")
    with pytest.raises(pytest.fail.Exception, match=r"version '3\.7\.2'; the hint"):
        line.binary("promtool")


def test_the_lines_are_prometheus_2_and_3() -> None:
    assert LINES["old"].prometheus_version.startswith("2.")
    assert LINES["current"].prometheus_version.startswith("3.")
    current_alertmanager = tuple(int(x) for x in LINES["current"].alertmanager_version.split("."))
    assert current_alertmanager >= (0, 28, 0)


def test_every_tool_of_each_line_is_installed_in_its_version(version_line: VersionLine) -> None:
    for tool in ("prometheus", "promtool", "alertmanager", "amtool"):
        assert os.path.isabs(version_line.binary(tool))


def test_go_tools_script_is_posix_shell_and_pins_the_versions() -> None:
    assert os.access(GO_TOOLS_SCRIPT, os.X_OK)
    result = run(["sh", "-n", str(GO_TOOLS_SCRIPT)])
    assert result.returncode == 0, result.stderr
    text = GO_TOOLS_SCRIPT.read_text(encoding="utf-8")
    assert f"PROMETHEUS_VERSION={LINES['current'].prometheus_version}\n" in text
    assert f"ALERTMANAGER_VERSION={LINES['current'].alertmanager_version}\n" in text


def test_install_script_is_executable_posix_shell() -> None:
    assert os.access(INSTALL_SCRIPT, os.X_OK)
    result = run(["sh", "-n", str(INSTALL_SCRIPT)])
    assert result.returncode == 0, result.stderr


def test_install_script_forbids_service_starts_and_restores_policy() -> None:
    text = INSTALL_SCRIPT.read_text()
    assert "printf '#!/bin/sh\\nexit 101\\n'" in text
    assert "/usr/sbin/policy-rc.d" in text
    assert "trap restore_policy EXIT" in text
    assert "--no-install-recommends prometheus" not in text  # packages come from $PACKAGES
    assert 'PACKAGES="prometheus prometheus-alertmanager"' in text


@pytest.mark.usefixtures("no_leftover_daemons")
def test_no_packaged_daemon_listens_on_all_interfaces() -> None:
    """The Debian packages' daemons (9090, 9093, 9094 on 0.0.0.0) must not be running."""
