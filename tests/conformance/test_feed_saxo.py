"""Feed health against the real gateway's Saxo adapter: what the gateway cannot see.

fake_saxo.py ticks EURUSD:FxSpot and GBPUSD:FxSpot every 0.5 s (as the other Saxo tests run it);
`POST /_ctl/ticks?on=0&symbol=EURUSD` mutes one instrument while the broker's heartbeats and the
other instrument go on. Gateway v0.2.0 says nothing about it: no frame of any kind, and /health
`connected` with nothing stale. The monitor must name the muted instrument and never the other,
call every instrument muted a frozen feed, and clear both at the first tick after the unmute.
Each behaviour is checked against a raw client's frames and the gateway's /health (polled every
HEALTH_POLL seconds during the mutes), not only against the monitor.

Fast, for `make test`: the in-process monitor calls FLOOR = 3 s without a tick a silence
(`silence_floor_seconds=3`, `silence_multiple=2`: the threshold is max(3 s, 2 x the learned 1 s
interval) = 3 s, where the defaults give max(60 s, 20 x 1 s) = 60 s), so the module takes about
30 s. The figure at default settings, with alerting, is test_feed_default_settings.py's.

Two scenarios, each run once by a module fixture, each with its own fake broker and gateway (the
fake's token lasts ~19 min); the tests check one thing each:

- saxo-sim: EURUSD muted, then unmuted; then both muted (a frozen feed), then both unmuted;
- saxo-live (GATEWAY_MODE=live against the loopback fake): Saxo quotes say `"provider":"saxo"`
  for saxo-sim and saxo-live alike; the monitor files them under the platform /health lists.

Times (mute -> named silent, unmute -> cleared, ...) are printed by test_feed_saxo_figures
(`pytest -s`) and written to feed-saxo-figures.json under pytest's base temporary directory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator, Callable, MutableMapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from gateway_support import (
    API_KEY,
    FakeSaxo,
    Frame,
    RawClient,
    RealGateway,
    gateway_binary,
    http_get,
    monitor_settings,
    require_fake_saxo,
    saxo_env,
    wait_until,
)
from structlog.testing import capture_logs
from support import FAST, Scrape, sample, scrape

from monitor import protocol
from monitor.app import Monitor
from monitor.config import load

FAKE_SAXO = require_fake_saxo()
pytestmark = pytest.mark.timeout(150)

FLOOR = 3.0
TICK = 0.5  # fake_saxo.py's --tick-secs
MULTIPLE = 2.0
EURUSD, GBPUSD = "EURUSD:FxSpot", "GBPUSD:FxSpot"
DETECT_TIMEOUT = FLOOR + 4.0  # the threshold, plus the last tick's 0.5 s, a 1 s sweep and slack
CLEAR_TIMEOUT = 4.0
HOLD = 2.0  # how long a silence is watched once named (the other instrument must stay unnamed)
IN_FLIGHT = 0.3  # frames the gateway had already taken from the fake when the mute applied
CLEARED_AFTER_TICK = 1.5  # the first tick is merged at the next sweep (1 s), plus polling
POLL = 0.05
HEALTH_POLL = 0.5
FEED_SERIES = (
    "gateway_monitor_instruments", "gateway_monitor_instrument_last_tick_timestamp_seconds",
    "gateway_monitor_instrument_silent_since_timestamp_seconds", "gateway_monitor_silent_instruments",
    "gateway_monitor_feed_frozen", "gateway_monitor_silence_duration_seconds",
    "gateway_monitor_quote_age_seconds",
)
SILENT_SINCE = "gateway_monitor_instrument_silent_since_timestamp_seconds"
FIGURES: dict[str, Any] = {}
Test = Callable[[frozenset[tuple[str, str]], frozenset[str]], bool]
"""A predicate of the monitor's (silent instruments, frozen brokers)."""


