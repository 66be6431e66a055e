"""Render the reliability suite's figures (JSON) as the Markdown tables of docs/reliability.md.

    RELIABILITY_FIGURES=build/reliability.json .venv/bin/pytest tests/reliability
    .venv/bin/python tests/reliability/render_report.py build/reliability.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "**NO**"
    if isinstance(value, float):
        return f"{value:.3f}"
    return str(value).replace("|", "\\|").replace("\n", " ")


def _table(head: list[str], rows: list[list[Any]]) -> str:
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(_cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _soak(row: dict[str, Any]) -> str:
    cycles = row["cycles"]
    faults = sorted({name for c in cycles for name in c["recovery_seconds"]})
    head = ["cycle", "s", "RSS MiB", "open fds", "asyncio tasks", "critical injected", "counted",
            *(f"{f} recovery s" for f in faults)]
    rows = [[c["cycle"], f"{c['seconds']:.1f}", f"{c['rss_bytes'] / 2**20:.1f}", c["open_fds"], c["tasks"],
             c["critical_injected"], c["critical_counted"], *(c["recovery_seconds"].get(f) for f in faults)]
            for c in cycles]
    verdict = "flat and complete" if row["ok"] else "problems: " + "; ".join(row["problems"])
    return _table(head, rows) + f"\n\nVerdict: {verdict}."


def render(data: dict[str, Any]) -> str:
    """The Markdown report of one run."""
    rows = data["rows"]
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for row in rows:
        by_kind.setdefault(row["kind"], []).append(row)
    parts = [f"Run of {data['generated']} (Python {data['python']})."]
    faults = by_kind.get("fault", [])
    parts.append("### Faults survived\n\n" + _table(
        ["fault", "survived", "reason", "recovery s", "bound s", "detail"],
        [[r["name"], r["survived"], r["reason"], r["recovery_seconds"], r["bound_seconds"], r["detail"]]
         for r in faults]))
    inputs = by_kind.get("input", [])
    parts.append("### Inputs tried\n\n" + _table(
        ["input", "tried", "outcome"], [[r["name"], r["tried"], r["outcome"]] for r in inputs]))
    events = by_kind.get("events", [])
    soak_events = [(f"soak run: {len(s['cycles'])} cycles", s["cycles"][-1]["critical_injected"],
                    s["cycles"][-1]["critical_counted"]) for s in by_kind.get("soak", []) if s["cycles"]]
    parts.append("### Critical events injected vs counted\n\n" + _table(
        ["where", "injected", "counted"],
        [[r["name"], r["injected"], r["counted"]] for r in events] + [list(s) for s in soak_events]))
    for soak in by_kind.get("soak", []):
        parts.append("### Soak (short, as CI runs it)\n\n" + _soak(soak))
    survived = sum(1 for r in faults if r["survived"])
    injected = sum(r["injected"] for r in events) + sum(s[1] for s in soak_events)
    counted = sum(r["counted"] for r in events) + sum(s[2] for s in soak_events)
    parts.append(f"Summary: {survived}/{len(faults)} faults survived; {counted}/{injected} critical events "
                 "counted.")
    return "\n\n".join(parts) + "\n"


def main(argv: list[str]) -> int:
    if len(argv) != 1:
        print(__doc__, file=sys.stderr)
        return 2
    print(render(json.loads(Path(argv[0]).read_text(encoding="utf-8"))), end="")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
