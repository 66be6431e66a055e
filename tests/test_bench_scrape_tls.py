"""The TLS scrape benchmark (`make bench-tls`) runs end to end; its figures are printed, not asserted."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(120)
def test_scrape_tls_benchmark_runs_every_mode(tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    script = ROOT / "tests" / "bench" / "scrape_tls.py"
    result = subprocess.run([sys.executable, str(script), "--requests", "10", "--json", str(out)],
                            capture_output=True, text=True, timeout=110, check=False)
    assert result.returncode == 0, result.stdout + result.stderr
    rows = json.loads(out.read_text())
    assert [r["mode"].split(",")[0] for r in rows] == [
        "plain HTTP", "TLS", "TLS + basic auth", "TLS + basic auth", "TLS"]
    assert all(0 < r["p50_ms"] <= r["p99_ms"] for r in rows)
    assert "p99 ms" in result.stdout
