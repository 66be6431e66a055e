"""The soak (tests/harness/soak.py), short: three cycles of every scenario and fault, in under a minute."""

from __future__ import annotations

from pathlib import Path

from harness.soak import run_soak


async def test_three_soak_cycles_stay_flat_and_count_every_critical_event(tmp_path: Path, figures) -> None:
    report = await run_soak(3, minutes=0.75, workdir=tmp_path, market_data_rate=200)
    figures.soak(report.to_dict())
    assert report.problems == []
    assert len(report.cycles) == 3
    last = report.cycles[-1]
    assert last.critical_counted == last.critical_injected > 0
    assert all(c.recovery_seconds["sigstop"] < 2.5 for c in report.cycles)
