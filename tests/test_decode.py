"""The pure decoder: market-data prefilter, full decode, typed events, and hostile input."""

from __future__ import annotations

import json

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from monitor import protocol
from monitor.decode import (
    ConnectionEvent,
    ErrorEvent,
    InvalidFrame,
    LifecycleEvent,
    PingEvent,
    RateLimitEvent,
    StalenessEvent,
    decode,
    leading_order_event,
    leading_tick,
    market_data_type,
    parse_timestamp,
    to_event,
)
from monitor.metrics import INVALID_REASONS


def event_of(frame: dict[str, object]) -> object:
    kind, obj = decode(orjson.dumps(frame))
    return to_event(kind, obj)


@pytest.mark.parametrize("kind", ["quote", "candle", "trade"])
def test_market_data_is_recognised_from_its_prefix(kind: str) -> None:
    assert market_data_type(orjson.dumps({"type": kind, kind: {"symbol": "AAPL"}})) == kind


@pytest.mark.parametrize(
    "frame",
    [
        b'{"event_id":"evt_1","quote":{},"type":"quote"}',  # sorted keys: type is not first
        b'{"type": "quote"}',  # whitespace after the colon
        b'{"type":"quotes"}',
        b'{"type":"error","code":"LIQUIDATION"}',
        b"",
    ],
)
def test_type_prefilter_declines_what_it_cannot_be_sure_of(frame: bytes) -> None:
    assert market_data_type(frame) is None


QUOTE = {"type": "quote", "quote": {"symbol": "EURUSD:FxSpot", "provider": "saxo", "bid": "1.08451",
                                    "ask": "1.08471", "last": "1.08461",
                                    "timestamp": "2026-12-01T14:33:09.658893085Z"},
         "timestamp": "2026-12-01T14:33:09.658894186Z"}
CANDLE = {"type": "candle", "bar": {"symbol": "AAPL", "provider": "alpaca-paper", "timeframe": "1m",
                                   "timestamp": "2026-12-01T14:33:00Z", "open": "1", "high": "2",
                                   "low": "0.5", "close": "1.5", "volume": "100"},
          "timestamp": "2026-12-01T14:34:00.001Z"}


@pytest.mark.parametrize(("frame", "expected"), [
    (QUOTE, ("quote", b'EURUSD:FxSpot","provider":"saxo')),
    (CANDLE, ("candle", b'AAPL","provider":"alpaca-paper')),
])
def test_a_tick_and_its_instrument_are_read_from_the_gateways_usual_shape(
    frame: dict[str, object], expected: tuple[str, bytes]
) -> None:
    assert leading_tick(orjson.dumps(frame)) == expected


@pytest.mark.parametrize(
    "frame",
    [
        b'{"event_id":"evt_1","quote":{},"type":"quote"}',  # sorted keys: type is not first
        b'{"type": "quote"}',  # whitespace after the colon
        b'{"type":"quotes"}',
        b'{"type":"quote","quote":{"provider":"saxo","symbol":"EURUSD","bid":"1"}}',  # other order
        b'{"type":"quote","quote":{"symbol":"EURUSD","provider":"saxo"}}',  # no bid to end the key
        b'{"type":"candle","bar":{"symbol":"AAPL","provider":"mock"}}',
        b'{"type":"trade","trade":{"symbol":"AAPL"}}',  # an own fill: no instrument key
        b'{"type":"error","code":"LIQUIDATION"}',
        b"",
    ],
)
def test_tick_prefilter_declines_what_it_cannot_be_sure_of(frame: bytes) -> None:
    assert leading_tick(frame) is None


def test_declined_market_data_still_decodes_to_its_type() -> None:
    assert decode(b'{"event_id":"evt_1","quote":{},"type":"quote"}')[0] == "quote"
    assert decode(b'{"type": "quote"}')[0] == "quote"


@pytest.mark.parametrize("event", protocol.ORDER_EVENTS)
def test_order_event_is_read_from_its_prefix(event: str) -> None:
    frame = orjson.dumps({"type": "order", "event": event, "order": {"id": "ord_1", "symbol": "V"}})
    assert leading_order_event(frame) == LifecycleEvent("order", event) == event_of(orjson.loads(frame))


@pytest.mark.parametrize(
    "frame",
    [
        b'{"event":"ORDER_FILLED","order":{},"type":"order"}',  # sorted keys: type is not first
        b'{"type":"order","order":{},"event":"ORDER_FILLED"}',  # event is not second
        b'{"type":"order","event":"ORDER_FILLED_LATE"}',  # an unknown event folds in decode()
        b'{"type":"order","event":"ORDER_FILLED\\"}',  # escaped quote: the string goes on
        b'{"type":"order","event":"ORDER_FILLED"',  # cut short
        b'{"type":"order","event":"ORDER_FILLED"x',
        b'{"type":"order","event":"ORDER_FILLED',
        b'{"type": "order", "event": "ORDER_FILLED"}',
        b'{"type":"orders","event":"ORDER_FILLED"}',
    ],
)
def test_order_shortcut_declines_what_it_cannot_be_sure_of(frame: bytes) -> None:
    assert leading_order_event(frame) is None