@dataclass
class Watch:
    """What the monitor says, polled every POLL seconds: its silent instruments and frozen brokers,
    kept at every change with the monotonic time."""

    mon: Monitor
    changes: list[tuple[float, frozenset[tuple[str, str]], frozenset[str]]] = field(default_factory=list)
    brokers: set[str] = field(default_factory=set)
    """Every broker label of an instrument row, ever."""

    def now(self) -> tuple[frozenset[tuple[str, str]], frozenset[str]]:
        assert self.mon.feed is not None
        rows = self.mon.feed.rows()
        self.brokers |= {broker for broker, *_ in rows}
        silent = frozenset((broker, symbol) for broker, symbol, *_, since in rows if since is not None)
        frozen = frozenset(b for b in {broker for broker, *_ in rows}
                           if sample(self.mon, "gateway_monitor_feed_frozen", broker=b) == 1)
        return silent, frozen

    async def run(self) -> None:
        last = None
        while True:
            state = self.now()
            if state != last:
                self.changes.append((time.monotonic(), *state))
                last = state
            await asyncio.sleep(POLL)

    def first(self, after: float, test: Test) -> float | None:
        """The first time, from `after` on, when test(silent, frozen) held."""
        before = [change for change in self.changes if change[0] <= after]
        if before and test(*before[-1][1:]):
            return after
        return next((at for at, silent, frozen in self.changes if at > after and test(silent, frozen)), None)

    def ever(self, start: float, end: float) -> set[tuple[str, str]]:
        """Every instrument named silent at some time in [start, end]."""
        before = [silent for at, silent, _ in self.changes if at <= start]
        named = set(before[-1]) if before else set()
        for at, silent, _ in self.changes:
            if start < at <= end:
                named |= silent
        return named


@dataclass
class Rig:
    """Fake broker, gateway, raw client, in-process monitor, its watch and the captured log lines."""

    workdir: Path
    broker: str
    fake: FakeSaxo = field(init=False)
    gateway: RealGateway = field(init=False)
    raw: RawClient = field(init=False)
    monitor: Monitor = field(init=False)
    watch: Watch = field(init=False)
    logs: list[MutableMapping[str, Any]] = field(default_factory=list)
    healths: list[tuple[float, dict[str, Any]]] = field(default_factory=list)

    async def ctl(self, action: str) -> float:
        """POST /_ctl/<action> to the fake; the monotonic time just before (when it applies)."""
        at = time.monotonic()
        await self.fake.ctl(action)
        return at

    async def silent_at(self, start: float, symbol: str) -> float:
        """Seconds from `start` until the monitor names `symbol` silent."""
        await wait_until(lambda: self.watch.first(start, lambda s, _: (self.broker, symbol) in s),
                         DETECT_TIMEOUT, f"{symbol} named silent")
        at = self.watch.first(start, lambda s, _: (self.broker, symbol) in s)
        assert at is not None
        return at - start

    async def cleared_at(self, start: float, test: Test, what: str) -> float:
        """Seconds from `start` until test(silent, frozen) holds."""
        await wait_until(lambda: self.watch.first(start, test), CLEAR_TIMEOUT, what)
        at = self.watch.first(start, test)
        assert at is not None
        return at - start

    def frames(self, start: float, end: float) -> list[Frame]:
        """The raw client's frames received in [start, end]."""
        return [f for f in self.raw.frames if start <= f.received <= end]

    def first_tick(self, symbol: str, after: float) -> float:
        """When the raw client received `symbol`'s first quote after `after`."""
        frame = self.raw.find(lambda f: f.received > after and f.type == "quote"
                              and f.data["quote"]["symbol"] == symbol)
        assert frame is not None, f"no {symbol} quote after the unmute"
        return frame.received

    async def page(self) -> str:
        return (await http_get(f"http://127.0.0.1:{self.monitor.port}/"))[1]

    async def poll_health(self) -> None:
        while True:
            self.healths.append((time.monotonic(), await self.gateway.health()))
            await asyncio.sleep(HEALTH_POLL)

    def health_between(self, start: float, end: float) -> list[dict[str, Any]]:
        return [h for at, h in self.healths if start <= at <= end]


