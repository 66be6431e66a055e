"""One upgraded WebSocket client: a bounded send queue drained by its own writer task."""

from __future__ import annotations

import asyncio
import contextlib
import enum

from aiohttp import WSMsgType, web

Outgoing = tuple[bytes, WSMsgType]

# How long a close waits for already-queued frames (DISCONNECTING) to reach the socket.
DRAIN_SECONDS = 1.0


class Offer(enum.Enum):
    """What happened to one message offered to one client."""

    QUEUED = "queued"
    DROPPED = "dropped"
    CLOSING = "closing"


class Client:
    """A connected client as the gateway sees it: queue, writer task, transport."""

    def __init__(
        self,
        ws: web.WebSocketResponse,
        transport: asyncio.Transport | None,
        queue_size: int,
        writable: asyncio.Event,
    ) -> None:
        self.ws = ws
        self._transport = transport
        self._queue: asyncio.Queue[Outgoing] = asyncio.Queue(maxsize=queue_size)
        self._writable = writable
        self._closing = False
        self._writer = asyncio.create_task(self._write_loop(), name="sim-ws-writer")

    def offer(self, data: bytes, opcode: WSMsgType) -> Offer:
        """Queue one message; a full queue drops it, as the real gateway does."""
        if self._closing:
            return Offer.CLOSING
        try:
            self._queue.put_nowait((data, opcode))
        except asyncio.QueueFull:
            return Offer.DROPPED
        return Offer.QUEUED

    async def _write_loop(self) -> None:
        while True:
            data, opcode = await self._queue.get()
            try:
                # A black-holed gateway holds what it has instead of writing it.
                await self._writable.wait()
                await self.ws.send_frame(data, opcode)
            except (ConnectionError, RuntimeError):
                return
            finally:
                self._queue.task_done()

    def pause(self) -> None:
        """Stop reading from the socket: pings stay unanswered, TCP stays open."""
        if self._transport is not None:
            self._transport.pause_reading()

    def resume(self) -> None:
        """Read from the socket again after pause()."""
        if self._transport is not None:
            self._transport.resume_reading()

    async def close(self, code: int, message: bytes) -> None:
        """Flush what is queued (briefly), then send a close frame with `code`."""
        self._closing = True
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._queue.join(), DRAIN_SECONDS)
        await self._stop_writer()
        with contextlib.suppress(ConnectionError, RuntimeError):
            await self.ws.close(code=code, message=message)

    def abort(self) -> None:
        """Drop the connection without a close frame, as a dying process would."""
        self._closing = True
        self._writer.cancel()
        if self._transport is not None:
            self._transport.abort()

    async def finish(self) -> None:
        """Release the writer task once the handler is done with this client."""
        self._closing = True
        await self._stop_writer()

    async def _stop_writer(self) -> None:
        self._writer.cancel()
        # wait() rather than awaiting the task: a cancel aimed at us must not be swallowed.
        await asyncio.wait([self._writer])
