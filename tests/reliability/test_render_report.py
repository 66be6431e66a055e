"""The figures renderer turns a run's JSON into the tables of docs/reliability.md."""

from __future__ import annotations

from render_report import render


def test_render_tables_and_summary() -> None:
    data = {"generated": "2026-11-21T00:00:00Z", "python": "3.11.7", "rows": [
        {"kind": "fault", "name": "kill | restart", "survived": True, "reason": "connection_lost",
         "recovery_seconds": 0.02, "bound_seconds": 0.6, "detail": "d"},
        {"kind": "fault", "name": "frozen", "survived": False, "reason": "heartbeat_timeout",
         "recovery_seconds": None, "bound_seconds": None, "detail": ""},
        {"kind": "input", "name": "frame: binary", "tried": 150, "outcome": "skipped"},
        {"kind": "events", "name": "flood", "injected": 525, "counted": 525},
        {"kind": "soak", "ok": True, "problems": [], "cycles": [
            {"cycle": 1, "seconds": 4.8, "rss_bytes": 2**20 * 55, "open_fds": 22, "tasks": 3,
             "critical_injected": 52, "critical_counted": 52, "recovery_seconds": {"sigkill": 0.1}}]},
    ]}
    text = render(data)
    assert "| kill \\| restart | yes | connection_lost | 0.020 | 0.600 | d |" in text
    assert "| frozen | **NO** | heartbeat_timeout | - | - |  |" in text
    assert "| frame: binary | 150 | skipped |" in text
    assert "| 1 | 4.8 | 55.0 | 22 | 3 | 52 | 52 | 0.100 |" in text
    assert "Summary: 1/2 faults survived; 577/577 critical events counted." in text
