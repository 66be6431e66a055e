"""The tool setup: missing tools fail loudly, install-tools.sh is sound."""

from __future__ import annotations

import os

import pytest
from alerts_support import ALERTS_DIR, INSTALL_HINT, run
from processes import find_binary

INSTALL_SCRIPT = ALERTS_DIR / "install-tools.sh"


def test_missing_tool_fails_with_install_hint() -> None:
    with pytest.raises(pytest.fail.Exception, match=r"alerts/install-tools\.sh"):
        find_binary("gateway-monitor-no-such-tool")
    assert "install-tools.sh" in INSTALL_HINT


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
