"""Pure builders for every frame the gateway sends, shaped as in the protocol docs.

Keys are inserted in the order the gateway's serde structs declare them (`type` first);
optional fields the gateway would skip when empty are left out, never sent as null.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

Frame = dict[str, object]


def iso(moment: datetime | None = None) -> str:
    """Format `moment` (default now) as ISO-8601 UTC with milliseconds and a 'Z'."""
    moment = (moment or datetime.now(UTC)).astimezone(UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def iso_in(seconds: float) -> str:
    """Format the moment `seconds` from now like iso()."""
    return iso(datetime.now(UTC) + timedelta(seconds=seconds))


def _with_optional(frame: Frame, **optional: object) -> Frame:
    for key, value in optional.items():
        if value is not None:
            frame[key] = value
    return frame


def quote(
    symbol: str,
    provider: str,
    bid: str,
    ask: str,
    last: str,
    *,
    size: str | None = None,
    timestamp: str | None = None,
    quoted_at: str | None = None,
) -> Frame:
    """Build a `quote` frame; `quoted_at` is the quote's own time (default: the frame's)."""
    ts = timestamp or iso()
    body: Frame = {"symbol": symbol, "provider": provider, "bid": bid}
    if size is not None:
        body["bid_size"] = size
    body["ask"] = ask
    if size is not None:
        body["ask_size"] = size
    body["last"] = last
    body["timestamp"] = quoted_at or ts
    return {"type": "quote", "quote": body, "timestamp": ts}


def candle(
    symbol: str,
    provider: str,
    ohlcv: tuple[str, str, str, str, str],
    *,
    timeframe: str = "1m",
    bar_start: str | None = None,
    timestamp: str | None = None,
) -> Frame:
    """Build a `candle` frame from (open, high, low, close, volume) strings."""
    open_, high, low, close, volume = ohlcv
    ts = timestamp or iso()
    bar: Frame = {
        "symbol": symbol,
        "provider": provider,
        "timeframe": timeframe,
        "timestamp": bar_start or ts,
        "open": open_,
        "high": high,
        "low": low,
        "close": close,
        "volume": volume,
    }
    return {"type": "candle", "bar": bar, "timestamp": ts}


def trade(event: str, trade_body: Frame, *, timestamp: str | None = None) -> Frame:
    """Build a `trade` frame (own fill) around a Trade object."""
    return {"type": "trade", "event": event, "trade": trade_body, "timestamp": timestamp or iso()}


def order(
    event: str,
    order_body: Frame,
    *,
    parent_order_id: str | None = None,
    timestamp: str | None = None,
) -> Frame:
    """Build an `order` frame around an Order object."""
    frame: Frame = {"type": "order", "event": event, "order": order_body}
    _with_optional(frame, parent_order_id=parent_order_id)
    frame["timestamp"] = timestamp or iso()
    return frame


def position(event: str, position_body: Frame, *, timestamp: str | None = None) -> Frame:
    """Build a `position` frame around a Position object."""
    return {
        "type": "position",
        "event": event,
        "position": position_body,
        "timestamp": timestamp or iso(),
    }


def account(event: str, account_body: Frame, *, timestamp: str | None = None) -> Frame:
    """Build an `account` frame around an Account object."""
    return {
        "type": "account",
        "event": event,
        "account": account_body,
        "timestamp": timestamp or iso(),
    }


def connection(
    event: str,
    *,
    broker: str | None = None,
    error: str | None = None,
    gap_duration_ms: int | None = None,
    timestamp: str | None = None,
) -> Frame:
    """Build a `connection` frame (CONNECTED, DISCONNECTING, BROKER_* ...)."""
    frame = _with_optional(
        {"type": "connection", "event": event},
        broker=broker,
        error=error,
        gap_duration_ms=gap_duration_ms,
    )
    frame["timestamp"] = timestamp or iso()
    return frame


def data_staleness(
    event: str,
    symbols: list[str],
    *,
    stale_since: str | None = None,
    broker: str | None = None,
    timestamp: str | None = None,
) -> Frame:
    """Build a `data_staleness` frame (STALE carries stale_since, FRESH does not)."""
    frame = _with_optional(
        {"type": "data_staleness", "event": event, "symbols": list(symbols)},
        stale_since=stale_since,
        broker=broker,
    )
    frame["timestamp"] = timestamp or iso()
    return frame


def rate_limit(
    event: str,
    requests_remaining: int,
    reset_at: str,
    *,
    timestamp: str | None = None,
) -> Frame:
    """Build a `rate_limit` frame."""
    return {
        "type": "rate_limit",
        "event": event,
        "requests_remaining": requests_remaining,
        "reset_at": reset_at,
        "timestamp": timestamp or iso(),
    }


def error(
    code: str,
    message: str,
    *,
    details: Frame | None = None,
    timestamp: str | None = None,
) -> Frame:
    """Build an `error` frame in the three-field envelope (details omitted when None)."""
    frame = _with_optional({"type": "error", "code": code, "message": message}, details=details)
    frame["timestamp"] = timestamp or iso()
    return frame


def ping(*, timestamp: str | None = None) -> Frame:
    """Build an application-level `ping` frame (real gateways rarely send one)."""
    return {"type": "ping", "timestamp": timestamp or iso()}