@settings(max_examples=300, deadline=None)
@given(st.sampled_from([*protocol.ORDER_EVENTS, "ORDER", "", "order_filled"]),
       st.dictionaries(st.sampled_from(["order", "timestamp", "event_id"]), st.text(max_size=5), max_size=3))
def test_order_shortcut_agrees_with_the_full_decode(event: str, rest: dict[str, str]) -> None:
    frame = orjson.dumps({"type": "order", "event": event, **rest})
    shortcut = leading_order_event(frame)
    assert shortcut is None or shortcut == event_of(orjson.loads(frame))
    assert (shortcut is None) == (event not in protocol.ORDER_EVENTS)


def test_unknown_type_folds_to_other_and_keeps_the_object() -> None:
    kind, obj = decode(b'{"type":"galaxy","x":1}')
    assert (kind, obj["x"]) == ("other", 1)


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"{not json", "invalid_json"),
        (b'{"type":"error"', "invalid_json"),
        (b"\xff\xfe", "invalid_json"),
        (b"[1,2]", "not_object"),
        (b'"error"', "not_object"),
        (b'{"code":"LIQUIDATION"}', "missing_type"),
        (b'{"type":7}', "missing_type"),
        (b"[" * 5000 + b"]" * 5000, "invalid_json"),
    ],
)
def test_bad_frames_raise_invalid_frame_with_reason(frame: bytes, reason: str) -> None:
    with pytest.raises(InvalidFrame) as info:
        decode(frame)
    assert info.value.reason == reason


def test_connection_event_fields() -> None:
    event = event_of({"type": "connection", "event": "BROKER_RECONNECTED", "broker": "alpaca-paper",
                      "gap_duration_ms": 4200, "timestamp": "2025-01-15T10:31:04Z"})
    assert event == ConnectionEvent("BROKER_RECONNECTED", "alpaca-paper", None, 4.2)


def test_connection_event_folds_unknown_event_and_broker() -> None:
    event = event_of({"type": "connection", "event": "WARP", "broker": "Alpaca_Paper", "error": 5})
    assert event == ConnectionEvent("other", "alpaca-paper", "5", None)
    event = event_of({"type": "connection", "event": "CONNECTED", "broker": "nyse-floor"})
    assert isinstance(event, ConnectionEvent)
    assert event.broker == protocol.OTHER


def test_connection_event_without_string_event_is_wrong_shape() -> None:
    with pytest.raises(InvalidFrame, match="wrong_shape"):
        event_of({"type": "connection", "event": ["CONNECTED"]})


def test_staleness_event() -> None:
    event = event_of({"type": "data_staleness", "event": "STALE", "symbols": ["AAPL", "MSFT"],
                      "stale_since": "2025-01-15T10:30:00Z", "broker": "alpaca-paper",
                      "timestamp": "2025-01-15T10:30:05Z"})
    assert event == StalenessEvent("STALE", "alpaca-paper", ("AAPL", "MSFT"), 1736937000.0,
                                   1736937005.0)


@pytest.mark.parametrize("symbols", ["AAPL", [1, 2], {"a": 1}, [None]])
def test_staleness_symbols_of_wrong_type_are_wrong_shape(symbols: object) -> None:
    with pytest.raises(InvalidFrame, match="wrong_shape"):
        event_of({"type": "data_staleness", "event": "STALE", "symbols": symbols})


def test_rate_limit_event() -> None:
    event = event_of({"type": "rate_limit", "event": "RATE_LIMIT_WARNING", "requests_remaining": 10,
                      "reset_at": "2025-01-15T10:31:00Z"})
    assert event == RateLimitEvent("RATE_LIMIT_WARNING", 10, 1736937060.0)


def test_rate_limit_with_odd_numbers_keeps_the_event() -> None:
    event = event_of({"type": "rate_limit", "event": "RATE_LIMIT_HIT", "requests_remaining": "ten",
                      "reset_at": 17})
    assert event == RateLimitEvent("RATE_LIMIT_HIT", None, None)


def test_error_event_is_never_lost_for_its_shape() -> None:
    assert event_of({"type": "error", "code": "POSITION_UNPROTECTED", "message": "m",
                     "details": {"symbol": "AAPL"}}) == ErrorEvent(
        "POSITION_UNPROTECTED", "POSITION_UNPROTECTED", "m", {"symbol": "AAPL"})
    odd = event_of({"type": "error", "code": ["x"], "message": None})
    assert odd == ErrorEvent("other", None, None, None)
    unknown = event_of({"type": "error", "code": "NEW_CODE"})
    assert isinstance(unknown, ErrorEvent)
    assert (unknown.code, unknown.raw_code) == ("other", "NEW_CODE")


