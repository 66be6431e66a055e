"""Feed health: an instrument gone quiet, a feed frozen behind a live connection, late quotes.

The gateway marks an instrument stale only when its broker socket drops; it has no timer. The
monitor receives every market-data frame, so it can tell what the gateway cannot:

- The frame path (monitor/stream.py) hands every batch of frames to `read()`, which stores
  `ticks[key] = arrival time`, where `key` is the raw bytes `SYMBOL","provider":"PROVIDER`
  cut out of a quote or candle: byte operations only, no JSON parse. Past FULL_READ_PER_SECOND
  frames in a second it reads one batch in SAMPLE_STRIDE, and no silence is then claimed, nor
  interval learned, across frames it may have missed.
- Once a second, `sweep()` takes that dict, resolves each new key to (broker, symbol), learns
  each instrument's usual interval between ticks and decides which instruments are silent.
- Quotes are sampled for their age at arrival (monitor/quote_age.py).

What "silent" means (README, "Feed health"): an instrument is silent when it has not ticked
for longer than its threshold, max(floor, multiple x usual interval), while the monitor's socket
is up, its broker is up and the gateway does not already report it stale. The clock of an
instrument restarts whenever it becomes eligible again (a new connection, its broker back up,
its FRESH), so no silence is carried over from a time the monitor could not expect ticks.

A frozen feed that ticks again restarts, in the same sweep, the clocks of the instruments that were
still ticking when it stopped: they resume one by one over the next moments, and a scrape between
the first tick and theirs would otherwise show the feed thawed and them silent, unmuted by the
frozen feed's alert. One still silent after its threshold is named then. An instrument already
silent before the feed stopped stays silent.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from . import protocol
from .decode import CANDLE_HEAD, CANDLE_KEY_END, CANDLE_PREFIX, QUOTE_HEAD, QUOTE_KEY_END, QUOTE_PREFIX
from .feed_config import Subscription
from .gateway_state import UP, GatewayState, symbol_label
from .instrument import SWEEP_SECONDS, FeedSettings, Instrument, key_of, platform_candidates, split_key
from .metrics import Children, Metrics
from .quote_age import QuoteAges

log = structlog.get_logger("monitor.feed")

FULL_READ_PER_SECOND = 20_000
"""Frames read for their instrument each second before feed health samples. Reading a quote's
instrument costs ~0.4 µs (a find, a slice, a dict store): 20,000 a second is under 1% of a core,
ten times what a gateway's subscriptions send (README, "Feed health"), far below a flood."""
SAMPLE_STRIDE = 32
"""Past the budget, one batch is read and the next frames (SAMPLE_STRIDE - 1 times as many) are
skipped, until the next sweep: one frame in this many is read."""
BACKTEST = "tektii"
"""The backtest engine's clock is not the wall clock: its instruments are never silent or late."""


