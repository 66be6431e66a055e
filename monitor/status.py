"""The status page at `/`: what a person needs at 3 a.m., in one self-contained HTML page."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from html import escape
from typing import Any

from . import __version__

MAX_STALE_SHOWN = 200
MAX_INSTRUMENTS_SHOWN = 200


@dataclass
class Snapshot:
    """Everything the page shows, copied out of the running monitor."""

    gateway_url: str
    connected: bool
    unauthorized: bool
    since: float | None
    last_change_reason: str | None
    probes: dict[str, tuple[float, float]] = field(default_factory=dict)
    brokers: dict[str, tuple[str, float, str]] = field(default_factory=dict)
    """broker -> (state, since, what said so last: "frame" or "/health")."""
    stale: dict[str, dict[str, float]] = field(default_factory=dict)
    recent_critical: list[dict[str, Any]] = field(default_factory=list)
    instruments: list[tuple[str, str, float | None, float | None, float, float | None]] | None = None
    """Feed health, None when it is off: (broker, symbol, last tick, usual interval, threshold,
    silent since) per instrument."""
    now: float = 0.0


_STYLE = """
body{font:15px/1.4 system-ui,sans-serif;margin:2em;color:#222;max-width:60em}
h1{font-size:1.4em}h2{font-size:1.1em;margin-top:1.6em}
table{border-collapse:collapse}td,th{padding:.25em .8em;border-bottom:1px solid #ddd;text-align:left}
.ok{color:#fff;background:#2e7d32}.bad{color:#fff;background:#c62828}.warn{background:#f9a825}
.badge{padding:.1em .5em;border-radius:.3em;font-weight:600}
"""


def _time(ts: float | None) -> str:
    if not ts:
        return "-"
    return datetime.fromtimestamp(ts, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _badge(text: str, kind: str) -> str:
    return f'<span class="badge {kind}">{escape(text)}</span>'


def _connection(snap: Snapshot) -> str:
    if snap.connected:
        state = _badge("connected", "ok")
    elif snap.unauthorized:
        state = _badge("unauthorized: the gateway rejects the API key", "bad")
    else:
        state = _badge("not connected", "bad")
    reason = escape(snap.last_change_reason or "-")
    return (f"<p>Event stream to <code>{escape(snap.gateway_url)}</code>: {state} "
            f"since {_time(snap.since)} ({reason})</p>")


def _probes(snap: Snapshot) -> str:
    rows = "".join(
        f"<tr><td>/{escape(endpoint)}</td><td>{_badge('ok', 'ok') if ok else _badge('failing', 'bad')}"
        f"</td><td>{int(status) or 'no answer'}</td></tr>"
        for endpoint, (ok, status) in sorted(snap.probes.items())
    )
    return ("<h2>Gateway probes</h2><table><tr><th>endpoint</th><th>state</th><th>HTTP</th></tr>"
            f"{rows}</table>")


def _brokers(snap: Snapshot) -> str:
    if not snap.brokers:
        return "<h2>Brokers</h2><p>No broker reported yet (no broker frame, no /health answer).</p>"
    kinds = {"up": "ok", "disconnected": "warn", "failed": "bad"}
    rows = "".join(
        f"<tr><td>{escape(broker)}</td><td>{_badge(state, kinds.get(state, 'warn'))}</td>"
        f"<td>{_time(since)}</td><td>{escape(source)}</td></tr>"
        for broker, (state, since, source) in sorted(snap.brokers.items())
    )
    return ("<h2>Brokers</h2><table><tr><th>broker</th><th>state</th><th>since</th>"
            f"<th>last said by</th></tr>{rows}</table>")


def _stale(snap: Snapshot) -> str:
    items = [(b, s, t) for b, symbols in sorted(snap.stale.items()) for s, t in sorted(symbols.items())]
    if not items:
        return "<h2>Stale symbols</h2><p>None.</p>"
    rows = "".join(
        f"<tr><td>{escape(broker)}</td><td>{escape(symbol)}</td><td>{_time(since)}</td></tr>"
        for broker, symbol, since in items[:MAX_STALE_SHOWN]
    )
    more = f"<p>… and {len(items) - MAX_STALE_SHOWN} more.</p>" if len(items) > MAX_STALE_SHOWN else ""
    return (f"<h2>Stale symbols ({len(items)})</h2><table><tr><th>broker</th><th>symbol</th>"
            f"<th>stale since</th></tr>{rows}</table>{more}")


def _seconds(value: float | None) -> str:
    return "-" if value is None else f"{value:,.1f} s"


def _instruments(snap: Snapshot) -> str:
    if snap.instruments is None:
        return "<h2>Instruments</h2><p>Feed health is off (MONITOR_FEED_HEALTH).</p>"
    if not snap.instruments:
        return "<h2>Instruments</h2><p>No market data seen yet, and none expected (SUBSCRIPTIONS).</p>"
    # Silent ones first, then by broker and symbol.
    rows = sorted(snap.instruments, key=lambda r: (r[5] is None, r[0], r[1]))
    silent = sum(1 for r in rows if r[5] is not None)
    body = "".join(
        f"<tr><td>{escape(broker)}</td><td>{escape(symbol)}</td><td>{_time(last)}</td>"
        f"<td>{_seconds(None if last is None else snap.now - last)}</td><td>{_seconds(usual)}</td>"
        f"<td>{_seconds(threshold)}</td><td>"
        f"{_badge('silent since ' + _time(since), 'bad') if since is not None else _badge('ticking', 'ok')}"
        "</td></tr>"
        for broker, symbol, last, usual, threshold, since in rows[:MAX_INSTRUMENTS_SHOWN]
    )
    more = (f"<p>… and {len(rows) - MAX_INSTRUMENTS_SHOWN} more.</p>"
            if len(rows) > MAX_INSTRUMENTS_SHOWN else "")
    return (f"<h2>Instruments ({len(rows)}, {silent} silent)</h2><table><tr><th>broker</th>"
            "<th>symbol</th><th>last tick</th><th>ago</th><th>usual interval</th>"
            f"<th>silent after</th><th>state</th></tr>{body}</table>{more}")


def _critical(snap: Snapshot) -> str:
    if not snap.recent_critical:
        return "<h2>Recent critical events</h2><p>None since the monitor started.</p>"
    rows = "".join(
        f"<tr><td>{_time(entry['time'])}</td><td>{escape(entry['event'])}</td>"
        f"<td>{escape(str(entry.get('broker') or entry.get('message') or ''))}</td></tr>"
        for entry in reversed(snap.recent_critical)
    )
    return (f"<h2>Recent critical events</h2><table><tr><th>time</th><th>event</th><th>detail</th></tr>"
            f"{rows}</table>")


def render(snap: Snapshot) -> str:
    """The page; every value from the gateway is HTML-escaped."""
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8>"
        '<meta http-equiv="refresh" content="5"><title>gateway-monitor</title>'
        f"<style>{_STYLE}</style></head><body>"
        f"<h1>gateway-monitor {escape(__version__)}</h1>"
        f"{_connection(snap)}{_probes(snap)}{_brokers(snap)}{_stale(snap)}{_instruments(snap)}"
        f"{_critical(snap)}"
        '<h2>More</h2><p><a href="/metrics">/metrics</a> · <a href="/-/healthy">/-/healthy</a> · '
        '<a href="/-/ready">/-/ready</a></p></body></html>'
    )
