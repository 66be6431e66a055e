"""The age of quotes at their arrival: sampled, bad timestamps counted and skipped.

Arrival minus the quote's own `timestamp`: for Alpaca the exchange's time (the whole path from the
exchange), for Saxo and Binance the gateway's receive time (only the hop to the monitor). At most one
quote every AGE_SAMPLE_SECONDS is parsed: the first quote of a batch of frames.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import orjson
import structlog

from .decode import parse_timestamp
from .metrics import Children, Metrics

log = structlog.get_logger("monitor.feed")

AGE_SAMPLE_SECONDS = 0.01
"""At most one sampled quote per 10 ms (100 a second)."""
FUTURE_TOLERANCE_SECONDS = 1.0
MAX_QUOTE_AGE_SECONDS = 3600.0
INVALID_LOG_SECONDS = 60.0


class QuoteAges:
    """`gateway_monitor_quote_age_seconds{broker}` and its unusable timestamps."""

    def __init__(self, metrics: Metrics, broker_of: Callable[[str, str], str | None]) -> None:
        """`broker_of(provider, symbol)`: the platform of a quote, None for one not to observe."""
        self._m = metrics
        self._broker_of = broker_of
        self._ages = Children(metrics.quote_age)
        self._invalid_logged: dict[str, tuple[float, int]] = {}
        self.next_sample = 0.0

    def sample(self, data: bytes, now: float) -> None:
        """Observe the age at arrival of one quote, `now` being its arrival time."""
        self.next_sample = now + AGE_SAMPLE_SECONDS
        try:
            quote = orjson.loads(data).get("quote")
        except (orjson.JSONDecodeError, AttributeError):
            return  # not this module's to report: the frame is counted as it is
        if not isinstance(quote, dict) or not isinstance(quote.get("provider"), str):
            return
        broker = self._broker_of(quote["provider"], str(quote.get("symbol", "")))
        if broker is None:
            return
        stamp = quote.get("timestamp")
        sent = parse_timestamp(stamp)
        if sent is None:
            self._invalid("missing" if stamp is None else "unparseable", stamp, now)
        elif now - sent < -FUTURE_TOLERANCE_SECONDS:
            self._invalid("future", stamp, now)
        elif now - sent > MAX_QUOTE_AGE_SECONDS:
            self._invalid("too_old", stamp, now)
        else:
            self._ages(broker).observe(max(0.0, now - sent))

    def forget(self, brokers: set[str]) -> None:
        """Drop the ages filed under these platforms (a guess that /health did not confirm)."""
        for broker in brokers:
            self._ages.remove(broker)

    def _invalid(self, reason: str, stamp: object, now: float) -> None:
        self._m.quote_timestamps_invalid.labels(reason).inc()
        last, count = self._invalid_logged.get(reason, (-math.inf, 0))
        if now - last >= INVALID_LOG_SECONDS:
            log.warning("monitor.feed.quote_timestamp_invalid", reason=reason,
                        timestamp=str(stamp)[:64], skipped_since_last_line=count)
            self._invalid_logged[reason] = (now, 0)
        else:
            self._invalid_logged[reason] = (last, count + 1)