class FeedHealth:
    """Per-instrument liveness, learned intervals, silences, frozen feeds and quote ages."""

    def __init__(
        self,
        metrics: Metrics,
        state: GatewayState,
        settings: FeedSettings,
        connected: Callable[[], bool],
        *,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._m = metrics
        self._state = state
        self._settings = settings
        self._connected = connected
        self._wall = wall
        self.ticks: dict[bytes, float] = {}
        """Filled by the frame path: raw key -> arrival time of its last frame."""
        self.ticks_limit = 4 * max(settings.max_instruments, 100)
        """Past this many keys the frame path merges at once (a flood of new symbols)."""
        self.instruments: dict[tuple[str, str], Instrument] = {}
        self._by_key: dict[bytes, Instrument | None] = {}
        self._known: frozenset[str] = frozenset()
        self._frozen: dict[str, float] = {}
        """Frozen brokers -> when the freeze was decided."""
        self._stopped: dict[str, float] = {}
        """Frozen brokers -> when their feed stopped: the latest start of their silences."""
        self._brokers: set[str] = set()
        self._silence_duration = Children(metrics.silence_duration)
        self.quote_ages = QuoteAges(metrics, self._observed_broker)
        self._ambiguous: set[str] = set()
        self.budget = FULL_READ_PER_SECOND
        self.skip = 0
        """Frames the frame path passes by before it calls read() again (past the budget)."""
        self.sampled_at = -math.inf
        """The last moment frames may have gone unread: no silence is claimed across it."""
        self._skipping = False
        self._unread = 0
        self._guessed: set[str] = set()
        """Platforms chosen for an ambiguous provider before /health named any (saxo -> saxo-sim)."""
        self._subscribed = {(s.platform, symbol_label(s.instrument)) for s in settings.subscriptions}
        for sub in settings.subscriptions:
            self._expect(sub)

    # --- the frame path ---------------------------------------------------------------------

    def read(self, frames: list[bytes], now: float) -> None:
        """Stamp every tick of `frames` (a batch that arrived at `now`); past the budget, set
        `skip` so that only one batch in SAMPLE_STRIDE is read until the next sweep."""
        if self._skipping:
            self.sampled_at = now  # frames went by unread until this batch
        if now >= self.quote_ages.next_sample and frames[0].startswith(QUOTE_HEAD):
            self.quote_ages.sample(frames[0], now)
        ticks = self.ticks
        for data in frames:
            if data.startswith(QUOTE_HEAD):
                end = data.find(QUOTE_KEY_END, 35)
                if end > 0:
                    ticks[data[35:end]] = now
                    continue
            elif data.startswith(CANDLE_HEAD):
                end = data.find(CANDLE_KEY_END, 34)
                if end > 0:
                    ticks[data[34:end]] = now
                    continue
            if data.startswith((QUOTE_PREFIX, CANDLE_PREFIX)):  # not the usual shape: parsed
                self.tick_frame(data, now)
        if len(ticks) > self.ticks_limit:
            self.merge()
        self.budget -= len(frames)
        self._skipping = self.budget < 0
        self.skip = (SAMPLE_STRIDE - 1) * len(frames) if self._skipping else 0
        self._unread += self.skip

    def _refill(self, now: float) -> None:
        """A new second: every frame is read again, up to the budget."""
        if self._skipping:
            self.sampled_at = now
            self._unread -= self.skip  # granted, not yet passed by
        if self._unread:
            self._m.feed_frames_unread.inc(self._unread)
        self.budget, self.skip, self._skipping, self._unread = FULL_READ_PER_SECOND, 0, False, 0

    def tick_frame(self, data: bytes, now: float) -> None:
        """A quote or candle not in the gateway's usual shape: parsed for its instrument."""
        try:
            obj = orjson.loads(data)
        except orjson.JSONDecodeError:
            return  # counted as it is by the frame path
        if isinstance(obj, dict):
            self.tick_object(str(obj.get("type")), obj, now)

    def tick_object(self, kind: str, obj: dict[str, Any], now: float) -> None:
        """A quote or candle that the frame path had to parse (not in the gateway's usual shape)."""
        body = obj.get("quote" if kind == "quote" else "bar" if kind == "candle" else "")
        if isinstance(body, dict):
            symbol, provider = body.get("symbol"), body.get("provider")
            if isinstance(symbol, str) and isinstance(provider, str):
                self.ticks[key_of(symbol, provider)] = now

    # --- connection -------------------------------------------------------------------------

    def connection_opened(self) -> None:
        """A new connection restarts every clock: nothing is silent because of a dead socket."""
        now = self._wall()
        for inst in self.instruments.values():
            self._resume(inst, now, "connection_reset")
            inst.eligible_since = None
        self._sync_frozen(now, set())

    # --- once a second ----------------------------------------------------------------------

    async def run(self) -> None:
        """Sweep every SWEEP_SECONDS until cancelled; a bug costs one sweep, never the task."""
        while True:
            await asyncio.sleep(SWEEP_SECONDS)
            try:
                self.sweep()
            except Exception:
                log.exception("monitor.feed.sweep_failed")

    def sweep(self) -> None:
        """Take the ticks, decide silences and frozen feeds, export the counts."""
        now = self._wall()
        self._refill(now)
        known = frozenset(self._state.brokers)
        if known != self._known:
            self._known = known
            self._relabel()
        self.merge()
        connected = self._connected()
        silent: dict[str, int] = {}
        eligible: dict[str, int] = {}
        for inst in self.instruments.values():
            why_not = None if connected else "monitor_disconnected"
            why_not = why_not or self._ineligible(inst)
            if why_not is not None:
                inst.eligible_since = None
                self._resume(inst, now, why_not)
                continue
            if inst.eligible_since is None:
                inst.eligible_since = now
            eligible[inst.broker] = eligible.get(inst.broker, 0) + 1
            if inst.silent_since is None:
                # Counted from the last tick, or from when a tick became expected, or from the
                # last moment frames went unread: only a window in which every frame was read
                # proves the absence of ticks.
                since = max(inst.last_tick or -math.inf, inst.eligible_since, self.sampled_at)
                if now - since > inst.threshold():
                    self._silent(inst, since, now)
            if inst.silent_since is not None:
                silent[inst.broker] = silent.get(inst.broker, 0) + 1
        frozen = {b for b, n in eligible.items() if silent.get(b, 0) == n}
        for broker in (self._frozen.keys() - frozen) & silent.keys() & eligible.keys():
            # Thawed by a tick (not ended by the broker or the socket), some still silent.
            silent[broker] -= self._thaw(broker, now)
        self._sync_frozen(now, frozen)
        self._export(silent)

    def merge(self) -> None:
        """Fold the frame path's ticks into the instruments (a sweep does it first)."""
        ticks, self.ticks = self.ticks, {}
        by_key = self._by_key
        for key, when in ticks.items():
            inst = by_key.get(key)
            if inst is None and key not in by_key:  # new; None means refused (counted once)
                inst = by_key[key] = self._resolve(key)
            if inst is not None:
                self._tick(inst, when)
        if len(self._by_key) > self.ticks_limit:
            self._by_key.clear()  # keys that vary (a field the key should not have) re-resolve

    def _tick(self, inst: Instrument, when: float) -> None:
        last = inst.last_tick
        if last is not None and when <= last:
            return
        # Only a gap in which a tick was expected, and every frame read, teaches the interval.
        if (last is not None and inst.eligible_since is not None and last >= inst.eligible_since
                and last >= self.sampled_at):
            inst.learn(when - last)
        inst.last_tick = when
        self._m.instrument_last_tick.set((inst.broker, inst.symbol), when)
        if inst.silent_since is not None:
            self._silence_duration(inst.broker).observe(when - inst.silent_since)
            self._resume(inst, when, "tick")

    def _ineligible(self, inst: Instrument) -> str | None:
        """Why no tick is expected of the instrument now, or None when one is."""
        if not inst.rule.enabled or inst.broker == BACKTEST:
            return "disabled"
        view = self._state.brokers.get(inst.broker)
        if view is None or view.state != UP:
            return "broker_not_up"  # the broker's own alerts cover it
        if inst.symbol in self._state.stale.get(inst.broker, ()):
            return "gateway_reports_stale"  # the staleness alerts cover it
        return None

    def _silent(self, inst: Instrument, since: float, now: float) -> None:
        inst.silent_since = since
        self._m.instrument_silent_since.set((inst.broker, inst.symbol, inst.rule.severity), since)
        usual = inst.usual_interval
        fields = {"broker": inst.broker, "symbol": inst.symbol, "last_tick": _iso(inst.last_tick),
                  "silent_seconds": round(now - since, 3), "threshold_seconds": round(inst.threshold(), 3),
                  "usual_interval_seconds": None if usual is None else round(usual, 3),
                  "severity": inst.rule.severity}
        if inst.rule.severity == "critical":
            log.error("monitor.feed.instrument_silent", **fields)
        else:
            log.warning("monitor.feed.instrument_silent", **fields)

    def _resume(self, inst: Instrument, now: float, reason: str) -> None:
        if inst.silent_since is None:
            return
        log.info("monitor.feed.instrument_resumed", broker=inst.broker, symbol=inst.symbol,
                 silent_seconds=round(now - inst.silent_since, 3), reason=reason)
        self._m.instrument_silent_since.remove((inst.broker, inst.symbol, inst.rule.severity))
        inst.silent_since = None

    def _thaw(self, broker: str, now: float) -> int:
        """Restart the clocks of `broker`'s silent instruments that were ticking when its feed
        stopped; return how many."""
        stopped = self._stopped[broker]
        restarted = 0
        for inst in self.instruments.values():
            if (inst.broker == broker and inst.silent_since is not None
                    and stopped - inst.silent_since <= inst.threshold()):
                self._resume(inst, now, "feed_resumed")
                inst.eligible_since = now
                restarted += 1
        return restarted

    def _sync_frozen(self, now: float, frozen: set[str]) -> None:
        for broker in frozen - self._frozen.keys():
            self._frozen[broker] = now
            mine = [inst for inst in self.instruments.values() if inst.broker == broker]
            self._stopped[broker] = max(inst.silent_since or -math.inf for inst in mine)
            log.error("monitor.feed.frozen", broker=broker, instruments=len(mine),
                      hint="every instrument of the broker is silent while the broker is up")
        for broker in self._frozen.keys() - frozen:
            del self._stopped[broker]
            log.info("monitor.feed.unfrozen", broker=broker,
                     frozen_seconds=round(now - self._frozen.pop(broker), 3))

    def _export(self, silent: dict[str, int]) -> None:
        tracked: dict[str, int] = {}
        for inst in self.instruments.values():
            tracked[inst.broker] = tracked.get(inst.broker, 0) + 1
        for gone in self._brokers - tracked.keys():
            for metric in (self._m.instruments, self._m.silent_instruments, self._m.feed_frozen):
                metric.remove(gone)
        self._brokers = set(tracked)
        for broker, count in tracked.items():
            self._m.instruments.labels(broker).set(count)
            self._m.silent_instruments.labels(broker).set(silent.get(broker, 0))
            self._m.feed_frozen.labels(broker).set(1 if broker in self._frozen else 0)

    # --- instruments --------------------------------------------------------------------------

    def _expect(self, sub: Subscription) -> None:
        symbol = symbol_label(sub.instrument)
        inst = self.instruments.get((sub.platform, symbol))
        if inst is not None:
            inst.min_interval = min(inst.min_interval, sub.min_interval)
        elif self._room():
            self.instruments[(sub.platform, symbol)] = Instrument(
                sub.platform, symbol, None, self._settings.rule(sub.platform, symbol), sub.min_interval)
        else:
            self._m.symbol_series_dropped.inc()

    def _resolve(self, key: bytes) -> Instrument | None:
        """The instrument of a raw key, created when new; None when it cannot be tracked."""
        parsed = split_key(key)
        if parsed is None:
            return None
        symbol, provider = symbol_label(parsed[0]), parsed[1]
        broker = self._broker_of(provider, symbol)
        inst = self.instruments.get((broker, symbol))
        if inst is None:
            if not self._room():
                self._m.symbol_series_dropped.inc()
                return None
            inst = self.instruments[(broker, symbol)] = Instrument(
                broker, symbol, provider, self._settings.rule(broker, symbol))
        inst.provider = provider
        return inst

    def _room(self) -> bool:
        return len(self.instruments) < self._settings.max_instruments

    def _broker_of(self, provider: str, symbol: str) -> str:
        """The platform id of a quote's provider: from SUBSCRIPTIONS, else the gateway's brokers.

        Where neither decides (saxo, with both saxo-sim and saxo-live, or none known yet), the
        gateway's own reading of the short name (saxo -> saxo-sim) is used; known platforms
        are checked again whenever they change.
        """
        candidates = platform_candidates(provider)
        if not candidates:
            return protocol.OTHER
        if len(candidates) == 1:
            return candidates[0]
        for narrowed in ([p for p in candidates if (p, symbol) in self._subscribed],
                         [p for p in candidates if p in self._known]):
            if len(narrowed) == 1:
                return narrowed[0]
        chosen = protocol.normalise_broker(provider)
        if not self._known:  # none known yet: relabelled later
            self._guessed.add(chosen)
        elif provider not in self._ambiguous:
            self._ambiguous.add(provider)
            log.warning("monitor.feed.provider_ambiguous", provider=provider, candidates=list(candidates),
                        known=sorted(self._known), chosen=chosen,
                        hint="give the monitor SUBSCRIPTIONS to name each instrument's platform")
        return chosen

    def _observed_broker(self, provider: str, symbol: str) -> str | None:
        """The platform a quote's age is filed under; None for the backtest engine's."""
        broker = self._broker_of(provider, symbol)
        return None if broker == BACKTEST else broker

    def _relabel(self) -> None:
        """The gateway's platforms changed: instruments named by an ambiguous provider may move.

        Quote ages observed under a guessed platform that /health does not list are dropped (a
        saxo-live gateway's first quotes, sampled before its first /health answer).
        """
        self._by_key.clear()
        self.quote_ages.forget(self._guessed - self._known)
        self._guessed.clear()
        now = self._wall()
        for (broker, symbol), inst in list(self.instruments.items()):
            if inst.provider is None or self._broker_of(inst.provider, symbol) == broker:
                continue
            self._resume(inst, now, "relabelled")
            self._m.instrument_last_tick.remove((broker, symbol))
            del self.instruments[(broker, symbol)]  # its next tick files it under the right broker

    def rows(self) -> list[tuple[str, str, float | None, float | None, float, float | None]]:
        """(broker, symbol, last tick, usual interval, threshold, silent since) per instrument."""
        return [(i.broker, i.symbol, i.last_tick, i.usual_interval, i.threshold(), i.silent_since)
                for i in self.instruments.values()]


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()

