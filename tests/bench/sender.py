"""A WebSocket sender that is not the bottleneck: pre-framed bytes written in large batches.

Run by tests/bench/run.py as its own process, on 127.0.0.1 only. It speaks just enough
HTTP/WebSocket for the monitor, the aiohttp sink and the SDK: the upgrade on /v1/ws
(the client's role comes from `?role=`, default `monitor`), answers to protocol pings,
close, and the three probe endpoints. Everything clients send is otherwise discarded.

Commands arrive as JSON lines on stdin; each gets one JSON line on stdout:
  {"cmd": "wait", "role": R, "timeout": s}            wait for a client of that role
  {"cmd": "flood", "role": R, "corpus": C, "count": n, "close": bool}
        as fast as the client reads (flow control of the socket), whole batches per write
  {"cmd": "paced", "role": R, "corpus": C, "rate": f, "seconds": s, "queue": 1024}
        at a fixed rate, through a model of the gateway's per-client queue: `queue` slots,
        a frame produced while the queue is full is dropped and counted (the gateway's
        slow-consumer behaviour); the writer empties the queue whenever the socket takes
        data (64 KiB user-space buffer, like a writer awaiting each flush)
  {"cmd": "staleness", "role": R, "prefix": P, "count": n}   STALE frames naming n new symbols
  {"cmd": "instruments", "role": R, "count": n, "rounds": k}   quotes of n instruments, k times over
  {"cmd": "quit"}
Corpora (tests/bench/corpus.py): "stress" (alias "mix": 70% quote, 20% candle, 5% order, 5%
monitoring frames), "live" (what a gateway sends a market-data subscriber: ~97% quotes),
both with `type` first; "backtest" (stress with event_id, sorted keys); "soak" (stress with
one critical frame every 10,000).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import bisect
import hashlib
import json
import os
import sys
import time
from collections import deque
from typing import Any
from urllib.parse import parse_qs, urlsplit

import corpus as corpora

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
BATCH_BYTES = 256 * 1024
FLOOD_HIGH_WATER = 4 * 1024 * 1024
GATEWAY_HIGH_WATER = 64 * 1024
TICK_SECONDS = 0.001
CORPUS_FRAMES = 100_000
CRITICAL_EVERY = 10_000
PROBES = {
    "/livez": b'{"status":"ok"}',
    "/readyz": b'{"ready":true,"providers":["alpaca-paper"],"provider_count":1}',
    "/health": b'{"status":"connected","version":"bench","git_sha":"bench",'
               b'"providers":[{"platform":"alpaca-paper","connected":true}]}',
}


class Server:
    def __init__(self) -> None:
        self.clients: dict[str, Conn] = {}
        self.arrived: dict[str, asyncio.Event] = {}

    def event(self, role: str) -> asyncio.Event:
        return self.arrived.setdefault(role, asyncio.Event())

    def upgraded(self, role: str, conn: Conn) -> None:
        self.clients[role] = conn
        self.event(role).set()

    def gone(self, role: str, conn: Conn) -> None:
        if self.clients.get(role) is conn:
            del self.clients[role]
            self.event(role).clear()


class Conn(asyncio.Protocol):
    """One TCP connection: an HTTP request (probe or upgrade), then WebSocket frames."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.transport: asyncio.Transport | None = None
        self.buf = bytearray()
        self.role: str | None = None
        self.writable = asyncio.Event()
        self.writable.set()
        self.closed = asyncio.Event()
        self.received = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        transport.set_write_buffer_limits(high=FLOOD_HIGH_WATER)

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed.set()
        self.writable.set()
        if self.role is not None:
            self.server.gone(self.role, self)

    def pause_writing(self) -> None:
        self.writable.clear()

    def resume_writing(self) -> None:
        self.writable.set()

    def data_received(self, data: bytes) -> None:
        self.buf += data
        if self.role is None:
            self._request()
        else:
            self._frames()

    def _request(self) -> None:
        end = self.buf.find(b"\r\n\r\n")
        if end < 0:
            return
        head = bytes(self.buf[:end]).decode("latin-1").split("\r\n")
        del self.buf[:end + 4]
        target = head[0].split(" ")[1]
        headers = {k.strip().lower(): v.strip() for k, _, v in (h.partition(":") for h in head[1:])}
        url = urlsplit(target)
        assert self.transport is not None
        key = headers.get("sec-websocket-key")
        if url.path.endswith("/v1/ws") and key:
            accept = base64.b64encode(hashlib.sha1(key.encode() + GUID).digest()).decode()
            self.transport.write(
                b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                + f"Sec-WebSocket-Accept: {accept}\r\n\r\n".encode())
            # The role: ?role=R, else a path prefix (/R/v1/ws: a monitor whose GATEWAY_URL
            # ends in /R), else "monitor".
            prefix = url.path[:-len("/v1/ws")].strip("/")
            self.role = parse_qs(url.query).get("role", [prefix or "monitor"])[0]
            self.server.upgraded(self.role, self)
            self._frames()
            return
        body = PROBES.get("/" + url.path.rsplit("/", 1)[-1])
        status = b"200 OK" if body is not None else b"404 Not Found"
        body = body or b'{"code":"NOT_FOUND"}'
        self.transport.write(b"HTTP/1.1 " + status + b"\r\nContent-Type: application/json\r\n"
                             + f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n".encode() + body)
        self.transport.close()

    def _frames(self) -> None:
        """Parse client frames (masked): answer pings and close, discard the rest."""
        buf = self.buf
        while len(buf) >= 2:
            opcode, length, pos = buf[0] & 0x0F, buf[1] & 0x7F, 2
            if length == 126:
                if len(buf) < 4:
                    return
                length, pos = int.from_bytes(buf[2:4], "big"), 4
            elif length == 127:
                if len(buf) < 10:
                    return
                length, pos = int.from_bytes(buf[2:10], "big"), 10
            masked = buf[1] & 0x80
            end = pos + (4 if masked else 0) + length
            if len(buf) < end:
                return
            self.received += 1
            if opcode in (0x8, 0x9):
                mask = buf[pos:pos + 4] if masked else b"\0\0\0\0"
                start = pos + (4 if masked else 0)
                payload = bytes(b ^ mask[i % 4] for i, b in enumerate(buf[start:end]))
                assert self.transport is not None
                if opcode == 0x9:
                    self.transport.write(corpora.ws_frame(payload, 0xA))
                else:
                    self.transport.write(corpora.ws_frame(payload[:2], 0x8))
                    self.transport.close()
            del buf[:end]

    async def write_all(self, data: bytes) -> None:
        await self.writable.wait()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)


