"""Turns decoded gateway events into metric updates and one structured log line each."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import orjson
import structlog

from . import protocol
from .decode import (
    ConnectionEvent,
    ErrorEvent,
    Event,
    LifecycleEvent,
    RateLimitEvent,
    StalenessEvent,
)
from .gateway_state import BROKER_STATE_EVENTS, GatewayState
from .metrics import Children, Metrics
from .redaction import redact

log = structlog.get_logger("monitor.events")

RECENT_CRITICAL_KEPT = 20
DETAILS_LOG_MAX = 4096
"""An error's `details` larger than this (as JSON) are logged as cut text."""
DETAILS_UNRENDERABLE = "<details nested too deep to log>"

_WARNING_CONNECTION_EVENTS = frozenset({"DISCONNECTING", "RECONNECTING", "BROKER_DISCONNECTED"})


class EventHandler:
    """Counts and logs every event; what events say about brokers and symbols goes to `state`."""

    def __init__(
        self, metrics: Metrics, state: GatewayState, clock: Callable[[], float] = time.time
    ) -> None:
        self._m = metrics
        self._state = state
        # Bound once, as configured now: through the module's lazy proxy a line costs ~1 µs more.
        self._log = log.bind()
        # Label look-ups of the event path, resolved once per label set.
        self._connection_events = Children(metrics.connection_events)
        self._broker_gap = Children(metrics.broker_gap)
        self._rate_limit_events = Children(metrics.rate_limit_events)
        self._error_events = Children(metrics.error_events)
        self._last_error = Children(metrics.last_error)
        self._lifecycle_events = {
            "account": Children(metrics.account_events),
            "order": Children(metrics.order_events),
            "position": Children(metrics.position_events),
        }
        self._clock = clock
        self.recent_critical: list[dict[str, Any]] = []

    def handle(self, event: Event) -> None:
        """Record one event."""
        if isinstance(event, LifecycleEvent):
            self._lifecycle(event)
        elif isinstance(event, ErrorEvent):
            self._error(event)
        elif isinstance(event, ConnectionEvent):
            self._connection(event)
        elif isinstance(event, StalenessEvent):
            self._staleness(event)
        elif isinstance(event, RateLimitEvent):
            self._rate_limit(event)

    def _remember_critical(self, name: str, **fields: Any) -> None:
        self.recent_critical.append({"event": name, "time": self._clock(), **fields})
        del self.recent_critical[:-RECENT_CRITICAL_KEPT]

    def _connection(self, ev: ConnectionEvent) -> None:
        self._connection_events(ev.event, ev.broker).inc()
        # A CONNECTED that names no broker says nothing about any one broker, so it
        # must not clear a failure (that would resolve a page for nothing). An unknown broker
        # (`other`) is kept: /health reconciles it like any other.
        if ev.event in BROKER_STATE_EVENTS and ev.broker != protocol.NO_BROKER:
            self._state.broker_event(ev.event, ev.broker)
        if ev.event == "BROKER_RECONNECTED" and ev.gap_seconds is not None:
            self._broker_gap(ev.broker).observe(ev.gap_seconds)
        name = "gateway.connection." + ev.event.lower()
        fields = {"broker": ev.broker, "error": ev.error, "gap_duration_ms": _ms(ev.gap_seconds)}
        if ev.event in protocol.CRITICAL_CONNECTION_EVENTS:
            self._remember_critical(name, broker=ev.broker)
            self._log.error(name, **fields)
        elif ev.event in _WARNING_CONNECTION_EVENTS:
            self._log.warning(name, **fields)
        else:
            self._log.info(name, **fields)

    def _staleness(self, ev: StalenessEvent) -> None:
        if ev.event == "STALE":
            self._state.went_stale(ev.broker, ev.symbols, ev.stale_since or ev.timestamp or self._clock())
            self._log.warning("gateway.data_staleness.stale", broker=ev.broker,
                              symbols=list(ev.symbols), stale_since=_iso(ev.stale_since))
        elif ev.event == "FRESH":
            self._state.went_fresh(ev.broker, ev.symbols, ev.timestamp or self._clock())
            self._log.info("gateway.data_staleness.fresh", broker=ev.broker, symbols=list(ev.symbols))
        else:
            self._log.warning("gateway.data_staleness.other", broker=ev.broker, symbols=list(ev.symbols))

    def _rate_limit(self, ev: RateLimitEvent) -> None:
        self._rate_limit_events(ev.event).inc()
        if ev.requests_remaining is not None:
            self._m.rate_limit_remaining.set(ev.requests_remaining)
        if ev.reset_at is not None:
            self._m.rate_limit_reset.set(ev.reset_at)
        self._log.warning("gateway.rate_limit." + ev.event.lower(),
                          requests_remaining=ev.requests_remaining, reset_at=_iso(ev.reset_at))

    def _error(self, ev: ErrorEvent) -> None:
        self._error_events(ev.code).inc()
        self._last_error(ev.code).set(self._clock())
        name = "gateway.error." + ev.code.lower()
        fields = {"code": ev.raw_code, "message": ev.message, "details": _loggable(ev.details)}
        if ev.code in protocol.CRITICAL_ERROR_CODES:
            self._remember_critical(name, message=redact(ev.message or ""))
            self._log.error(name, **fields)
        else:
            self._log.warning(name, **fields)

    def _lifecycle(self, ev: LifecycleEvent) -> None:
        self._lifecycle_events[ev.kind](ev.event).inc()
        name = f"gateway.{ev.kind}.{ev.event.lower()}"
        if ev.event in protocol.CRITICAL_ACCOUNT_EVENTS:
            self._remember_critical(name)
            self._log.error(name)
        elif ev.event == "MARGIN_WARNING":
            self._log.warning(name)
        else:
            # Orders and balance updates are routine and frequent.
            self._log.debug(name)


def _loggable(details: Any) -> Any:
    """`details` as it can be rendered: as received when small, else its JSON text, cut."""
    try:
        text = orjson.dumps(details)
    except (orjson.JSONEncodeError, TypeError):
        return DETAILS_UNRENDERABLE  # e.g. nested deeper than the JSON renderer recurses
    if len(text) <= DETAILS_LOG_MAX:
        return details
    return text[:DETAILS_LOG_MAX].decode("utf-8", "replace") + "…"


def _iso(timestamp: float | None) -> str | None:
    return None if timestamp is None else datetime.fromtimestamp(timestamp, UTC).isoformat()


def _ms(seconds: float | None) -> int | None:
    return None if seconds is None else round(seconds * 1000)
