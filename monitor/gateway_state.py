"""What the monitor believes about the gateway's brokers and stale symbols, kept true now.

This is the one owner of that belief: the frame path and the /health probe both feed it,
and the metrics and the status page read only it. The two sources differ:

- frames arrive at once, but only while the monitor's socket is up, and a new connection
  replays nothing (no broker state; staleness only as a STALE snapshot, and only when
  something is stale);
- /health is the gateway's current truth per provider (`connected`, `stale_instruments`),
  but only as fresh as the last probe.

So (README, "What the monitor believes, and why"):

1. A frame applies at once: a BROKER_DISCONNECTED shows before the next probe.
2. A new connection discards the staleness of the previous one (the gateway's snapshot
   re-establishes what is still stale) and leaves every broker unconfirmed: the first /health
   answer requested after the connect replaces its state and stale symbols.
3. A /health answer requested before a broker's latest frame is older than that frame and is
   not used for that broker.
4. When /health and the frames have disagreed about a broker for longer than the grace
   period, /health wins: a frame was missed (the gateway drops messages to a slow client).
5. A failed broker (BROKER_CONNECTION_FAILED) is a broker that is not connected: it stays
   failed while /health says not connected, and clears when /health (or a frame) says
   connected, e.g. after the gateway restarted. A reconnect of the monitor never clears it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass

import structlog

from . import protocol
from .metrics import Children, Metrics
from .redaction import redact

log = structlog.get_logger("monitor.state")

UP = "up"
DISCONNECTED = "disconnected"
FAILED = "failed"
FROM_FRAME = "frame"
FROM_HEALTH = "/health"
_STATE_OF_EVENT = {
    "CONNECTED": UP,
    "BROKER_RECONNECTED": UP,
    "BROKER_DISCONNECTED": DISCONNECTED,
    "BROKER_CONNECTION_FAILED": FAILED,
}
BROKER_STATE_EVENTS = frozenset(_STATE_OF_EVENT)


@dataclass
class BrokerView:
    """One broker as the monitor believes it is now."""

    state: str
    since: float
    """Wall-clock time of the last change of `state`."""
    source: str
    """What set the state last: a frame or /health."""


@dataclass(frozen=True)
class ProviderHealth:
    """One entry of /health's `providers`."""

    broker: str
    connected: bool
    stale: tuple[str, ...]


