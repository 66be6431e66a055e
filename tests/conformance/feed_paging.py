"""Feed health end to end on the real gateway: the scenario of test_paging_feed.py (scaled, in CI)
and of test_feed_default_settings.py (default settings, minutes), on paging_support.py's pipeline.

One run, after the Watchdog's first notification:

1. EURUSD muted at fake_saxo.py (`ticks?on=0&symbol=EURUSD`): GatewayInstrumentSilent must fire
   in Prometheus naming EURUSD and reach the ticket receiver (it is a warning); GBPUSD is never
   named; the gateway's /health stays green (polled every second);
2. GBPUSD muted too, every instrument silent: GatewayFeedFrozen must page once, the instrument
   alerts held by Alertmanager as inhibited;
3. both unmuted: every alert resolves, in Prometheus and as resolved notifications.

Where each thing happened is taken from its own source: the monitor's JSON log (named silent,
frozen, cleared), Prometheus' /api/v1/alerts polled every `Plan.poll` seconds (activeAt of each
alert; resolved when it is gone), the webhook receiver (notifications), the fake's control calls
(mute, unmute). Every time is reported from the control call.

GatewayFeedFrozen and the GatewayInstrumentSilent alerts it inhibits are evaluated in one rule
group (alerts/src/feed.yml), so the inhibitor reaches Alertmanager first and resolves with them: no
ticket names GBPUSD, whenever the ticket group flushes.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from gateway_support import FakeSaxo, RawClient, RealGateway, wait_until
from paging_support import RealPipeline, Run, Setup, first
from processes import Notification, get_json
from test_e2e_paging import new_pages

BROKER = "saxo-sim"
EURUSD, GBPUSD = "EURUSD:FxSpot", "GBPUSD:FxSpot"
SILENT, FROZEN = "GatewayInstrumentSilent", "GatewayFeedFrozen"
MUTE_EURUSD, MUTE_ALL, UNMUTE = "EURUSD muted", "GBPUSD muted too (feed frozen)", "both unmuted"


@dataclass(frozen=True)
class Plan:
    """The settings and time bounds of one run."""

    name: str
    setup: Setup
    floor: float  # the monitor's silence threshold for an instrument ticking every 0.5 s
    interval: float  # Prometheus' scrape and evaluation interval, in seconds
    ticket_wait: float  # Alertmanager's group_wait of the ticket route
    ticket_interval: float  # ... its group_interval
    page_wait: float
    page_interval: float
    poll: float = 0.5

    @property
    def firing_bound(self) -> float:
        """Event -> alert firing in Prometheus: the threshold (counted from the last tick, 0.5 s
        before the mute at most), a 1 s sweep, a scrape and an evaluation, slack."""
        return self.floor + 1.0 + 2 * self.interval + 2.0

    @property
    def resolved_bound(self) -> float:
        """Unmute -> resolved in Prometheus: the first tick (0.5 s), a sweep, a scrape and an
        evaluation, slack."""
        return 1.5 + 2 * self.interval + 2.0

    @property
    def once_window(self) -> float:
        """After a page: one pager group_interval and slack, a repeated page would show."""
        return self.page_interval + max(5.0, self.interval)


@dataclass
class AlertWatch:
    """Prometheus' alerts polled every `poll` seconds: per (alertname, symbol), when each was first
    seen firing (monotonic), its activeAt (wall clock) and when it was first seen gone."""

    pipe: RealPipeline
    poll: float
    seen: dict[tuple[str, str], list[dict[str, Any]]] = field(default_factory=dict)
    any_state: list[tuple[float, str, str, str]] = field(default_factory=list)
    """(monotonic, alertname, symbol, state) of every alert of every poll (GBPUSD must not appear)."""

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):  # a slow answer costs one poll
                await self.once()
            await asyncio.sleep(self.poll)

    async def once(self) -> None:
        body = await get_json(f"{self.pipe.prometheus.base_url}/api/v1/alerts")
        now = time.monotonic()
        firing: set[tuple[str, str]] = set()
        for alert in body["data"]["alerts"]:
            labels = alert["labels"]
            key = (labels["alertname"], labels.get("symbol", ""))
            self.any_state.append((now, key[0], key[1], alert["state"]))
            if alert["state"] != "firing":
                continue
            firing.add(key)
            spells = self.seen.setdefault(key, [])
            if not spells or spells[-1]["gone"] is not None:
                spells.append({"seen": now, "active_at": _wall(alert["activeAt"]), "gone": None,
                               "labels": labels})
        for key, spells in self.seen.items():
            if key not in firing and spells[-1]["gone"] is None:
                spells[-1]["gone"] = now

    def spell(self, alertname: str, symbol: str = "") -> dict[str, Any] | None:
        """The latest firing spell of an alert."""
        spells = self.seen.get((alertname, symbol))
        return spells[-1] if spells else None

    def named(self, symbol: str, start: float, end: float = float("inf")) -> list[tuple[float, str, str]]:
        """Alerts (any state) naming `symbol` seen in [start, end]."""
        return [(at, name, state) for at, name, sym, state in self.any_state
                if sym == symbol and start <= at <= end]


@dataclass
class HealthWatch:
    """The gateway's /health, polled every second."""

    gateway: RealGateway
    answers: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    async def run(self) -> None:
        while True:
            with contextlib.suppress(Exception):
                self.answers.append((time.monotonic(), await self.gateway.health()))
            await asyncio.sleep(1.0)

    def between(self, start: float, end: float) -> list[dict[str, Any]]:
        return [h for at, h in self.answers if start <= at <= end]


