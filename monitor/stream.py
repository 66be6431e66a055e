"""The per-frame path: count every frame, decode only the ones that matter."""

from __future__ import annotations

import time

import structlog

from . import protocol
from .decode import (
    MARKET_BY_FIRST_BYTE,
    MARKET_PREFIXES,
    QUOTE_PREFIX,
    TYPE_OFFSET,
    ConnectionEvent,
    Event,
    InvalidFrame,
    PingEvent,
    StalenessEvent,
    decode,
    leading_order_event,
    to_event,
    trailing_market_data_type,
)
from .events import EventHandler
from .feed import FeedHealth
from .metrics import StreamStats

log = structlog.get_logger("monitor.stream")

PREVIEW_BYTES = 120
_TICK_KINDS = frozenset({"quote", "candle"})
SHUTDOWN_PAUSE_SECONDS = 2.5
"""A socket that ends this soon after a DISCONNECTING (no broker) ended in a gateway shutdown.

The gateway waits 0.5 s between DISCONNECTING and its close frame, and in about a third of
shutdowns the process exits first: the socket then ends without a close frame.
"""


class FrameProcessor:
    """Consumes text and binary frames; a bad frame costs one counter and one log line."""

    def __init__(self, stats: StreamStats, handler: EventHandler, max_frame_bytes: int,
                 feed: FeedHealth | None = None) -> None:
        self._stats = stats
        self._frames = stats.frames
        self._handler = handler
        self._max = max_frame_bytes
        self._feed = feed
        self._log = log.bind()  # as in EventHandler: the module's lazy proxy costs ~1 µs a line
        self._shutdown_announced_at: float | None = None

    def connection_opened(self) -> None:
        """Forget what the previous connection announced."""
        self._shutdown_announced_at = None

    def shutting_down(self) -> bool:
        """True when the gateway announced its shutdown within the last SHUTDOWN_PAUSE_SECONDS.

        DISCONNECTING without a broker is a shutdown only when nothing about a broker follows
        it: the Saxo adapter sends one before every BROKER_DISCONNECTED, with the gateway up.
        """
        announced = self._shutdown_announced_at
        return announced is not None and time.monotonic() - announced <= SHUTDOWN_PAUSE_SECONDS

    def texts(self, batch: list[bytes]) -> int:
        """Process text frames that arrived together; return how many asked for a JSON pong.

        Market data (~90% of frames) is only counted: its type is read from the raw
        bytes (decode.market_data_type, inlined here because this loop runs once per
        frame at up to a million frames a second). Everything else is decoded. Feed health
        then reads the batch's ticks (monitor/feed.py, FeedHealth.read).
        """
        now = time.time()
        self._stats.last_frame_time = now
        frames, limit, slow = self._frames, self._max, self._decoded
        prefixes, by_first_byte = MARKET_PREFIXES, MARKET_BY_FIRST_BYTE
        # Quotes, most of the stream, are counted in a local: ~0.03 µs less a frame.
        quote = QUOTE_PREFIX
        quotes = pongs = 0
        for data in batch:
            if data.startswith(quote) and len(data) <= limit:
                quotes += 1
            elif data.startswith(prefixes) and len(data) <= limit:
                frames[by_first_byte[data[TYPE_OFFSET]]] += 1
            elif slow(data):
                pongs += 1
        frames["quote"] += quotes
        feed = self._feed
        if feed is not None:  # past its budget feed health skips most batches: this costs ~nothing then
            skip = feed.skip
            if skip >= len(batch):
                feed.skip = skip - len(batch)
            else:
                try:
                    feed.read(batch[skip:] if skip else batch, now)
                except Exception:  # a bug in feed health costs its ticks, never the connection
                    self._log.exception("monitor.feed.failed")
        return pongs

    def text(self, data: bytes) -> bool:
        """Process one text frame; True when the gateway asked for a JSON pong."""
        return self.texts([data]) > 0

    def _decoded(self, data: bytes) -> bool:
        if len(data) <= self._max:
            kind = trailing_market_data_type(data)
            if kind is not None:
                self._frames[kind] += 1
                return False
            order = leading_order_event(data)
            if order is not None:
                self._frames["order"] += 1
                self._handle("order", order)
                return False
        try:
            if len(data) > self._max:
                raise InvalidFrame("too_large", f"{len(data)} bytes > limit {self._max}")
            kind, obj = decode(data)
            self._frames[kind] += 1
            if self._feed is not None and kind in _TICK_KINDS:  # e.g. `{"type": "quote"` (a space)
                self._feed.tick_object(kind, obj, self._stats.last_frame_time)
            event = to_event(kind, obj)
        except InvalidFrame as err:
            self.invalid(err.reason, err.detail, data)
            return False
        if event is None:
            return False
        if isinstance(event, PingEvent):
            return True
        if isinstance(event, ConnectionEvent | StalenessEvent):
            self._note_shutdown_signal(event)
        self._handle(kind, event)
        return False

    def _note_shutdown_signal(self, event: ConnectionEvent | StalenessEvent) -> None:
        if event.broker == protocol.NO_BROKER:
            if isinstance(event, ConnectionEvent) and event.event == "DISCONNECTING":
                self._shutdown_announced_at = time.monotonic()
        else:
            self._shutdown_announced_at = None  # a broker frame: that DISCONNECTING was the broker's

    def _handle(self, kind: str, event: Event) -> None:
        try:
            self._handler.handle(event)
        except Exception:  # a handler bug costs this frame, never the connection
            self._log.exception("monitor.frame.handler_failed", frame_type=kind)

    def binary(self, data: bytes) -> None:
        """The gateway speaks JSON text only: a binary frame is counted and skipped."""
        self._stats.last_frame_time = time.time()
        self.invalid("binary", f"{len(data)} bytes", data)

    def invalid(self, reason: str, detail: str, data: bytes) -> None:
        """Count and log one unusable frame."""
        self._stats.invalid[reason] += 1
        self._log.warning("monitor.frame.invalid", reason=reason, detail=detail[:200],
                    size=len(data), preview=data[:PREVIEW_BYTES].decode("utf-8", "replace"))