class GatewayState:
    """Broker states and stale symbols, reconciled between frames and /health."""

    def __init__(
        self,
        metrics: Metrics,
        max_symbol_series: int,
        grace_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
    ) -> None:
        self._m = metrics
        self._broker_up = Children(metrics.broker_up)
        self._broker_failed = Children(metrics.broker_connection_failed)
        self._stale_symbols = Children(metrics.stale_symbols)
        self._stale_duration = Children(metrics.stale_duration)
        self._max_symbols = max_symbol_series
        self._grace = grace_seconds
        self._clock = clock
        self._wall = wall
        self.brokers: dict[str, BrokerView] = {}
        # broker -> symbol -> stale since (Unix time); bounded by max_symbol_series in total.
        self.stale: dict[str, dict[str, float]] = {}
        self._tracked = 0
        self._connected_at = -math.inf
        self._last_frame: dict[str, float] = {}
        self._unconfirmed: set[str] = set()
        self._disagree_since: dict[str, float] = {}

    # --- the frame path ---------------------------------------------------------------------

    def connection_opened(self) -> None:
        """A new connection: forget its predecessor's staleness, doubt its broker states."""
        self._connected_at = self._clock()
        discarded = sum(len(symbols) for symbols in self.stale.values())
        for broker in list(self.stale):
            self._set_stale(broker, {})
        self._unconfirmed = set(self.brokers)
        self._disagree_since.clear()
        if discarded or self.brokers:
            log.info("monitor.state.connection_reset", stale_symbols_discarded=discarded,
                     brokers_to_confirm=sorted(self._unconfirmed))

    def broker_event(self, event: str, broker: str) -> None:
        """A connection frame naming `broker` (CONNECTED, BROKER_*)."""
        state = _STATE_OF_EVENT[event]
        view = self.brokers.get(broker)
        if state == DISCONNECTED and view is not None and view.state == FAILED:
            state = FAILED  # still given up: the later drop does not make it recoverable
        self._frame_about(broker)
        self._unconfirmed.discard(broker)  # this connection has now said what the broker is
        self._set_broker(broker, state, FROM_FRAME)

    def went_stale(self, broker: str, symbols: Iterable[str], since: float) -> None:
        """A STALE frame: `symbols` of `broker` are stale since `since` (Unix time)."""
        self._frame_about(broker)
        tracked = self.stale.setdefault(broker, {})
        for symbol in _labels(symbols):
            self._track(broker, tracked, symbol, since)
        self._stale_symbols(broker).set(len(tracked))

    def went_fresh(self, broker: str, symbols: Iterable[str], now: float) -> None:
        """A FRESH frame: `symbols` of `broker` have data again (`now` is the frame's time)."""
        self._frame_about(broker)
        tracked = self.stale.setdefault(broker, {})
        for symbol in _labels(symbols):
            if symbol in tracked:
                since = self._untrack(broker, tracked, symbol)
                self._stale_duration(broker).observe(max(0.0, now - since))
        self._stale_symbols(broker).set(len(tracked))

    # --- the probe --------------------------------------------------------------------------

    def health(self, providers: list[ProviderHealth], requested_at: float) -> None:
        """Reconcile with one /health answer whose request started at `requested_at` (monotonic).

        An empty provider list is no opinion: nothing is forgotten for it.
        """
        now = self._clock()
        after_connect = requested_at >= self._connected_at
        answer = {provider.broker: provider for provider in providers}
        for broker in (answer.keys() | self.brokers.keys()) if answer else ():
            if self._last_frame.get(broker, -math.inf) > requested_at:
                continue  # a frame arrived after the question was asked: it is newer
            provider = answer.get(broker)
            if broker not in self.brokers:
                self._follow(broker, provider, "first_seen", now)
            elif broker in self._unconfirmed:
                if after_connect:
                    self._follow(broker, provider, "new_connection", now)
            elif self._disagrees(broker, provider):
                started = self._disagree_since.setdefault(broker, now)
                if now - started >= self._grace:
                    self._follow(broker, provider, "disagreed_with_health", now)
            else:
                self._disagree_since.pop(broker, None)

    def _disagrees(self, broker: str, provider: ProviderHealth | None) -> bool:
        if provider is None:
            return True
        if (self.brokers[broker].state == UP) != provider.connected:
            return True
        return set(_labels(provider.stale)) != self.stale.get(broker, {}).keys()

    def _follow(self, broker: str, provider: ProviderHealth | None, reason: str, now: float) -> None:
        """Make `broker` what /health says (or forget it when /health does not list it)."""
        started = self._disagree_since.pop(broker, now)
        self._unconfirmed.discard(broker)
        view = self.brokers.get(broker)
        before = view.state if view else None
        stale_before = len(self.stale.get(broker, {}))
        if provider is None:
            self._forget(broker)
            log.info("monitor.state.reconciled", broker=broker, reason=reason, state_was=before,
                     state=None, stale_symbols_were=stale_before, stale_symbols=0,
                     detail="not among /health's providers")
            return
        if provider.connected:
            state = UP
        elif before == FAILED:
            state = FAILED  # given up: only a connected provider clears it
        else:
            state = DISCONNECTED
        self._set_broker(broker, state, FROM_HEALTH)
        since = self._wall() - (now - started)
        self._set_stale(broker, dict.fromkeys(_labels(provider.stale), since))
        stale_after = len(self.stale[broker])
        if before != state or stale_before != stale_after:
            log.info("monitor.state.reconciled", broker=broker, reason=reason, state_was=before,
                     state=state, stale_symbols_were=stale_before, stale_symbols=stale_after)

    def _forget(self, broker: str) -> None:
        del self.brokers[broker]
        self._set_stale(broker, {})
        del self.stale[broker]
        for series in (self._stale_symbols, self._broker_up, self._broker_failed):
            series.remove(broker)

    # --- shared mechanics -------------------------------------------------------------------

    def _frame_about(self, broker: str) -> None:
        self._last_frame[broker] = self._clock()
        self._disagree_since.pop(broker, None)

    def _set_broker(self, broker: str, state: str, source: str) -> None:
        view = self.brokers.get(broker)
        if view is None or view.state != state:
            self.brokers[broker] = BrokerView(state, self._wall(), source)
        else:
            view.source = source
        self._broker_up(broker).set(1 if state == UP else 0)
        self._broker_failed(broker).set(1 if state == FAILED else 0)

    def _set_stale(self, broker: str, wanted: dict[str, float]) -> None:
        """Make `broker`'s stale symbols exactly `wanted` (symbol -> since), keeping known ones."""
        tracked = self.stale.setdefault(broker, {})
        for symbol in [s for s in tracked if s not in wanted]:
            self._untrack(broker, tracked, symbol)
        for symbol, since in wanted.items():
            self._track(broker, tracked, symbol, since)
        self._stale_symbols(broker).set(len(tracked))

    def _track(self, broker: str, tracked: dict[str, float], symbol: str, since: float) -> None:
        if symbol in tracked:
            return
        if self._tracked >= self._max_symbols:
            self._m.symbol_series_dropped.inc()
            return
        tracked[symbol] = since
        self._tracked += 1
        self._m.symbol_stale_since.set((broker, symbol), since)

    def _untrack(self, broker: str, tracked: dict[str, float], symbol: str) -> float:
        since = tracked.pop(symbol)
        self._tracked -= 1
        self._m.symbol_stale_since.remove((broker, symbol))
        return since


SYMBOL_LABEL_MAX = 128
"""Longer symbol names are cut: a label value must not grow the exposition without bound."""


def symbol_label(symbol: str) -> str:
    """A symbol as a label value: bounded, and never carrying the API key."""
    return redact(symbol)[:SYMBOL_LABEL_MAX]


def _labels(symbols: Iterable[str]) -> list[str]:
    return [symbol_label(symbol) for symbol in symbols]


def provider_healths(providers: object) -> list[ProviderHealth]:
    """The usable entries of /health's `providers` (anything malformed is skipped)."""
    found: list[ProviderHealth] = []
    for provider in providers if isinstance(providers, list) else []:
        if not isinstance(provider, dict):
            continue
        stale = provider.get("stale_instruments")
        symbols = tuple(s for s in stale if isinstance(s, str)) if isinstance(stale, list) else ()
        found.append(ProviderHealth(protocol.normalise_broker(provider.get("platform")),
                                    provider.get("connected") is True, symbols))
    return found
