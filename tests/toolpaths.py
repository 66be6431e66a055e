"""Where the test tools that tests/install-go-tools.sh and deploy/install-tools.sh install are."""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# A venv (checkov, kubernetes-validate, hadolint) whose bin/ also links the Go-built tools
# (prometheus, promtool, alertmanager, amtool, kustomize) and whose schemas/ holds the CRDs.
TOOLS = Path(os.environ.get("DEPLOY_TOOLS_VENV", REPO / ".venv-tools"))
TOOLS_BIN = TOOLS / "bin"
SCHEMAS = TOOLS / "schemas"