def _wall(stamp: str) -> float:
    """Unix time of an RFC 3339 timestamp (Prometheus' activeAt, the monitor's log)."""
    stamp = stamp.replace("Z", "+00:00")
    head, _, tail = stamp.partition(".")
    if tail:  # nanoseconds: Python reads microseconds
        digits = "".join(c for c in tail if c.isdigit())
        zone = tail[len(digits):]
        stamp = f"{head}.{digits[:6]}{zone}"
    return datetime.fromisoformat(stamp).timestamp()


@contextlib.asynccontextmanager
async def watching(*watchers: Any) -> AsyncIterator[None]:
    tasks = [asyncio.create_task(w.run()) for w in watchers]
    try:
        yield
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


def feed_body(fake: FakeSaxo, plan: Plan) -> Callable[..., Any]:
    """The three steps of the module docstring, recorded into run.events / run.pages / run.data."""

    async def body(pipe: RealPipeline, gateway: RealGateway, raw: RawClient, run: Run) -> None:
        alerts, health = AlertWatch(pipe, plan.poll), HealthWatch(gateway)
        data = run.data
        data["plan"] = plan

        async def ctl(action: str, event: str | None = None) -> float:
            at, wall = time.monotonic(), time.time()
            await fake.ctl(action)
            if event is not None:
                run.events[event] = at
                data.setdefault("wall", {})[event] = wall
            return at

        async def tracked() -> bool:
            series = f'gateway_monitor_instrument_last_tick_timestamp_seconds{{broker="{BROKER}"}}'
            return bool(await pipe.query(f"count({series}) == 2"))

        if not await pipe.until(tracked, "both instruments tracked", timeout=30 + 3 * plan.interval):
            raise AssertionError("Prometheus never saw the monitor track EURUSD and GBPUSD under saxo-sim")
        await asyncio.sleep(3.0)  # the usual interval learned (two ticks)
        data["before"] = await pipe.query('ALERTS{alertname!="Watchdog"}')
        async with watching(alerts, health):
            # 1. One instrument muted.
            muted = await ctl("ticks?on=0&symbol=EURUSD", MUTE_EURUSD)
            ticket = await pipe.receiver.wait_for(
                lambda n: n.path == "/ticket" and n.received_monotonic >= muted
                and _names(n, SILENT, EURUSD), plan.firing_bound + plan.ticket_wait + 15)
            run.pages["ticket " + SILENT] = [ticket]
            # 2. Every instrument muted: a frozen feed.
            frozen_from = await ctl("ticks?on=0&symbol=GBPUSD", MUTE_ALL)
            data["phase1"] = (muted, frozen_from)
            data["health1"] = health.between(muted, frozen_from)
            run.pages[FROZEN] = await pipe_pages(pipe, FROZEN, frozen_from,
                                                 plan.firing_bound + plan.page_wait + 15, plan.once_window)
            data["alertmanager"] = await get_json(f"{pipe.alertmanager.base_url}/api/v2/alerts")
            # 3. Both unmuted.
            data["health2"] = health.between(frozen_from, time.monotonic())
            unmuted = await ctl("ticks?on=1&symbol=EURUSD", UNMUTE)
            await ctl("ticks?on=1&symbol=GBPUSD")
            first_tick = await _first_quotes(raw, unmuted)
            data["first_tick"] = first_tick - unmuted
            await wait_until(lambda: all(s is not None and s["gone"] is not None
                                         for s in (alerts.spell(FROZEN), alerts.spell(SILENT, EURUSD))),
                             plan.resolved_bound + 5, "the alerts resolved in Prometheus")
            resolve_wait = plan.resolved_bound + 15
            data["resolved_page"] = await _resolution(pipe, "/pager", FROZEN, unmuted,
                                                      resolve_wait + plan.page_interval)
            data["resolved_ticket"] = await _resolution(pipe, "/ticket", SILENT, unmuted,
                                                        resolve_wait + plan.ticket_interval)
        data["alerts"] = alerts
        data["health"] = health
        data["monitor_log"] = _log_events(pipe.monitor.log_path)
        spells = {" ".join(key).strip(): value for key, value in alerts.seen.items()}
        (run.workdir / "prometheus-alerts.json").write_text(json.dumps(spells, indent=2), encoding="utf-8")

    return body