@contextlib.asynccontextmanager
async def rig(workdir: Path, broker: str, env: dict[str, str] | None = None) -> AsyncIterator[Rig]:
    """Start everything (the monitor with the short floor); stop everything on the way out."""
    r = Rig(workdir, broker)
    binary = gateway_binary()
    assert binary is not None
    r.fake = FakeSaxo(FAKE_SAXO, workdir / "fake-saxo")
    r.gateway = RealGateway(binary, workdir / "gateway", {})
    monitor: Monitor | None = None
    tasks: list[asyncio.Task[None]] = []
    try:
        with capture_logs() as logs:
            r.logs = logs
            await r.fake.start()
            r.gateway.env.update({**saxo_env(r.fake.port), **(env or {})})
            await r.gateway.start()
            r.raw = RawClient(r.gateway.url)
            await r.raw.connect()
            settings = {**FAST, "gateway_url": r.gateway.url, **monitor_settings(),
                        "silence_floor_seconds": FLOOR, "silence_multiple": MULTIPLE}
            monitor = r.monitor = Monitor(load(settings, environ={"GATEWAY_API_KEY": API_KEY}))
            await monitor.start()
            r.watch = Watch(monitor)
            tasks = [asyncio.create_task(r.watch.run()), asyncio.create_task(r.poll_health())]
            await wait_until(lambda: learned(r.monitor) == {(broker, EURUSD), (broker, GBPUSD)}, 10,
                             "both instruments tracked, their usual interval learned")
            yield r
    finally:
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        if monitor is not None:
            await monitor.stop()
        with contextlib.suppress(AttributeError):
            await r.raw.close()
        await r.gateway.stop()
        await r.fake.stop()


def learned(mon: Monitor) -> set[tuple[str, str]]:
    """(broker, symbol) of the instruments whose usual interval the monitor has learned."""
    assert mon.feed is not None
    return {(broker, symbol) for broker, symbol, _, usual, *_ in mon.feed.rows() if usual is not None}


def feed_brokers(exposition: Scrape) -> set[str]:
    """The broker label of every feed-health sample of a scrape."""
    return {dict(labels)["broker"] for (name, labels), _ in exposition.samples.items()
            if name.startswith(FEED_SERIES) and "broker" in dict(labels)}


def record(name: str, data: dict[str, Any]) -> dict[str, Any]:
    FIGURES[name] = data
    return data


# --- scenarios -----------------------------------------------------------------------------------


async def saxo_sim(workdir: Path) -> dict[str, Any]:
    broker = "saxo-sim"
    async with rig(workdir, broker) as r:
        # One instrument muted, then unmuted.
        logs0 = len(r.logs)
        durations0 = sample(r.monitor, "gateway_monitor_silence_duration_seconds_count", broker=broker) or 0
        muted = await r.ctl("ticks?on=0&symbol=EURUSD")
        detect = await r.silent_at(muted, EURUSD)
        named = time.monotonic()
        during = {"scrape": await scrape(r.monitor), "page": await r.page()}
        await asyncio.sleep(HOLD)
        unmuted = await r.ctl("ticks?on=1&symbol=EURUSD")
        clear = await r.cleared_at(unmuted, lambda s, _: not s, "EURUSD cleared")
        first_tick = r.first_tick(EURUSD, unmuted)
        one = {
            "detect_seconds": round(detect, 3),
            "unmute_to_first_tick_seconds": round(first_tick - unmuted, 3),
            "unmute_to_cleared_seconds": round(clear, 3),
            "first_tick_to_cleared_seconds": round(unmuted + clear - first_tick, 3),
            "named": sorted(r.watch.ever(muted, unmuted + clear)),
            "named_while_held": sorted(r.watch.ever(named, unmuted)),
            "frames": r.frames(muted, first_tick),
            "eurusd_after_mute": [f.received - muted for f in r.frames(muted, unmuted)
                                  if f.type == "quote" and f.data["quote"]["symbol"] == EURUSD],
            "gbpusd_quotes": sum(1 for f in r.frames(muted, unmuted)
                                 if f.type == "quote" and f.data["quote"]["symbol"] == GBPUSD),
            "muted_seconds": unmuted - muted,
            "health": r.health_between(muted, unmuted),
            "logs": r.logs[logs0:],
            "silences_observed": (sample(r.monitor, "gateway_monitor_silence_duration_seconds_count",
                                         broker=broker) or 0) - durations0,
            "silence_sum": sample(r.monitor, "gateway_monitor_silence_duration_seconds_sum", broker=broker),
            **during,
        }
        # Every instrument muted (a frozen feed), then both unmuted.
        await asyncio.sleep(1.0)
        logs1 = len(r.logs)
        first_mute = await r.ctl("ticks?on=0&symbol=EURUSD")
        frozen_from = await r.ctl("ticks?on=0&symbol=GBPUSD")
        def is_frozen(_: object, frozen: frozenset[str]) -> bool:
            return broker in frozen

        await wait_until(lambda: r.watch.first(frozen_from, is_frozen), DETECT_TIMEOUT, "frozen")
        frozen_at = r.watch.first(frozen_from, is_frozen)
        assert frozen_at is not None
        frozen_scrape = await scrape(r.monitor)
        await asyncio.sleep(HOLD)
        unfrozen_from = await r.ctl("ticks?on=1&symbol=EURUSD")
        await r.ctl("ticks?on=1&symbol=GBPUSD")
        unfreeze = await r.cleared_at(unfrozen_from, lambda _, f: not f, "unfrozen")
        clear_all = await r.cleared_at(unfrozen_from, lambda s, f: not s and not f, "every silence cleared")
        first_ticks = [r.first_tick(s, unfrozen_from) for s in (EURUSD, GBPUSD)]
        await asyncio.sleep(1.0)
        both = {
            "detect_seconds": round(frozen_at - frozen_from, 3),
            "unmute_to_unfrozen_seconds": round(unfreeze, 3),
            "unmute_to_cleared_seconds": round(clear_all, 3),
            "first_tick_to_cleared_seconds": round(unfrozen_from + clear_all - max(first_ticks), 3),
            "silent_when_frozen": sorted(s for s in frozen_scrape.samples if s[0] == SILENT_SINCE),
            "scrape": frozen_scrape,
            "frames": r.frames(frozen_from + IN_FLIGHT, unfrozen_from),
            "health": r.health_between(first_mute, unfrozen_from),
            "logs": r.logs[logs1:],
            "final": await scrape(r.monitor),
        }
        return {"one": one, "both": both, "brokers": set(r.watch.brokers)}


