"""The per-frame fast paths give the same answers as the slow ones.

The pump reads frames that aiohttp has already parsed straight from its queue (a PRIVATE
aiohttp API, guarded): these tests fail when aiohttp stops exposing it, and check that
the fallback to receive() counts the same frames. The raw-bytes type prefilters must
never disagree with a full decode.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import aiohttp
import orjson
import pytest
from aiohttp import web
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry

from monitor import connection
from monitor.decode import InvalidFrame, decode, leading_tick, market_data_type, trailing_market_data_type
from monitor.events import EventHandler
from monitor.feed import FeedHealth
from monitor.gateway_state import GatewayState
from monitor.instrument import FeedSettings
from monitor.metrics import Metrics
from monitor.stream import FrameProcessor

FRAMES = 3000
KINDS = ["quote", "candle", "trade", "order", "error", "connection", "ping", "quotes", "galaxy", "Quote"]

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**63), 2**63 - 1) | st.text(max_size=12),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.sampled_from(["type", "a", "b"]), inner,
                                                                 max_size=3),
    max_leaves=6,
)


@given(
    kind=st.sampled_from(KINDS) | st.text(max_size=8),
    others=st.dictionaries(st.sampled_from(["event_id", "quote", "bar", "timestamp", "a", "zz"]), json_values,
                           max_size=4),
    sort_keys=st.booleans(),
)
def test_the_prefilters_never_disagree_with_decode(
    kind: str, others: dict[str, Any], sort_keys: bool
) -> None:
    frame = orjson.dumps({"type": kind, **others}, option=orjson.OPT_SORT_KEYS if sort_keys else 0)
    for prefilter in (market_data_type, trailing_market_data_type):
        found = prefilter(frame)
        if found is not None:
            assert found == decode(frame)[0]
    tick = leading_tick(frame)
    if tick is not None:
        assert tick[0] == decode(frame)[0]


@pytest.mark.parametrize("kind", ["quote", "candle", "trade"])
def test_sorted_key_market_data_is_recognised_from_its_end(kind: str) -> None:
    frame = orjson.dumps({"type": kind, kind: {"symbol": "AAPL", "type": "x"}, "event_id": "evt_1"},
                         option=orjson.OPT_SORT_KEYS)
    assert trailing_market_data_type(frame) == kind


@pytest.mark.parametrize(
    "frame",
    [
        b'{"event_id":"e","order":{"type":"quote"}}',  # nested: not the top-level type
        b'{"event_id":"e","type":"quote"} ',  # trailing whitespace: decode decides
        b'{"event_id":"e","type":"quotes"}',
        b'"type":"quote"}',
        b"",
    ],
)
def test_trailing_prefilter_declines_what_it_cannot_be_sure_of(frame: bytes) -> None:
    assert trailing_market_data_type(frame) is None


def processor(max_frame_bytes: int = 1 << 20, feed: bool = True) -> FrameProcessor:
    metrics = Metrics(CollectorRegistry())
    state = GatewayState(metrics, 10, grace_seconds=15.0)
    health = FeedHealth(metrics, state, FeedSettings(), lambda: True) if feed else None
    return FrameProcessor(metrics.stream, EventHandler(metrics, state), max_frame_bytes, health)


def expected_counts(frames: list[bytes]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for frame in frames:
        try:
            kind = decode(frame)[0]
        except InvalidFrame:
            continue
        counts[kind] = counts.get(kind, 0) + 1
    return counts


def mixed_frames() -> list[bytes]:
    frames = []
    for i in range(60):
        kind = KINDS[i % len(KINDS)]
        body = {"type": kind, "event": "ORDER_FILLED", "code": "INTERNAL_ERROR", "n": i}
        frames.append(orjson.dumps(body))
        frames.append(orjson.dumps({**body, "event_id": f"e{i}"}, option=orjson.OPT_SORT_KEYS))
    return [*frames, b"{broken", b"[1]", b'{"type": "quote"}']


@pytest.mark.parametrize("feed", [True, False])
def test_a_batch_is_counted_as_decode_would_count_each_frame(feed: bool) -> None:
    frames = mixed_frames()
    proc = processor(feed=feed)
    proc.texts(frames)
    counted = {kind: n for kind, n in proc._frames.items() if n}
    assert counted == expected_counts(frames)
    assert proc._stats.invalid["invalid_json"] == 1 and proc._stats.invalid["not_object"] == 1


def test_a_batch_answers_each_json_ping_and_counts_oversized_market_data_as_invalid() -> None:
    proc = processor(max_frame_bytes=1024)
    big = orjson.dumps({"type": "quote", "pad": "x" * 2000})
    assert proc.texts([b'{"type":"ping"}', big, b'{"type":"quote"}', b'{"type":"ping"}']) == 2
    assert proc._stats.invalid["too_large"] == 1
    assert proc._frames["quote"] == 1 and proc._frames["ping"] == 2


# ---------------------------------------------------------------- the pump, over a real socket

Gateway = Callable[[list[bytes]], Awaitable[tuple[aiohttp.ClientWebSocketResponse[bool], list[str]]]]


@pytest.fixture
async def gateway() -> AsyncIterator[Gateway]:
    """A gateway that writes `frames` at once (so the client buffers them), then closes."""
    runners: list[web.AppRunner] = []
    sessions: list[aiohttp.ClientSession] = []

    async def make(frames: list[bytes]) -> tuple[aiohttp.ClientWebSocketResponse[bool], list[str]]:
        received: list[str] = []
        release = asyncio.Event()

        async def handler(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse()
            await ws.prepare(request)
            await release.wait()
            for frame in frames:
                await ws.send_str(frame.decode())
            async for msg in ws:  # pongs, until the client has seen everything
                received.append(msg.data)
                if len(received) == sum(f == b'{"type":"ping"}' for f in frames):
                    break
            await ws.close()
            return ws

        app = web.Application()
        app.router.add_get("/v1/ws", handler)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        runners.append(runner)
        port = runner.addresses[0][1]
        session = aiohttp.ClientSession()
        sessions.append(session)
        ws = await connection.connect(session, f"ws://127.0.0.1:{port}/v1/ws", None, heartbeat=5.0,
                                      timeout=5.0, max_frame_bytes=1 << 20)
        release.set()
        await asyncio.sleep(0.2)  # every frame reaches the client's queue before the pump starts
        return ws, received

    yield make
    for session in sessions:
        await session.close()
    for runner in runners:
        await runner.cleanup()


def burst() -> list[bytes]:
    frames = [orjson.dumps({"type": "quote", "quote": {"symbol": "AAPL", "bid": str(i)}})
              for i in range(FRAMES)]
    frames[FRAMES // 2] = b'{"type":"ping"}'
    frames[FRAMES // 3] = b'{"event_id":"e","quote":{},"type":"quote"}'
    return frames


class Spy:
    """Records the size of every batch the pump hands to the processor."""

    def __init__(self, proc: FrameProcessor) -> None:
        self.sizes: list[int] = []
        real = proc.texts

        def texts(batch: list[bytes]) -> int:
            self.sizes.append(len(batch))
            return real(batch)

        proc.texts = texts  # type: ignore[method-assign]


async def test_the_pump_reads_buffered_frames_in_batches_with_this_aiohttp(gateway: Gateway) -> None:
    ws, pongs = await gateway(burst())
    assert connection._buffered_texts(ws) is not None, "aiohttp no longer exposes its message queue"
    proc = processor()
    spy = Spy(proc)
    reason = await asyncio.wait_for(connection.pump(ws, proc), 10)
    assert reason == "closed_by_gateway"
    assert proc._frames["quote"] == FRAMES - 1 and proc._frames["ping"] == 1
    assert pongs == [connection.PONG]
    assert max(spy.sizes) > 100  # batches, not one receive() per frame


@pytest.mark.parametrize("queue", [None, (deque([object()]), None)], ids=["no-internals", "unknown-shape"])
async def test_without_the_private_queue_the_pump_counts_the_same(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch, queue: Any
) -> None:
    monkeypatch.setattr(connection, "_buffered_texts", lambda ws: queue)
    ws, pongs = await gateway(burst())
    proc = processor()
    reason = await asyncio.wait_for(connection.pump(ws, proc), 10)
    assert reason == "closed_by_gateway"
    assert proc._frames["quote"] == FRAMES - 1 and proc._frames["ping"] == 1
    assert pongs == [connection.PONG]


def test_quotes_and_candles_tick_their_instrument_in_any_shape_but_backtest_frames_do_not() -> None:
    quote = {"symbol": "EURUSD", "provider": "saxo", "bid": "1", "ask": "1", "last": "1", "timestamp": "t"}
    bar = {"symbol": "AAPL", "provider": "mock", "timeframe": "1m", "timestamp": "t", "open": "1"}
    frames = [
        orjson.dumps({"type": "quote", "quote": quote, "timestamp": "t"}),  # the gateway's usual shape
        orjson.dumps({"type": "quote", "quote": dict(reversed(list({**quote, "symbol": "GBPUSD"}.items())))}),
        orjson.dumps({"type": "candle", "bar": bar, "timestamp": "t"}),
        orjson.dumps({"type": "candle", "timestamp": "t", "bar": {**bar, "symbol": "MSFT"}}),
        orjson.dumps({"type": "quote", "quote": {**quote, "symbol": "BACKTEST"}, "event_id": "e1"},
                     option=orjson.OPT_SORT_KEYS),
        orjson.dumps({"type": "trade", "event": "TRADE_FILLED", "trade": {"symbol": "FILLED"}}),
    ]
    proc = processor()
    proc.texts(frames)
    feed = proc._feed
    assert feed is not None
    feed.merge()
    assert sorted(feed.instruments) == [("mock", "AAPL"), ("mock", "MSFT"), ("saxo-sim", "EURUSD"),
                                        ("saxo-sim", "GBPUSD")]
    assert {k: n for k, n in proc._frames.items() if n} == {"quote": 3, "candle": 2, "trade": 1}