async def pipe_pages(pipe: RealPipeline, alertname: str, since: float, timeout: float,
                     window: float) -> list[Notification]:
    """Pages of `alertname` after `since`: the first within `timeout`, then all within `window`."""
    try:
        first = await pipe.receiver.wait_for(
            lambda n: n.path == "/pager" and n.received_monotonic >= since and _names(n, alertname), timeout)
    except AssertionError:
        return []
    await asyncio.sleep(max(0.0, first.received_monotonic + window - time.monotonic()))
    end = first.received_monotonic + window
    return [n for n in pipe.receiver.notifications
            if n.path == "/pager" and since <= n.received_monotonic <= end and _names(n, alertname)]


async def _resolution(pipe: RealPipeline, path: str, alertname: str, since: float,
                      timeout: float) -> Notification | None:
    """The first notification on `path` after `since` resolving `alertname`, nothing of it firing."""

    def resolves(n: Notification) -> bool:
        alerts = n.payload["alerts"]
        states = {a["status"] for a in alerts if a["labels"]["alertname"] == alertname}
        return n.path == path and n.received_monotonic >= since and states == {"resolved"}

    try:
        return await pipe.receiver.wait_for(resolves, timeout)
    except AssertionError:
        return None


async def _first_quotes(raw: RawClient, after: float) -> float:
    """When the raw client had a quote of each instrument after `after`."""

    def both() -> float | None:
        times = [next((f.received for f in raw.frames if f.received > after and f.type == "quote"
                       and f.data["quote"]["symbol"] == s), None) for s in (EURUSD, GBPUSD)]
        return None if None in times else max(t for t in times if t is not None)

    await wait_until(both, 5, "quotes after the unmute")
    at = both()
    assert at is not None
    return at


def _names(note: Notification, alertname: str, symbol: str | None = None) -> bool:
    """True when `note` has `alertname` firing (for `symbol`, when given)."""
    return any(a["status"] == "firing" and a["labels"]["alertname"] == alertname
               and (symbol is None or a["labels"].get("symbol") == symbol) for a in note.payload["alerts"])


def firing_symbols(notes: list[Notification]) -> set[str]:
    """Every symbol of a firing alert in `notes`."""
    return {a["labels"]["symbol"] for n in notes for a in n.payload["alerts"]
            if a["status"] == "firing" and "symbol" in a["labels"]}


