"""Frames → metrics and log lines, read back from the /metrics exposition and captured logs."""

from __future__ import annotations

import orjson
import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from support import Scrape

from monitor import protocol
from monitor.events import EventHandler
from monitor.gateway_state import SYMBOL_LABEL_MAX, GatewayState
from monitor.metrics import Metrics
from monitor.stream import FrameProcessor


class Rig:
    def __init__(self, max_symbols: int = 1000, max_frame_bytes: int = 1 << 20) -> None:
        self.metrics = Metrics(CollectorRegistry())
        self.state = GatewayState(self.metrics, max_symbols, 15.0, wall=lambda: 1000.0)
        self.handler = EventHandler(self.metrics, self.state, clock=lambda: 1000.0)
        self.processor = FrameProcessor(self.metrics.stream, self.handler, max_frame_bytes)

    def feed(self, frame: dict[str, object] | bytes) -> bool:
        return self.processor.text(frame if isinstance(frame, bytes) else orjson.dumps(frame))

    def value(self, name: str, **labels: str) -> float | None:
        """The sample as /metrics serves it (the per-symbol series are not in the registry)."""
        return Scrape(self.metrics.expose()[0].decode()).value("gateway_monitor_" + name, **labels)


@pytest.fixture
def rig() -> Rig:
    return Rig()


def test_known_series_exist_at_zero_before_any_frame(rig: Rig) -> None:
    for kind in (*protocol.FRAME_TYPES, "other"):
        assert rig.value("frames_total", type=kind) == 0
    for code in (*protocol.ERROR_CODES, "other"):
        assert rig.value("error_events_total", code=code) == 0
    for event in ("RATE_LIMIT_WARNING", "RATE_LIMIT_HIT"):
        assert rig.value("rate_limit_events_total", event=event) == 0
    assert rig.value("account_events_total", event="MARGIN_CALL") == 0
    assert rig.value("ws_connect_failures_total", reason="unauthorized") == 0
    assert rig.value("invalid_frames_total", reason="binary") == 0
    assert rig.value("build_info", version="0.1.0") == 1


def test_every_frame_is_counted_by_type(rig: Rig) -> None:
    for _ in range(3):
        rig.feed({"type": "quote", "quote": {"symbol": "AAPL"}})
    rig.feed(b'{"event_id":"e1","quote":{},"type":"quote"}')
    rig.feed({"type": "candle", "bar": {}})
    rig.feed({"type": "order", "event": "ORDER_FILLED", "order": {}})
    rig.feed({"type": "shiny_new_type"})
    assert rig.value("frames_total", type="quote") == 4
    assert rig.value("frames_total", type="candle") == 1
    assert rig.value("frames_total", type="order") == 1
    assert rig.value("frames_total", type="other") == 1
    assert rig.value("order_events_total", event="ORDER_FILLED") == 1
    assert rig.value("ws_last_frame_timestamp_seconds") > 0


def test_critical_error_is_counted_and_logged_at_error_level(rig: Rig) -> None:
    with capture_logs() as logs:
        rig.feed({"type": "error", "code": "POSITION_UNPROTECTED", "message": "no stop-loss on AAPL",
                  "details": {"symbol": "AAPL"}, "timestamp": "2025-01-15T10:30:00Z"})
    assert rig.value("error_events_total", code="POSITION_UNPROTECTED") == 1
    assert rig.value("last_error_timestamp_seconds", code="POSITION_UNPROTECTED") == 1000.0
    assert logs == [{"event": "gateway.error.position_unprotected", "log_level": "error",
                     "code": "POSITION_UNPROTECTED", "message": "no stop-loss on AAPL",
                     "details": {"symbol": "AAPL"}}]


def test_non_critical_error_logs_a_warning(rig: Rig) -> None:
    with capture_logs() as logs:
        rig.feed({"type": "error", "code": "ORDER_REJECTED", "message": "insufficient margin"})
    assert rig.value("error_events_total", code="ORDER_REJECTED") == 1
    assert [entry["log_level"] for entry in logs] == ["warning"]


def test_broker_lifecycle(rig: Rig) -> None:
    with capture_logs() as logs:
        rig.feed({"type": "connection", "event": "BROKER_DISCONNECTED", "broker": "alpaca-paper",
                  "error": "upstream reset"})
        assert rig.value("broker_up", broker="alpaca-paper") == 0
        rig.feed({"type": "connection", "event": "BROKER_CONNECTION_FAILED", "broker": "alpaca-paper"})
        assert rig.value("broker_connection_failed", broker="alpaca-paper") == 1
        rig.feed({"type": "connection", "event": "CONNECTED"})  # names no broker: changes nothing
        assert rig.value("broker_connection_failed", broker="alpaca-paper") == 1
        rig.feed({"type": "connection", "event": "BROKER_RECONNECTED", "broker": "alpaca-paper",
                  "gap_duration_ms": 4200})
    assert rig.value("broker_up", broker="alpaca-paper") == 1
    assert rig.value("broker_connection_failed", broker="alpaca-paper") == 0
    assert rig.value("broker_gap_seconds_sum", broker="alpaca-paper") == pytest.approx(4.2)
    assert rig.value("connection_events_total", event="CONNECTED", broker="none") == 1
    assert rig.value("connection_events_total", event="BROKER_DISCONNECTED", broker="alpaca-paper") == 1
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("gateway.connection.broker_disconnected", "warning"),
        ("gateway.connection.broker_connection_failed", "error"),
        ("gateway.connection.connected", "info"),
        ("gateway.connection.broker_reconnected", "info"),
    ]
    assert logs[0]["error"] == "upstream reset" and logs[3]["gap_duration_ms"] == 4200


