"""The benchmark harness works end to end and nothing is lost: `tests/bench/run.py --quick`.

This is a smoke test of the harness, not of the performance targets (those need a quiet
machine and the full run: `make bench`). It checks what must hold on any machine: every
process starts, every frame sent is counted by the monitor (the harness itself fails on
any difference), the gateway-queue model drops nothing at 100k frames/s, each critical
frame is counted exactly once, the per-symbol series stay at their cap, and the `ratio` part
(live and stress mixes against the receive-only clients) reports its rows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.timeout(90)  # the quick run takes ~25 s; room for a slow CI machine
def test_quick_benchmark_runs_and_loses_nothing(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    proc = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "bench" / "run.py"), "--quick", "--json", str(out)],
        cwd=ROOT, capture_output=True, text=True, timeout=80, check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| measure" in proc.stdout and "frames/s" in proc.stdout
    res = json.loads(out.read_text())
    assert res["monitor"]["fps"] > 0 and res["sink"]["fps"] > 0
    assert all(rate["dropped"] == 0 for rate in res["rates"].values())
    soak = res["soak"]
    assert soak["dropped"] == 0
    assert soak["critical_sent"] > 0 and soak["critical_exact"]
    assert soak["scrapes"] >= 2
    assert res["series"] >= 10_000
    assert res["memory"]["series"] <= 10_100  # the cap the harness configures
    assert res["memory"]["dropped_series"] > 0
    assert "| 7 ratio live:" in proc.stdout and "| 7 ratio stress:" in proc.stdout
    assert all(m["ratios"]["monitor"]["ratio_best"] > 0 for m in res["ratio"]["mixes"].values())