def test_lifecycle_events_fold_unknown_events() -> None:
    assert event_of({"type": "account", "event": "MARGIN_CALL"}) == LifecycleEvent("account", "MARGIN_CALL")
    assert event_of({"type": "order", "event": 3}) == LifecycleEvent("order", "other")
    assert event_of({"type": "position", "event": "POSITION_CLOSED"}) == LifecycleEvent(
        "position", "POSITION_CLOSED")


def test_ping_and_counted_only_kinds() -> None:
    assert event_of({"type": "ping", "timestamp": "2025-01-01T00:00:00Z"}) == PingEvent()
    assert event_of({"type": "quote", "quote": {}}) is None
    assert event_of({"type": "mystery"}) is None


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2025-01-15T10:30:00Z", 1736937000.0),
        ("2025-01-15T10:30:00.125Z", 1736937000.125),
        ("2025-01-15T10:30:00.123456789Z", 1736937000.123456),  # nanoseconds, as Rust sends them
        ("2025-01-15T12:30:00+02:00", 1736937000.0),
        ("2025-01-15T10:30:00", 1736937000.0),
        ("yesterday", None),
        (1736937000, None),
        ("9" * 100, None),
    ],
)
def test_parse_timestamp(text: object, expected: float | None) -> None:
    result = parse_timestamp(text)
    assert result == pytest.approx(expected) if expected is not None else result is None


def _check_decoder(data: bytes) -> None:
    try:
        kind, obj = decode(data)
        to_event(kind, obj)
    except InvalidFrame as err:
        assert err.reason in INVALID_REASONS


@settings(max_examples=400, deadline=None)
@given(st.binary(max_size=300))
def test_fuzz_random_bytes_only_yield_events_or_invalid_frame(data: bytes) -> None:
    _check_decoder(data)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)
fields = st.sampled_from(["event", "broker", "symbols", "stale_since", "gap_duration_ms", "code",
                          "message", "details", "requests_remaining", "reset_at", "timestamp",
                          "error", "event_id"])


@settings(max_examples=600, deadline=None)
@given(st.sampled_from([*protocol.FRAME_TYPES, "pong", "x"]),
       st.dictionaries(fields, json_values, max_size=8))
def test_fuzz_wrong_types_in_every_field(kind: str, body: dict[str, object]) -> None:
    data = json.dumps({"type": kind, **body}).encode()  # stdlib: also writes ints beyond 64 bits
    _check_decoder(data)
    # Truncations of a well-formed frame are all either decodable or invalid_json.
    for cut in (1, len(data) // 2, len(data) - 1):
        _check_decoder(data[:cut])


def test_huge_numbers_are_handled() -> None:
    _check_decoder(b'{"type":"connection","event":"BROKER_RECONNECTED","gap_duration_ms":1e308}')
    _check_decoder(b'{"type":"rate_limit","event":"RATE_LIMIT_HIT","requests_remaining":' +
                   b"9" * 400 + b"}")


# Every spelling of a platform the gateway v0.2.0 sends: its ids (header_value), the Rust
# variant names some provider-level frames use (format!("{platform:?}")), and the short
# names its own parser accepts. Written out from crates/core/src/models/platform.rs.
GATEWAY_SPELLINGS = [
    ("AlpacaLive", "alpaca-live"), ("AlpacaPaper", "alpaca-paper"),
    ("BinanceSpotLive", "binance-spot-live"), ("BinanceSpotTestnet", "binance-spot-testnet"),
    ("BinanceFuturesLive", "binance-futures-live"), ("BinanceFuturesTestnet", "binance-futures-testnet"),
    ("BinanceMarginLive", "binance-margin-live"), ("BinanceMarginTestnet", "binance-margin-testnet"),
    ("BinanceCoinFuturesLive", "binance-coin-futures-live"),
    ("BinanceCoinFuturesTestnet", "binance-coin-futures-testnet"),
    ("OandaPractice", "oanda-practice"), ("OandaLive", "oanda-live"),
    ("SaxoSim", "saxo-sim"), ("SaxoLive", "saxo-live"), ("Tektii", "tektii"), ("Mock", "mock"),
    ("tektii", "tektii"), ("saxo-sim", "saxo-sim"),
    ("binance_coin_futures_live", "binance-coin-futures-live"),
    ("SAXO_SIM", "saxo-sim"), ("alpaca", "alpaca-paper"), ("saxo", "saxo-sim"), ("oanda", "oanda-practice"),
    ("binance-spot", "binance-spot-testnet"),
]


@pytest.mark.parametrize(("spelling", "platform"), GATEWAY_SPELLINGS)
def test_every_broker_spelling_of_the_gateway_is_its_platform_id(spelling: str, platform: str) -> None:
    assert protocol.normalise_broker(spelling) == platform
    event = event_of({"type": "connection", "event": "BROKER_DISCONNECTED", "broker": spelling})
    assert event.broker == platform


def test_a_broker_field_too_long_to_be_a_platform_is_other() -> None:
    assert protocol.normalise_broker("Saxo" * 40) == protocol.OTHER