async def saxo_live(workdir: Path) -> dict[str, Any]:
    broker = "saxo-live"
    subscriptions = [{"platform": broker, "instrument": s, "events": ["quote"]} for s in (EURUSD, GBPUSD)]
    env = {"GATEWAY_MODE": "live", "SUBSCRIPTIONS": json.dumps(subscriptions)}
    async with rig(workdir, broker, env) as r:
        await asyncio.sleep(1.5)  # past the sweep that saw /health's platforms
        settled = await scrape(r.monitor)
        muted = await r.ctl("ticks?on=0&symbol=EURUSD")
        detect = await r.silent_at(muted, EURUSD)
        unmuted = await r.ctl("ticks?on=1&symbol=EURUSD")
        await r.cleared_at(unmuted, lambda s, _: not s, "EURUSD cleared")
        health = await r.gateway.health()
        return {"settled": settled, "detect_seconds": round(detect, 3), "health": health,
                "named": sorted(r.watch.ever(muted, time.monotonic())), "brokers": set(r.watch.brokers),
                "final": await scrape(r.monitor)}


@pytest.fixture(scope="module")
def sim(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The saxo-sim scenario, run once."""
    return asyncio.run(saxo_sim(tmp_path_factory.mktemp("feed-saxo-sim")))


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """The saxo-live scenario, run once."""
    return asyncio.run(saxo_live(tmp_path_factory.mktemp("feed-saxo-live")))


# --- tests ---------------------------------------------------------------------------------------


def assert_green(healths: list[dict[str, Any]], broker: str = "saxo-sim") -> None:
    """Every /health answer: connected, the broker connected, nothing stale."""
    assert healths, "no /health answer during the mute"
    for health in healths:
        assert health["status"] == "connected", health
        providers = [(p["platform"], p["connected"], p.get("stale_instruments", []))
                     for p in health["providers"]]
        assert providers == [(broker, True, [])], health


def test_one_muted_instrument_is_named_and_the_other_never_is(sim: dict[str, Any]) -> None:
    one = sim["one"]
    assert one["named"] == [("saxo-sim", EURUSD)], one["named"]
    assert one["named_while_held"] == [("saxo-sim", EURUSD)]
    # Counted from the last tick, up to one tick interval before the mute.
    assert FLOOR - TICK <= one["detect_seconds"] <= DETECT_TIMEOUT, one["detect_seconds"]
    m: Scrape = one["scrape"]
    silent = {dict(labels)["symbol"]: dict(labels)["severity"] for (name, labels) in m.samples
              if name == SILENT_SINCE}
    assert silent == {EURUSD: "warning"}
    assert m.value("gateway_monitor_silent_instruments", broker="saxo-sim") == 1
    assert m.value("gateway_monitor_feed_frozen", broker="saxo-sim") == 0
    assert m.value("gateway_monitor_instruments", broker="saxo-sim") == 2


def test_the_gateway_says_nothing_about_one_muted_instrument(sim: dict[str, Any]) -> None:
    one = sim["one"]
    kinds = {f.type for f in one["frames"]}
    assert kinds == {"quote"}, [f.data for f in one["frames"] if f.type != "quote"][:5]
    assert all(at <= IN_FLIGHT for at in one["eurusd_after_mute"]), one["eurusd_after_mute"]
    assert one["gbpusd_quotes"] >= 2 * (one["muted_seconds"] - 1)  # every 0.5 s, all along
    assert_green(one["health"])


def test_one_muted_instrument_logs_one_silent_and_one_resumed_line(sim: dict[str, Any]) -> None:
    one = sim["one"]
    silent = [e for e in one["logs"] if e["event"] == "monitor.feed.instrument_silent"]
    resumed = [e for e in one["logs"] if e["event"] == "monitor.feed.instrument_resumed"]
    assert [(e["broker"], e["symbol"], e["log_level"], e["severity"]) for e in silent] \
        == [("saxo-sim", EURUSD, "warning", "warning")]
    assert silent[0]["threshold_seconds"] == FLOOR
    assert silent[0]["usual_interval_seconds"] == pytest.approx(1, abs=0.1)
    assert FLOOR < silent[0]["silent_seconds"] <= FLOOR + 1.5
    assert [(e["broker"], e["symbol"], e["reason"]) for e in resumed] == [("saxo-sim", EURUSD, "tick")]
    # From the last tick before the mute to the first after: the mute, give or take a tick.
    assert one["muted_seconds"] - 0.5 <= resumed[0]["silent_seconds"] <= one["muted_seconds"] + 1.5
    assert not [e for e in one["logs"] if e["event"] in ("monitor.feed.frozen", "monitor.feed.unfrozen")]


def test_the_silence_is_observed_in_the_histogram_on_recovery(sim: dict[str, Any]) -> None:
    one = sim["one"]
    assert one["silences_observed"] == 1
    (resumed,) = [e for e in one["logs"] if e["event"] == "monitor.feed.instrument_resumed"]
    assert one["silence_sum"] == pytest.approx(resumed["silent_seconds"], abs=0.01)


def test_the_status_page_lists_the_silent_instrument_first(sim: dict[str, Any]) -> None:
    page = sim["one"]["page"]
    assert "Instruments (2, 1 silent)" in page
    section = page.split("Instruments (2, 1 silent)", 1)[1].split("<h2>", 1)[0]
    assert section.index(EURUSD) < section.index(GBPUSD)
    assert section.count("silent since") == 1 and section.count("ticking") == 1


def test_every_instrument_muted_is_one_frozen_feed(sim: dict[str, Any]) -> None:
    both = sim["both"]
    m: Scrape = both["scrape"]
    assert m.value("gateway_monitor_feed_frozen", broker="saxo-sim") == 1
    assert m.value("gateway_monitor_silent_instruments", broker="saxo-sim") == 2
    assert [dict(labels)["symbol"] for _, labels in both["silent_when_frozen"]] == [EURUSD, GBPUSD]
    frozen = [e for e in both["logs"] if e["event"] == "monitor.feed.frozen"]
    assert [(e["broker"], e["instruments"], e["log_level"]) for e in frozen] == [("saxo-sim", 2, "error")]
    assert FLOOR - TICK <= both["detect_seconds"] <= DETECT_TIMEOUT, both["detect_seconds"]


def test_the_gateway_says_nothing_about_a_frozen_feed(sim: dict[str, Any]) -> None:
    both = sim["both"]
    assert both["frames"] == [], [f.data for f in both["frames"]][:5]
    assert_green(both["health"])


@pytest.mark.parametrize("phase", ["one", "both"])
def test_recovery_clears_at_the_first_tick(sim: dict[str, Any], phase: str) -> None:
    figures = sim[phase]
    assert figures["first_tick_to_cleared_seconds"] <= CLEARED_AFTER_TICK, figures
    if phase == "both":
        unfrozen = [e for e in figures["logs"] if e["event"] == "monitor.feed.unfrozen"]
        assert [e["broker"] for e in unfrozen] == ["saxo-sim"]
        resumed = [e for e in figures["logs"] if e["event"] == "monitor.feed.instrument_resumed"]
        assert sorted((e["symbol"], e["reason"]) for e in resumed) == [(EURUSD, "tick"), (GBPUSD, "tick")]
        final: Scrape = figures["final"]
        assert final.value("gateway_monitor_feed_frozen", broker="saxo-sim") == 0
        assert final.value("gateway_monitor_silent_instruments", broker="saxo-sim") == 0
        assert "gateway_monitor_instrument_silent_since_timestamp_seconds{" not in final.text


def test_saxo_quotes_are_filed_under_the_platform_health_lists(sim: dict[str, Any]) -> None:
    assert sim["brokers"] == {"saxo-sim"}
    assert feed_brokers(sim["both"]["final"]) == {"saxo-sim"}
    assert f'broker="{protocol.OTHER}"' not in sim["both"]["final"].text


def test_saxo_live_quotes_are_filed_under_saxo_live_only(live: dict[str, Any]) -> None:
    assert [p["platform"] for p in live["health"]["providers"]] == ["saxo-live"]
    assert live["brokers"] == {"saxo-live"}
    # Quotes sampled before the first /health answer must not leave a saxo-sim series behind.
    assert feed_brokers(live["settled"]) == {"saxo-live"}, sorted(feed_brokers(live["settled"]))
    assert feed_brokers(live["final"]) == {"saxo-live"}
    assert (live["final"].value("gateway_monitor_quote_age_seconds_count", broker="saxo-live") or 0) > 0
    assert live["named"] == [("saxo-live", EURUSD)]


def test_feed_saxo_figures(sim: dict[str, Any], live: dict[str, Any],
                           tmp_path_factory: pytest.TempPathFactory) -> None:
    """Print and keep the measured figures (pytest -s shows them)."""
    one, both = sim["one"], sim["both"]
    figures = record("feed-saxo", {
        "threshold_seconds (floor 3 s, multiple 2, usual interval 1 s)": FLOOR,
        "one muted: mute -> named silent (s)": one["detect_seconds"],
        "one muted: unmute -> first EURUSD quote at the raw client (s)": one["unmute_to_first_tick_seconds"],
        "one muted: unmute -> silence cleared (s)": one["unmute_to_cleared_seconds"],
        "one muted: first quote -> silence cleared (s)": one["first_tick_to_cleared_seconds"],
        "both muted: second mute -> feed frozen (s)": both["detect_seconds"],
        "both muted: unmute -> unfrozen (s)": both["unmute_to_unfrozen_seconds"],
        "both muted: unmute -> every silence cleared (s)": both["unmute_to_cleared_seconds"],
        "saxo-live: mute -> named silent (s)": live["detect_seconds"],
        "frames other than quotes while muted": (sum(1 for f in one["frames"] if f.type != "quote")
                                                 + len(both["frames"])),
        "/health answers while muted (all connected, nothing stale)": (len(one["health"])
                                                                       + len(both["health"])),
    })
    path = tmp_path_factory.getbasetemp() / "feed-saxo-figures.json"
    path.write_text(json.dumps(figures, indent=2), encoding="utf-8")
    print(f"\nfeed health against the real gateway (Saxo + fake_saxo.py) ({path}):")
    for name, value in figures.items():
        print(f"  {name}: {value}")
    assert all(v is not None for v in figures.values()), figures
