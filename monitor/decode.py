"""Pure decoding: the bytes of one text frame in, a typed event or InvalidFrame out.

No I/O, no metrics, no clock: everything here can be fuzzed and benchmarked alone.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import orjson

from . import protocol

# Market data is the bulk of the stream and the monitor only counts it, so its type is
# read from the raw bytes. A live frame has `type` first (the gateway's serde order); a
# backtest frame has an `event_id` and sorted keys, so `type` is its last key. In a JSON
# object, raw `"` only delimits strings, so a text that starts with `{"type":"quote"` or
# ends with `,"type":"quote"}` names that top-level type: nothing else can match.
TYPE_OFFSET = len(b'{"type":"')
MARKET_PREFIXES: tuple[bytes, ...] = tuple(  # quotes first: most market data is quotes
    b'{"type":"' + kind.encode() + b'"'
    for kind in sorted(protocol.MARKET_DATA_TYPES, key=lambda kind: (kind != "quote", kind))
)
QUOTE_PREFIX = MARKET_PREFIXES[0]
MARKET_BY_FIRST_BYTE: dict[int, str] = {kind.encode()[0]: kind for kind in protocol.MARKET_DATA_TYPES}
_MARKET_SUFFIXES = {kind: b',"type":"' + kind.encode() + b'"}' for kind in protocol.MARKET_DATA_TYPES}
_SUFFIX_TAIL = 9
_MARKET_BY_TAIL = {suffix[-_SUFFIX_TAIL:]: kind for kind, suffix in _MARKET_SUFFIXES.items()}
# Both shortcuts tell the kinds apart by one byte / the last 9 bytes; a new market data
# type that broke this would fail here, at import, rather than miscount.
assert len(MARKET_BY_FIRST_BYTE) == len(_MARKET_BY_TAIL) == len(protocol.MARKET_DATA_TYPES)
assert QUOTE_PREFIX == b'{"type":"quote"'  # FrameProcessor.texts counts these apart

# Quotes and candles in the gateway's usual shape also name their instrument in fixed places:
# the object's first fields are `symbol` and `provider`, so the bytes from the symbol's first
# character to `","bid"` (quote) or `","timeframe"` (candle) are `SYMBOL","provider":"PROVIDER`,
# the key by which monitor/feed.py tracks the instrument. Inside a string a raw `"` cannot
# occur, so those end marks are found only where a string ends.
QUOTE_HEAD = b'{"type":"quote","quote":{"symbol":"'
CANDLE_HEAD = b'{"type":"candle","bar":{"symbol":"'
QUOTE_KEY_END = b'","bid"'
CANDLE_KEY_END = b'","timeframe"'
CANDLE_PREFIX = b'{"type":"candle"'


class InvalidFrame(Exception):
    """A frame the monitor cannot use; `reason` is one of metrics.INVALID_REASONS."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True, slots=True)
class ConnectionEvent:
    event: str
    broker: str
    error: str | None
    gap_seconds: float | None


@dataclass(frozen=True, slots=True)
class StalenessEvent:
    event: str
    broker: str
    symbols: tuple[str, ...]
    stale_since: float | None
    timestamp: float | None


@dataclass(frozen=True, slots=True)
class RateLimitEvent:
    event: str
    requests_remaining: int | None
    reset_at: float | None


@dataclass(frozen=True, slots=True)
class ErrorEvent:
    code: str
    raw_code: str | None
    message: str | None
    details: Any


@dataclass(frozen=True, slots=True)
class LifecycleEvent:
    """An account, order or position frame: only its `event` matters to the monitor."""

    kind: str
    event: str


@dataclass(frozen=True, slots=True)
class PingEvent:
    pass


# Order frames (~5% of a live stream) are only counted by event: when `type` and `event`
# lead ({"type":"order","event":"ORDER_FILLED",...), both are read from the raw bytes, as
# for market data. Only a known event name followed by `,` or `}` matches.
_ORDER_PREFIX = b'{"type":"order","event":"'
_ORDER_EVENTS = {name.encode(): LifecycleEvent("order", name) for name in protocol.ORDER_EVENTS}


def leading_order_event(data: bytes) -> LifecycleEvent | None:
    """The event of an order frame whose first keys are `type` and `event`; else None."""
    if not data.startswith(_ORDER_PREFIX):
        return None
    start = len(_ORDER_PREFIX)
    end = data.find(b'"', start)
    if end < 0 or data[end + 1:end + 2] not in (b",", b"}"):
        return None
    return _ORDER_EVENTS.get(data[start:end])


Event = ConnectionEvent | StalenessEvent | RateLimitEvent | ErrorEvent | LifecycleEvent | PingEvent


def market_data_type(data: bytes) -> str | None:
    """Return quote/candle/trade when the frame starts with that `type`, without parsing it.

    Frames whose `type` is not the first key return None here; see
    trailing_market_data_type for backtest frames, and decode() for the rest, which
    gives the same answer more slowly.
    """
    if data.startswith(MARKET_PREFIXES):
        return MARKET_BY_FIRST_BYTE[data[TYPE_OFFSET]]
    return None


