"""One instrument of feed health: its silence settings, what is known of its ticks, its name.

An instrument is named by the raw key the frame path cuts from a quote or candle,
`SYMBOL","provider":"PROVIDER`, and filed under a platform id of the gateway (monitor/feed.py).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import orjson

from . import protocol
from .feed_config import SilenceOverride, Subscription

SWEEP_SECONDS = 1.0
"""How often feed health looks at the ticks (and so the resolution of an interval)."""
LEARNING_WEIGHT = 0.05
"""Weight of the newest gap in the usual interval: it follows about the last 20 gaps."""
DEFAULT_SEVERITY = "warning"
PROVIDER_SEPARATOR = b'","provider":"'


@dataclass(frozen=True)
class Rule:
    """The silence settings of one instrument, after overrides."""

    floor: float
    multiple: float
    threshold: float | None
    severity: str
    enabled: bool


@dataclass(frozen=True)
class FeedSettings:
    """Feed-health configuration: defaults, overrides, expected instruments, series cap."""

    floor: float = 60.0
    multiple: float = 20.0
    overrides: tuple[SilenceOverride, ...] = ()
    subscriptions: tuple[Subscription, ...] = ()
    max_instruments: int = 1000

    def rule(self, broker: str, symbol: str) -> Rule:
        """Defaults, then the broker's override, then the instrument's (most specific wins)."""
        values: dict[str, Any] = {"floor": self.floor, "multiple": self.multiple, "threshold": None,
                                  "severity": DEFAULT_SEVERITY, "enabled": True}
        matching = [o for o in self.overrides if o.broker == broker and o.instrument in (None, symbol)]
        for override in sorted(matching, key=lambda o: o.instrument is not None):
            for field, key in (("floor_seconds", "floor"), ("multiple", "multiple"),
                               ("threshold_seconds", "threshold"), ("severity", "severity"),
                               ("enabled", "enabled")):
                if getattr(override, field) is not None:
                    values[key] = getattr(override, field)
        return Rule(**values)


@dataclass(slots=True)
class Instrument:
    """What the monitor knows of one instrument's feed."""

    broker: str
    symbol: str
    provider: str | None
    """quote.provider as the gateway spells it; None for an instrument only expected so far."""
    rule: Rule
    min_interval: float = 0.0
    """From SUBSCRIPTIONS: a candle-only subscription is quiet for a bar by design."""
    last_tick: float | None = None
    log_gap: float | None = None
    eligible_since: float | None = None
    silent_since: float | None = None

    @property
    def usual_interval(self) -> float | None:
        """The geometric mean of recent gaps between ticks (None before the second tick)."""
        return None if self.log_gap is None else math.exp(self.log_gap)

    def threshold(self) -> float:
        """Seconds without a tick after which the instrument is silent."""
        if self.rule.threshold is not None:
            return self.rule.threshold
        usual = max(self.usual_interval or 0.0, self.min_interval)
        return max(self.rule.floor, self.rule.multiple * usual)

    def learn(self, gap: float) -> None:
        """Fold one gap into the usual interval, in log space: one long pause moves it little.

        Ticks are seen once per sweep (the last one of each second), so gaps are measured to a
        second: an instrument that ticks more often has a usual interval of one second.
        """
        logged = math.log(max(gap, SWEEP_SECONDS))
        self.log_gap = logged if self.log_gap is None else self.log_gap + LEARNING_WEIGHT * (
            logged - self.log_gap)


def platform_candidates(provider: str) -> tuple[str, ...]:
    """The platform ids a quote's `provider` may stand for.

    Alpaca and Oanda send the platform id, Binance the product without live/testnet
    (`binance-spot`), Saxo `saxo` for both saxo-sim and saxo-live, the mock `mock`.
    """
    text = provider.strip().lower()
    if text in protocol.PLATFORMS:
        return (text,)
    prefixed = tuple(p for p in protocol.PLATFORMS if p.startswith(text + "-"))
    if prefixed:
        return prefixed
    platform = protocol.normalise_broker(provider)
    return () if platform in (protocol.OTHER, protocol.NO_BROKER) else (platform,)


def key_of(symbol: str, provider: str) -> bytes:
    """The raw key of a parsed frame, as the frame path cuts it from the gateway's usual shape."""
    return orjson.dumps(symbol)[1:-1] + PROVIDER_SEPARATOR + orjson.dumps(provider)[1:-1]


def split_key(key: bytes) -> tuple[str, str] | None:
    """(symbol, provider) of a raw key; the key is JSON string content, so it is read as JSON."""
    if key.count(PROVIDER_SEPARATOR) == 1 and b"\\" not in key:
        symbol, provider = key.split(PROVIDER_SEPARATOR)
        if b'"' not in symbol and b'"' not in provider:
            return symbol.decode("utf-8", "replace"), provider.decode("utf-8", "replace")
    try:  # escapes, or fields between symbol and provider: read the fragment as the object it is
        body = orjson.loads(b'{"symbol":"' + key + b'"}')
    except orjson.JSONDecodeError:
        return None
    symbol, provider = body.get("symbol"), body.get("provider")
    if isinstance(symbol, str) and isinstance(provider, str):
        return symbol, provider
    return None
