"""Property-based fuzzing of the frame path, beyond tests/test_decode.py.

tests/test_decode.py fuzzes random bytes and wrong field types. Here: invalid UTF-8 inside
well-formed frames, nesting up to and past the parser's depth limit, numbers of any size, and
unknown types, events, codes and brokers; then the whole path (decode, event, metrics) at once.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator

import orjson
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families
from structlog.testing import capture_logs

from monitor import protocol
from monitor.decode import ConnectionEvent, ErrorEvent, InvalidFrame, LifecycleEvent, decode, to_event
from monitor.events import EventHandler
from monitor.gateway_state import GatewayState
from monitor.metrics import INVALID_REASONS, Metrics
from monitor.stream import FrameProcessor

KNOWN_EVENTS = {*protocol.CONNECTION_EVENTS, *protocol.ACCOUNT_EVENTS, *protocol.ORDER_EVENTS,
                *protocol.POSITION_EVENTS, protocol.OTHER}
BROKERS = {*protocol.PLATFORMS, protocol.NO_BROKER, protocol.OTHER}
FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
TRIED: Counter[str] = Counter()
OUTCOMES = {
    "invalid UTF-8 inside a well-formed frame": "InvalidFrame(invalid_json) every time",
    "nesting 1 to 1100 levels, objects and arrays": "critical frame decoded below 1000 levels; "
                                                    "event or InvalidFrame above",
    "numbers of any size (5000 digits, 1e400, -0) in any field": "event or InvalidFrame; gaps and "
                                                                 "counts finite, non-negative",
    "unknown types, events, codes, brokers": "folded to `other` / `none`: labels stay in the vocabulary",
    "random frame batches through decode, events and metrics": "no exception, no handler failure, "
                                                               "every frame counted once",
}


@pytest.fixture(scope="module", autouse=True)
def _record_inputs(figures) -> Iterator[None]:
    yield
    for name, outcome_text in OUTCOMES.items():
        figures.inputs(f"fuzz: {name}", tried=TRIED[name], outcome=outcome_text)


def outcome(data: bytes) -> object:
    """The decoder's answer: an event, None, or its own InvalidFrame; anything else fails the test."""
    try:
        kind, obj = decode(data)
        return to_event(kind, obj)
    except InvalidFrame as err:
        assert err.reason in INVALID_REASONS
        return err


def check_labels(event: object) -> None:
    """Whatever arrived, the values that become labels stay in the vocabulary."""
    if isinstance(event, ConnectionEvent):
        assert event.event in KNOWN_EVENTS and event.broker in BROKERS
    if isinstance(event, ErrorEvent):
        assert event.code in {*protocol.ERROR_CODES, protocol.OTHER}
    if isinstance(event, LifecycleEvent):
        assert event.event in KNOWN_EVENTS


invalid_utf8 = st.sampled_from([b"\xff", b"\xfe\xff", b"\xc0\xaf", b"\xed\xa0\x80", b"\xf4\x90\x80\x80",
                                b"\xe2\x82", b"\x80", b"\xf0\x9f\x98"])
frame_types = st.sampled_from([*protocol.FRAME_TYPES, "pong", "event_ack"])


@FUZZ
@given(frame_types, st.text(max_size=30), invalid_utf8, st.integers(0, 40))
def test_invalid_utf8_inside_a_well_formed_frame(kind: str, text: str, bad: bytes, where: int) -> None:
    TRIED["invalid UTF-8 inside a well-formed frame"] += 1
    good = orjson.dumps({"type": kind, "event": "BROKER_DISCONNECTED", "code": "LIQUIDATION",
                         "message": text})
    cut = good.index(b'"message":"') + len(b'"message":"') + min(where, len(text.encode()))
    result = outcome(good[:cut] + bad + good[cut:])
    assert isinstance(result, InvalidFrame) and result.reason == "invalid_json"