def leading_tick(data: bytes) -> tuple[str, bytes] | None:
    """(kind, instrument key) of a quote or candle in the gateway's usual shape, else None.

    monitor/feed.py's FeedHealth.read inlines this; frames it declines are parsed, which gives the
    same answer more slowly.
    """
    for kind, head, mark in (("quote", QUOTE_HEAD, QUOTE_KEY_END), ("candle", CANDLE_HEAD, CANDLE_KEY_END)):
        if data.startswith(head):
            end = data.find(mark, len(head))
            if end > 0:
                return kind, data[len(head):end]
    return None


def trailing_market_data_type(data: bytes) -> str | None:
    """Return quote/candle/trade when `type` is the frame's last key (sorted-key frames)."""
    kind = _MARKET_BY_TAIL.get(data[-_SUFFIX_TAIL:])
    if kind is not None and data.endswith(_MARKET_SUFFIXES[kind]):
        return kind
    return None


def decode(data: bytes | str) -> tuple[str, dict[str, Any]]:
    """Parse a frame into its folded `type` and its JSON object."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError as err:
        raise InvalidFrame("invalid_json", str(err)) from err
    if not isinstance(obj, dict):
        raise InvalidFrame("not_object", f"top level is {type(obj).__name__}")
    kind = obj.get("type")
    if not isinstance(kind, str):
        raise InvalidFrame("missing_type", "no string `type` field")
    return (kind if kind in _KNOWN_TYPES else protocol.OTHER), obj


_KNOWN_TYPES = frozenset(protocol.FRAME_TYPES)


def to_event(kind: str, obj: dict[str, Any]) -> Event | None:
    """Build the typed event of a monitored frame kind; None for kinds only counted."""
    parse = _PARSERS.get(kind)
    return parse(obj) if parse else None


def _connection(obj: dict[str, Any]) -> ConnectionEvent:
    gap = _number(obj, "gap_duration_ms")
    error = obj.get("error")
    return ConnectionEvent(
        event=_event(obj, protocol.CONNECTION_EVENTS),
        broker=protocol.normalise_broker(obj.get("broker")),
        error=None if error is None else str(error),
        gap_seconds=None if gap is None else gap / 1000.0,
    )


def _staleness(obj: dict[str, Any]) -> StalenessEvent:
    symbols = obj.get("symbols", [])
    if not isinstance(symbols, list) or not all(isinstance(s, str) for s in symbols):
        raise InvalidFrame("wrong_shape", "data_staleness.symbols must be a list of strings")
    return StalenessEvent(
        event=_event(obj, protocol.STALENESS_EVENTS),
        broker=protocol.normalise_broker(obj.get("broker")),
        symbols=tuple(symbols),
        stale_since=parse_timestamp(obj.get("stale_since")),
        timestamp=parse_timestamp(obj.get("timestamp")),
    )


def _rate_limit(obj: dict[str, Any]) -> RateLimitEvent:
    remaining = _number(obj, "requests_remaining")
    return RateLimitEvent(
        event=_event(obj, protocol.RATE_LIMIT_EVENTS),
        requests_remaining=None if remaining is None else int(remaining),
        reset_at=parse_timestamp(obj.get("reset_at")),
    )


def _error(obj: dict[str, Any]) -> ErrorEvent:
    # An error frame is never dropped for its shape: a missing or odd code still
    # counts, as `other`, because the frame may be the only sign of a problem.
    raw = obj.get("code")
    message = obj.get("message")
    return ErrorEvent(
        code=protocol.fold(raw, _ERROR_CODES),
        raw_code=raw if isinstance(raw, str) else None,
        message=None if message is None else str(message),
        details=obj.get("details"),
    )


_ERROR_CODES = frozenset(protocol.ERROR_CODES)


def _lifecycle(kind: str, known: tuple[str, ...]) -> Any:
    known_set = frozenset(known)
    return lambda obj: LifecycleEvent(kind, protocol.fold(obj.get("event"), known_set))


_PARSERS: dict[str, Any] = {
    "connection": _connection,
    "data_staleness": _staleness,
    "rate_limit": _rate_limit,
    "error": _error,
    "account": _lifecycle("account", protocol.ACCOUNT_EVENTS),
    "order": _lifecycle("order", protocol.ORDER_EVENTS),
    "position": _lifecycle("position", protocol.POSITION_EVENTS),
    "ping": lambda obj: PingEvent(),
}


def _event(obj: dict[str, Any], known: tuple[str, ...]) -> str:
    event = obj.get("event")
    if not isinstance(event, str):
        raise InvalidFrame("wrong_shape", f"{obj.get('type')}.event must be a string")
    return event if event in known else protocol.OTHER


def _number(obj: dict[str, Any], field: str) -> float | None:
    """A finite, non-negative number field; None when absent or unusable."""
    value = obj.get(field)
    if isinstance(value, bool) or not isinstance(value, int | float):
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return float(value)


def parse_timestamp(value: object) -> float | None:
    """ISO-8601 (UTC when no offset) to Unix seconds; None when absent or unreadable."""
    if not isinstance(value, str) or len(value) > 64:
        return None
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.timestamp()