def _log_events(path: Path) -> list[dict[str, Any]]:
    """The monitor's monitor.feed.* log lines (JSON), with `at` (Unix time)."""
    events = []
    for line in path.read_text(encoding="utf-8", errors="replace").splitlines():
        with contextlib.suppress(ValueError):
            entry = json.loads(line)
            if isinstance(entry, dict) and str(entry.get("event", "")).startswith("monitor.feed."):
                events.append({**entry, "at": _wall(entry["timestamp"])})
    return events


def print_figures(title: str, table: dict[str, float | None]) -> None:
    """The figures of one run, a line each (pytest shows them with -s or on failure)."""
    print(f"\n{title}:")
    for name, took in table.items():
        print(f"  {name:88} {'none' if took is None else f'{took:.2f}s'}")


def figures(run: Run) -> dict[str, float | None]:
    """Seconds from each control call to what followed it, from each source."""
    data, wall = run.data, run.data["wall"]
    alerts: AlertWatch = data["alerts"]
    log = data["monitor_log"]

    def logged(event: str, after: str, **fields: str) -> float | None:
        at = next((e["at"] for e in log if e["event"] == event and e["at"] >= wall[after]
                   and all(e.get(k) == v for k, v in fields.items())), None)
        return None if at is None else round(at - wall[after], 3)

    def active(alertname: str, symbol: str, after: str) -> float | None:
        spells = [s for s in alerts.seen.get((alertname, symbol), []) if s["seen"] >= run.events[after]]
        return round(spells[0]["active_at"] - wall[after], 3) if spells else None

    def gone(alertname: str, symbol: str) -> float | None:
        spell = alerts.spell(alertname, symbol)
        if spell is None or spell["gone"] is None:
            return None
        return round(spell["gone"] - run.events[UNMUTE], 3)

    ticket = run.pages["ticket " + SILENT][0]
    return {
        "EURUSD muted -> monitor names it silent (log)": logged("monitor.feed.instrument_silent", MUTE_EURUSD,
                                                                 symbol=EURUSD),
        "EURUSD muted -> GatewayInstrumentSilent firing in Prometheus (activeAt)": active(SILENT, EURUSD,
                                                                                          MUTE_EURUSD),
        "EURUSD muted -> ticket webhook": run.latency(MUTE_EURUSD, ticket),
        "every instrument muted -> monitor: feed frozen (log)": logged("monitor.feed.frozen", MUTE_ALL),
        "every instrument muted -> GatewayFeedFrozen firing in Prometheus (activeAt)": active(FROZEN, "",
                                                                                              MUTE_ALL),
        "every instrument muted -> GatewayInstrumentSilent GBPUSD firing in Prometheus (activeAt)": active(
            SILENT, GBPUSD, MUTE_ALL),
        "every instrument muted -> page webhook": run.latency(MUTE_ALL, first(run.pages[FROZEN])),
        "unmuted -> first quotes of both at a raw client": round(data["first_tick"], 3),
        "unmuted -> monitor: unfrozen (log)": logged("monitor.feed.unfrozen", UNMUTE),
        "unmuted -> GatewayFeedFrozen gone from Prometheus (polled)": gone(FROZEN, ""),
        "unmuted -> GatewayInstrumentSilent EURUSD gone from Prometheus (polled)": gone(SILENT, EURUSD),
        "unmuted -> GatewayInstrumentSilent GBPUSD gone from Prometheus (polled)": gone(SILENT, GBPUSD),
        "unmuted -> resolved page webhook": run.latency(UNMUTE, data["resolved_page"]),
        "unmuted -> resolved ticket webhook": run.latency(UNMUTE, data["resolved_ticket"]),
    }


# --- checks shared by test_paging_feed.py and test_feed_default_settings.py ------------------------


def check_ticket_names_eurusd(run: Run) -> None:
    """Muting EURUSD tickets GatewayInstrumentSilent naming EURUSD (a warning: the ticket route)."""
    (ticket,) = run.pages["ticket " + SILENT]
    firing = [a for a in ticket.payload["alerts"] if a["status"] == "firing"]
    assert [(a["labels"]["alertname"], a["labels"]["symbol"]) for a in firing] == [(SILENT, EURUSD)], firing
    labels = firing[0]["labels"]
    assert (labels["broker"], labels["severity"], labels["source"]) == (BROKER, "warning", "socket"), labels
    assert not [n for n in run.notifications if n.path == "/pager" and _names(n, SILENT)]