def test_staleness_episode(rig: Rig) -> None:
    rig.feed({"type": "data_staleness", "event": "STALE", "symbols": ["AAPL", "MSFT"],
              "stale_since": "2025-01-15T10:30:00Z", "broker": "alpaca-paper"})
    assert rig.value("stale_symbols", broker="alpaca-paper") == 2
    assert rig.value("symbol_stale_since_timestamp_seconds", broker="alpaca-paper",
                     symbol="AAPL") == 1736937000.0
    rig.feed({"type": "data_staleness", "event": "FRESH", "symbols": ["AAPL"], "broker": "alpaca-paper",
              "timestamp": "2025-01-15T10:31:12Z"})
    assert rig.value("stale_symbols", broker="alpaca-paper") == 1
    assert rig.value("symbol_stale_since_timestamp_seconds", broker="alpaca-paper", symbol="AAPL") is None
    assert rig.value("stale_duration_seconds_sum", broker="alpaca-paper") == 72.0
    assert rig.value("stale_duration_seconds_count", broker="alpaca-paper") == 1


def test_symbol_series_are_capped_and_the_cut_counted() -> None:
    rig = Rig(max_symbols=3)
    rig.feed({"type": "data_staleness", "event": "STALE", "broker": "mock",
              "symbols": [f"S{i}" for i in range(10)]})
    assert rig.value("stale_symbols", broker="mock") == 3
    assert rig.value("symbol_series_dropped_total") == 7
    rig.feed({"type": "data_staleness", "event": "FRESH", "broker": "mock", "symbols": ["S0"]})
    rig.feed({"type": "data_staleness", "event": "STALE", "broker": "mock", "symbols": ["S9"]})
    assert rig.value("symbol_stale_since_timestamp_seconds", broker="mock", symbol="S9") is not None


def test_hostile_symbol_names_are_cut_to_a_bounded_label(rig: Rig) -> None:
    long = "X" * 10_000
    rig.feed({"type": "data_staleness", "event": "STALE", "broker": "mock", "symbols": [long, 'a"\\\nb']})
    assert rig.value("symbol_stale_since_timestamp_seconds", broker="mock",
                     symbol="X" * SYMBOL_LABEL_MAX) is not None
    rig.feed({"type": "data_staleness", "event": "FRESH", "broker": "mock", "symbols": [long]})
    assert rig.value("stale_symbols", broker="mock") == 1


def test_rate_limit(rig: Rig) -> None:
    rig.feed({"type": "rate_limit", "event": "RATE_LIMIT_WARNING", "requests_remaining": 10,
              "reset_at": "2025-01-15T10:31:00Z"})
    rig.feed({"type": "rate_limit", "event": "RATE_LIMIT_HIT", "requests_remaining": 0})
    assert rig.value("rate_limit_events_total", event="RATE_LIMIT_WARNING") == 1
    assert rig.value("rate_limit_events_total", event="RATE_LIMIT_HIT") == 1
    assert rig.value("rate_limit_requests_remaining") == 0
    assert rig.value("rate_limit_reset_timestamp_seconds") == 1736937060.0


def test_margin_call_is_critical(rig: Rig) -> None:
    with capture_logs() as logs:
        rig.feed({"type": "account", "event": "MARGIN_WARNING", "account": {}})
        rig.feed({"type": "account", "event": "MARGIN_CALL", "account": {}})
    assert rig.value("account_events_total", event="MARGIN_CALL") == 1
    assert [(e["event"], e["log_level"]) for e in logs] == [
        ("gateway.account.margin_warning", "warning"), ("gateway.account.margin_call", "error")]
    assert rig.handler.recent_critical[-1]["event"] == "gateway.account.margin_call"


def test_json_ping_asks_for_a_pong_and_nothing_else_does(rig: Rig) -> None:
    assert rig.feed({"type": "ping", "timestamp": "2025-01-01T00:00:00Z"}) is True
    assert rig.feed({"type": "quote"}) is False
    assert rig.feed({"type": "error", "code": "LIQUIDATION"}) is False


@pytest.mark.parametrize(
    ("frame", "reason"),
    [
        (b"{oops", "invalid_json"),
        (b"[]", "not_object"),
        (b'{"no_type":1}', "missing_type"),
        (b'{"type":"data_staleness","event":"STALE","symbols":"AAPL"}', "wrong_shape"),
    ],
)
def test_invalid_frame_costs_one_counter_and_one_log_line(rig: Rig, frame: bytes, reason: str) -> None:
    with capture_logs() as logs:
        rig.feed(frame)
        rig.feed({"type": "error", "code": "LIQUIDATION"})  # the next frame is unaffected
    assert rig.value("invalid_frames_total", reason=reason) == 1
    assert [e["event"] for e in logs] == ["monitor.frame.invalid", "gateway.error.liquidation"]
    assert logs[0]["reason"] == reason
    assert rig.value("error_events_total", code="LIQUIDATION") == 1


def test_oversized_and_binary_frames_are_counted_and_skipped() -> None:
    rig = Rig(max_frame_bytes=2048)
    rig.feed({"type": "quote", "pad": "x" * 4000})
    rig.feed({"type": "error", "code": "LIQUIDATION", "pad": "x" * 4000})
    rig.processor.binary(b"\x00\x01")
    assert rig.value("invalid_frames_total", reason="too_large") == 2
    assert rig.value("invalid_frames_total", reason="binary") == 1
    assert rig.value("frames_total", type="quote") == 0
    assert rig.value("error_events_total", code="LIQUIDATION") == 0
