"""What reached the pager and the ticket queue, alert by alert and phase by phase.

A page is a notification to the `pager` receiver that carries an alert not sent firing before,
counted once per alertname, as test_e2e_paging.new_pages counts: an alert is its fingerprint and
startsAt, so an alert that resolves and fires again pages again, while a group update that only
adds a resolution or an alert already sent is no new page. Two alerts of one notification (the
same pod's alert from the socket and from the gateway's counters) are one page.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from processes import Notification
from test_e2e_paging import firing_alerts

PAGER = "/pager"
TICKET = "/ticket"


@dataclass(frozen=True)
class Alerted:
    """One alert as first notified to a receiver."""

    received: float  # monotonic seconds
    path: str
    labels: dict[str, str]  # of its first new alert
    annotations: dict[str, str]
    alerts: int = 1  # new alerts of this name in the notification

    @property
    def alertname(self) -> str:
        """The alert's name."""
        return self.labels.get("alertname", "")

    @property
    def where(self) -> str:
        """namespace/pod for a per-pod alert, broker=... for a fleet alert."""
        if self.labels.get("pod"):
            return f"{self.labels.get('namespace')}/{self.labels['pod']}"
        return f"broker={self.labels.get('broker', '?')}"

    def text(self, limit: int = 400) -> str:
        """One line: name, where, summary and (for fleet alerts) the description."""
        note = self.annotations.get("summary", "")
        if self.labels.get("source") == "fleet":
            description = " ".join(self.annotations.get("description", "").split())
            head, hit, _ = description.partition("Gateways hit:")
            listed = listed_pods(description)
            shown = ", ".join(pod.rsplit("/", 1)[-1] for pod in listed[:4])
            note += f" {head}{hit} [{len(listed)} pods listed: {shown}{', ...' if len(listed) > 4 else ''}]"
        note = " ".join(note.split())
        several = f" ({self.alerts} alerts)" if self.alerts > 1 else ""
        return f"{self.alertname} [{self.where}]{several} {note[:limit]}{'...' if len(note) > limit else ''}"


def first_notified(notes: list[Notification], path: str) -> list[Alerted]:
    """Per notification to `path` and alertname, the alerts it was the first to send firing."""
    seen: set[tuple[str, str]] = set()
    out: list[Alerted] = []
    for note in sorted((n for n in notes if n.path == path), key=lambda n: n.received_monotonic):
        fresh: dict[str, list[dict[str, Any]]] = {}
        for alert in firing_alerts(note):
            key = (alert["fingerprint"], alert["startsAt"])
            if key not in seen:
                seen.add(key)
                fresh.setdefault(alert["labels"].get("alertname", ""), []).append(alert)
        for alerts in fresh.values():
            first = alerts[0]
            at = note.received_monotonic
            out.append(Alerted(at, path, first["labels"], first["annotations"], len(alerts)))
    return out


def between(alerted: list[Alerted], start: float, end: float) -> list[Alerted]:
    """The alerts first notified in [start, end)."""
    return [a for a in alerted if start <= a.received < end]


def resolved_at(notes: list[Notification], alertname: str, since: float) -> float | None:
    """When a pager notification first said `alertname` resolved (none of it still firing)."""
    for note in sorted(notes, key=lambda n: n.received_monotonic):
        if note.path != PAGER or note.received_monotonic < since:
            continue
        alerts: list[dict[str, Any]] = note.payload.get("alerts", [])
        mine = [a for a in alerts if a["labels"].get("alertname") == alertname]
        if mine and all(a["status"] == "resolved" for a in mine):
            return note.received_monotonic
    return None


OUTAGE_COUNT = re.compile(r"^When this was sent, (\d+(?:\.\d+)?) of (\d+(?:\.\d+)?) gateways")
LISTED = 20  # alerts/generate.py's LISTED_GATEWAYS


def listed_pods(description: str) -> list[str]:
    """The namespace/pod names after "Gateways hit:" (without the "(20 of N listed)" note)."""
    tail = description.split("Gateways hit:", 1)[1] if "Gateways hit:" in description else ""
    return [word for word in tail.split() if "/" in word]


def outage_description(alert: Alerted) -> tuple[int, int, list[str]]:
    """(gateways hit, gateways on the broker, pods listed) as a broker-wide page states them."""
    description = " ".join(alert.annotations.get("description", "").split())
    match = OUTAGE_COUNT.match(description)
    hit, total = (int(float(match.group(1))), int(float(match.group(2)))) if match else (-1, -1)
    return hit, total, listed_pods(description)