class Sender:
    def __init__(self, server: Server) -> None:
        self.server = server
        self.corpora: dict[str, corpora.Corpus] = {}

    def corpus(self, name: str) -> corpora.Corpus:
        name = corpora.ALIASES.get(name, name)
        if name not in self.corpora:
            if name in corpora.MIXES:
                self.corpora[name] = corpora.build(CORPUS_FRAMES, seed=7, mix=name)
            elif name == "backtest":
                self.corpora[name] = corpora.build(CORPUS_FRAMES, seed=7, backtest=True)
            elif name == "soak":
                self.corpora[name] = corpora.build(CORPUS_FRAMES, seed=11, critical_every=CRITICAL_EVERY)
            else:
                raise ValueError(f"unknown corpus {name}")
        return self.corpora[name]

    async def client(self, role: str, timeout: float = 30.0) -> Conn:
        await asyncio.wait_for(self.server.event(role).wait(), timeout)
        return self.server.clients[role]

    async def flood(self, role: str, corpus: str, count: int, close: bool = False) -> dict[str, Any]:
        conn = await self.client(role)
        c = self.corpus(corpus)
        offsets, blob, size = c.offsets, c.blob, len(c)
        cpu0 = time.process_time()
        started = time.time()
        sent = nbytes = writes = 0
        while sent < count and not conn.closed.is_set():
            first = sent % size
            last = bisect.bisect_right(offsets, offsets[first] + BATCH_BYTES) - 1
            last = max(first + 1, min(last, size, first + count - sent))
            chunk = blob[offsets[first]:offsets[last]]
            await conn.write_all(chunk)
            sent += last - first
            nbytes += len(chunk)
            writes += 1
        await _drained(conn)
        written = time.time()
        if close and conn.transport is not None:
            conn.transport.close()
        return {"sent": sent, "bytes": nbytes, "writes": writes, "started": started,
                "written": written, "cpu": time.process_time() - cpu0}

    async def paced(self, role: str, corpus: str, rate: float, seconds: float,
                    queue: int = 1024) -> dict[str, Any]:
        """Produce `rate` frames/s for `seconds` into a `queue`-slot queue that drops when full."""
        conn = await self.client(role)
        assert conn.transport is not None
        conn.transport.set_write_buffer_limits(high=GATEWAY_HIGH_WATER)
        c = self.corpus(corpus)
        offsets, blob, size = c.offsets, c.blob, len(c)
        total = int(rate * seconds)
        runs: deque[tuple[int, int]] = deque()
        queued = produced = dropped = peak = written = 0
        dropped_critical: dict[str, int] = {}
        loop = asyncio.get_running_loop()
        cpu0 = time.process_time()
        t0 = loop.time()
        started = time.time()
        transport = conn.transport

        def flush() -> None:
            nonlocal queued, written
            while runs and conn.writable.is_set() and not conn.closed.is_set():
                a, b = runs.popleft()
                queued -= b - a
                written += b - a
                while a < b:
                    first = a % size
                    last = min(size, first + (b - a))
                    transport.write(blob[offsets[first]:offsets[last]])
                    a += last - first

        max_gap, last_tick = 0.0, t0
        while (produced < total or runs) and not conn.closed.is_set():
            now = loop.time()
            max_gap, last_tick = max(max_gap, now - last_tick), now
            due = min(total, int((now - t0) * rate)) - produced
            # Frames due after a stall of this process are produced and written in turn, as
            # the gateway's producer and writer would have done meanwhile: only a socket that
            # stays full (the client not reading) lets the queue fill and drop.
            while due > 0:
                take = min(due, queue - queued)
                if take:
                    runs.append((produced, produced + take))
                    queued += take
                    produced += take
                    due -= take
                flush()
                peak = max(peak, queued)
                if due and queued >= queue:
                    for i in range(produced, produced + due):
                        name = c.critical[i % size]
                        if name is not None:
                            dropped_critical[name] = dropped_critical.get(name, 0) + 1
                    dropped += due
                    produced += due
                    due = 0
            flush()
            await asyncio.sleep(TICK_SECONDS)
        elapsed = loop.time() - t0
        await _drained(conn)
        conn.transport.set_write_buffer_limits(high=FLOOD_HIGH_WATER)
        critical = _critical_counts(c, total)
        return {"produced": produced, "written": written, "dropped": dropped, "peak_queue": peak,
                "seconds": elapsed, "started": started, "cpu": time.process_time() - cpu0,
                "max_tick_gap_ms": max_gap * 1000,
                "critical": critical, "dropped_critical": dropped_critical}

    async def staleness(self, role: str, prefix: str, count: int) -> dict[str, Any]:
        conn = await self.client(role)
        symbols = [f"{prefix}{i:07d}" for i in range(count)]
        c = corpora.staleness_frames(symbols)
        started = time.time()
        for i in range(0, len(c), 200):
            await conn.write_all(c.blob[c.offsets[i]:c.offsets[min(len(c), i + 200)]])
        await _drained(conn)
        return {"frames": len(c), "symbols": count, "started": started}


    async def instruments(self, role: str, count: int, rounds: int) -> dict[str, Any]:
        conn = await self.client(role)
        c = corpora.instrument_quotes(count, rounds)
        started = time.time()
        for i in range(0, len(c), 200):
            await conn.write_all(c.blob[c.offsets[i]:c.offsets[min(len(c), i + 200)]])
        await _drained(conn)
        return {"frames": len(c), "instruments": count, "started": started}


