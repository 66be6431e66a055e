"""The one module that sees the wire: opening the socket and reading it until it ends."""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
from aiohttp import WSCloseCode, WSMsgType

from .stream import FrameProcessor

PONG = '{"type":"pong"}'
# Frames above the monitor's limit are skipped one by one; only a frame this much
# larger is refused by the transport, which must then drop the connection (it
# cannot skip a frame it has not buffered).
TRANSPORT_LIMIT_FACTOR = 16
GOING_AWAY = int(WSCloseCode.GOING_AWAY)

Socket = aiohttp.ClientWebSocketResponse[bool]


class CannotConnect(Exception):
    """A connection attempt failed; `reason` is one of metrics.CONNECT_FAILURE_REASONS."""

    def __init__(self, reason: str, detail: str, status: int | None = None) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail
        self.status = status


async def connect(
    session: aiohttp.ClientSession,
    url: str,
    api_key: str | None,
    *,
    heartbeat: float,
    timeout: float,
    max_frame_bytes: int,
) -> Socket:
    """Open the event stream; raise CannotConnect with a bounded reason."""
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    try:
        async with asyncio.timeout(timeout):
            return await session.ws_connect(
                url,
                headers=headers,
                heartbeat=heartbeat,
                autoping=True,
                decode_text=False,  # orjson reads bytes; market data is never decoded to str
                max_msg_size=max_frame_bytes * TRANSPORT_LIMIT_FACTOR,
                timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
            )
    except aiohttp.WSServerHandshakeError as err:
        reason = "unauthorized" if err.status in (401, 403) else "http_error"
        raise CannotConnect(reason, f"HTTP {err.status} on upgrade", err.status) from err
    except aiohttp.ClientConnectorDNSError as err:
        raise CannotConnect("dns", f"cannot resolve {err.host}") from err
    except (aiohttp.ClientSSLError, aiohttp.ServerFingerprintMismatch) as err:
        raise CannotConnect("tls", str(err)) from err
    except aiohttp.ClientConnectorError as err:
        raise CannotConnect("refused", f"{err.host}:{err.port}: {err.strerror}") from err
    except TimeoutError as err:
        raise CannotConnect("timeout", f"no upgrade within {timeout:g}s") from err
    except (aiohttp.ClientError, OSError) as err:
        raise CannotConnect("error", f"{type(err).__name__}: {err}") from err


async def pump(ws: Socket, processor: FrameProcessor) -> str:
    """Feed every frame to `processor` until the socket ends; return the disconnect reason.

    Frames that aiohttp has already parsed are taken together: after each receive(), the
    text messages waiting behind it are read as one batch (see _buffered_texts), so a
    burst costs one pass of the processor rather than one receive() per frame.
    """
    receive = ws.receive
    texts = processor.texts
    text, binary = WSMsgType.TEXT, WSMsgType.BINARY
    queue = _buffered_texts(ws)
    processor.connection_opened()
    while True:
        msg = await receive()
        kind = msg.type
        if kind is text:
            batch = [msg.data]
            if queue is not None:
                buffer, read = queue
                try:
                    # read() returns at once here: the buffer holds a TEXT message.
                    while buffer and buffer[0][0].type is text:
                        batch.append((await read()).data)
                except (AttributeError, IndexError, TypeError):
                    queue = None  # this aiohttp keeps its queue otherwise: receive() only
            for _ in range(texts(batch)):
                await ws.send_str(PONG)
        elif kind is binary:
            processor.binary(msg.data)
        else:
            return _disconnect_reason(ws, msg, processor)


def _buffered_texts(ws: Socket) -> tuple[deque[Any], Callable[[], Awaitable[Any]]] | None:
    """aiohttp's queue of parsed messages and its read(), or None to use receive() alone.

    PRIVATE aiohttp API, guarded: in aiohttp 3.14 (checked on 3.14.5) `ClientWebSocketResponse._reader`
    is a WebSocketDataQueue whose public-in-Cython `_buffer` holds (message, size) pairs
    and whose read() pops one with its flow-control bookkeeping. For a TEXT message
    receive() only adds checks that have nothing to do (no close, no ping), so reading
    buffered TEXT messages directly is equivalent and ~0.12 µs/frame cheaper. Anything
    else, and every wait for data, still goes through receive(). If the attributes are
    missing, or a buffered item is not shaped as expected (pump catches the error before
    anything is read), the monitor falls back to receive() for every frame.
    tests/test_hotpath.py checks both paths and fails when aiohttp stops exposing these.
    """
    reader = getattr(ws, "_reader", None)
    buffer = getattr(reader, "_buffer", None)
    read = getattr(reader, "read", None)
    if isinstance(buffer, deque) and callable(read):
        return buffer, read
    return None


def _disconnect_reason(ws: Socket, msg: Any, processor: FrameProcessor) -> str:
    reason = _how_it_ended(ws, msg, processor)
    if reason in _SHUTDOWN_ENDINGS and processor.shutting_down():
        return "gateway_shutdown"
    return reason


# The ways a shutting-down gateway's socket ends: its close frame, or, when the process
# exits first, the end of the TCP stream (seen as a lost connection or a reset).
_SHUTDOWN_ENDINGS = frozenset({"closed_by_gateway", "connection_lost", "error"})


def _how_it_ended(ws: Socket, msg: Any, processor: FrameProcessor) -> str:
    if msg.type is WSMsgType.ERROR:
        err = msg.data
        if isinstance(err, asyncio.TimeoutError | aiohttp.ServerTimeoutError):
            return "heartbeat_timeout"
        if isinstance(err, aiohttp.WebSocketError):
            if err.code == WSCloseCode.MESSAGE_TOO_BIG:
                processor.invalid("too_large", str(err), b"")
                return "frame_too_large"
            return "protocol_error"
        return "error"
    if msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSING):
        return "gateway_shutdown" if ws.close_code == GOING_AWAY else "closed_by_gateway"
    # CLOSED without a close frame: the TCP connection went away under us.
    return "connection_lost"