def check_gbpusd_never_named(run: Run) -> None:
    """While EURUSD alone is muted no alert names GBPUSD in Prometheus, in any state; no
    notification of the whole run has GBPUSD firing (during the freeze its alert is inhibited)."""
    alerts: AlertWatch = run.data["alerts"]
    start, end = run.data["phase1"]
    assert alerts.named(GBPUSD, start, end) == []
    assert GBPUSD not in firing_symbols(run.notifications), [
        (n.path, sorted((a["labels"]["alertname"], a["labels"].get("symbol")) for a in n.payload["alerts"]
                        if a["status"] == "firing")) for n in run.notifications if n.path != "/watchdog"]


def check_health_green(run: Run) -> None:
    """The gateway's /health said connected, saxo-sim connected, nothing stale, all along."""
    answers = run.data["health1"] + run.data["health2"]
    assert len(answers) >= 5, answers
    for health in answers:
        providers = [(p["platform"], p["connected"], p.get("stale_instruments", []))
                     for p in health["providers"]]
        assert health["status"] == "connected" and providers == [(BROKER, True, [])], health


def check_frozen_pages_once(run: Run) -> None:
    """Every instrument muted pages GatewayFeedFrozen once, for saxo-sim."""
    pages = run.pages[FROZEN]
    assert pages, "no GatewayFeedFrozen page"
    assert len(pages) == 1, [n.payload["alerts"] for n in pages]
    firing = [a for a in pages[0].payload["alerts"] if a["status"] == "firing"]
    assert [(a["labels"]["alertname"], a["labels"]["broker"], a["labels"]["severity"]) for a in firing] \
        == [(FROZEN, BROKER, "critical")]


def check_instrument_alerts_inhibited(run: Run) -> None:
    """During the freeze Alertmanager holds both instruments' alerts, suppressed by an inhibition."""
    held = {a["labels"].get("symbol"): a["status"] for a in run.data["alertmanager"]
            if a["labels"]["alertname"] == SILENT}
    assert set(held) == {EURUSD, GBPUSD}, held
    for symbol, status in held.items():
        assert status["state"] == "suppressed" and status["inhibitedBy"], (symbol, status)


def check_resolved(run: Run) -> None:
    """Unmuting resolves both: a resolved page and a resolved ticket."""
    assert run.data["resolved_page"] is not None, "GatewayFeedFrozen: no resolved page"
    assert run.data["resolved_ticket"] is not None, "GatewayInstrumentSilent: no resolved ticket"
    assert EURUSD in {a["labels"].get("symbol") for a in run.data["resolved_ticket"].payload["alerts"]}


def check_nothing_else(run: Run) -> None:
    """Nothing fired before the mute; one page and one ticket in the whole run."""
    assert run.data["before"] == [], run.data["before"]
    assert new_pages(run.notifications) == {FROZEN: 1}
    assert new_pages(run.notifications, "/ticket") == {SILENT: 1}


def check_bounds(table: dict[str, float | None], plan: Plan) -> None:
    """Every figure measured, and each within the bound its settings allow."""
    assert None not in table.values(), table
    seconds = {name: value for name, value in table.items() if value is not None}
    firing = {k: v for k, v in seconds.items() if "firing in Prometheus" in k}
    gone = {k: v for k, v in seconds.items() if "gone from Prometheus" in k}
    assert all(v <= plan.firing_bound for v in firing.values()), (plan.firing_bound, firing)
    assert all(v <= plan.resolved_bound for v in gone.values()), (plan.resolved_bound, gone)
    # The firing bound, then Alertmanager's group_wait (slack: the two rule groups evaluate apart).
    notify = plan.firing_bound + 2 * plan.interval + 3
    assert seconds["EURUSD muted -> ticket webhook"] <= notify + plan.ticket_wait
    assert seconds["every instrument muted -> page webhook"] <= notify + plan.page_wait
    assert seconds["unmuted -> resolved page webhook"] <= plan.resolved_bound + plan.page_interval + 3
    assert seconds["unmuted -> resolved ticket webhook"] <= plan.resolved_bound + plan.ticket_interval + 3