def _critical_counts(c: corpora.Corpus, total: int) -> dict[str, int]:
    size = len(c)
    counts: dict[str, int] = {}
    for i, name in enumerate(c.critical):
        if name is not None:
            counts[name] = counts.get(name, 0) + total // size + (1 if i < total % size else 0)
    return counts


async def _drained(conn: Conn, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while (conn.transport is not None and conn.transport.get_write_buffer_size() > 0
           and not conn.closed.is_set() and time.monotonic() < deadline):
        await asyncio.sleep(0.001)


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--corpora", default="stress", help="comma-separated corpora to build up front")
    args = parser.parse_args()
    loop = asyncio.get_running_loop()
    server = Server()
    srv = await loop.create_server(lambda: Conn(server), "127.0.0.1", args.port)
    sender = Sender(server)
    for name in filter(None, args.corpora.split(",")):
        sender.corpus(name)
    port = srv.sockets[0].getsockname()[1]
    _reply({"ready": True, "port": port, "pid": os.getpid()})
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    while line := await reader.readline():
        cmd = json.loads(line)
        name = cmd.pop("cmd")
        try:
            if name == "quit":
                break
            if name == "wait":
                conn = await sender.client(cmd["role"], cmd.get("timeout", 30.0))
                _reply({"ok": True, "received": conn.received})
            else:
                _reply({"ok": True, **await getattr(sender, name)(**cmd)})
        except Exception as err:  # the harness reports it; the sender stays up
            _reply({"ok": False, "error": f"{type(err).__name__}: {err}"})
    srv.close()


def _reply(obj: dict[str, Any]) -> None:
    sys.stdout.write(json.dumps(obj) + "\n")
    sys.stdout.flush()


if __name__ == "__main__":
    asyncio.run(main())
