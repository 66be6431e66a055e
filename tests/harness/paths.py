"""Where the repository's artefacts are, for the harnesses; puts tests/alerts on sys.path.

The fleet harness reuses the paging test's process helpers (tests/alerts/processes.py) and its
scaled thresholds (test_e2e_paging.TEST_THRESHOLDS), which pytest imports from tests/alerts.
"""

from __future__ import annotations

import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ALERTS_DIR = REPO / "alerts"
GRAFANA_DIR = REPO / "deploy" / "grafana"
TESTS_ALERTS = REPO / "tests" / "alerts"

if str(TESTS_ALERTS) not in sys.path:
    sys.path.append(str(TESTS_ALERTS))