@FUZZ
@given(st.integers(1, 1100), st.sampled_from([("[", "]"), ('{"a":', "}")]), st.sampled_from(["details", "x"]))
def test_nesting_up_to_and_past_the_depth_limit(depth: int, brackets: tuple[str, str], field: str) -> None:
    TRIED["nesting 1 to 1100 levels, objects and arrays"] += 1
    opening, closing = brackets
    nested = opening * depth + "1" + closing * depth
    result = outcome(f'{{"type":"error","code":"LIQUIDATION","{field}":{nested}}}'.encode())
    if depth < 1000:  # orjson's limit is 1024 levels: below it the critical frame must survive
        assert isinstance(result, ErrorEvent) and result.code == "LIQUIDATION"
    else:
        assert isinstance(result, ErrorEvent | InvalidFrame)


numbers = st.one_of(
    st.integers(-(10**30), 10**30).map(str),
    st.integers(1, 5000).map(lambda n: "9" * n),
    st.integers(-400, 400).map(lambda e: f"1e{e}"),
    st.sampled_from(["-0", "0.0", "-0.0e-0", "1E+308", "1.7976931348623157e309", "4.9e-325", "1e-400"]),
)
number_fields = st.sampled_from(["gap_duration_ms", "requests_remaining", "timestamp", "reset_at",
                                 "stale_since", "event_id", "code", "event", "broker", "symbols"])


@FUZZ
@given(frame_types, number_fields, numbers)
def test_numbers_of_any_size_in_any_field(kind: str, field: str, number: str) -> None:
    TRIED["numbers of any size (5000 digits, 1e400, -0) in any field"] += 1
    event = "BROKER_RECONNECTED" if kind == "connection" else "RATE_LIMIT_HIT"
    result = outcome(f'{{"type":"{kind}","event":"{event}","{field}":{number}}}'.encode())
    check_labels(result)
    gap = getattr(result, "gap_seconds", None)
    assert gap is None or (gap >= 0 and gap != float("inf"))
    remaining = getattr(result, "requests_remaining", None)
    assert remaining is None or remaining >= 0


unknown = st.text(max_size=40) | st.sampled_from(["", " ", "ERROR", "liquidation", "LIQUIDATION ",
                                                   "Alpaca_Paper", "ALPACA-PAPER", "\x00", "other"])


@FUZZ
@given(frame_types | unknown, unknown, unknown, unknown | st.none())
def test_unknown_types_events_codes_and_brokers_fold(kind: str, event: str, code: str,
                                                    broker: object) -> None:
    TRIED["unknown types, events, codes, brokers"] += 1
    data = json.dumps({"type": kind, "event": event, "code": code, "broker": broker, "symbols": [code]})
    check_labels(outcome(data.encode()))


frames = st.one_of(
    st.binary(max_size=200),
    st.builds(lambda k, b: json.dumps({"type": k, **b}).encode(), frame_types,
              st.dictionaries(st.sampled_from(["event", "code", "broker", "symbols", "gap_duration_ms",
                                               "requests_remaining", "details", "stale_since"]),
                              st.none() | st.text(max_size=20) | st.integers() | st.lists(st.text(max_size=9),
                                                                                          max_size=5),
                              max_size=6)),
)


@FUZZ
@given(st.lists(frames, max_size=30))
def test_the_whole_frame_path_never_raises_and_the_exposition_stays_valid(batch: list[bytes]) -> None:
    TRIED["random frame batches through decode, events and metrics"] += 1
    metrics = Metrics(CollectorRegistry())
    state = GatewayState(metrics, 5, grace_seconds=15.0)
    processor = FrameProcessor(metrics.stream, EventHandler(metrics, state), max_frame_bytes=4096)
    with capture_logs() as logs:
        for data in batch:
            processor.text(data)
    assert not [e for e in logs if e["event"] == "monitor.frame.handler_failed"], logs
    exposition = metrics.expose()[0].decode()
    for family in text_string_to_metric_families(exposition):
        for s in family.samples:
            assert s.labels.get("broker", protocol.OTHER) in BROKERS
    # Every frame is counted once: by type, or as invalid; a wrong_shape frame has a type and is both.
    invalid = metrics.stream.invalid
    assert metrics.stream.total_frames() + sum(invalid.values()) - invalid["wrong_shape"] == len(batch)
