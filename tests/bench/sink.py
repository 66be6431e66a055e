"""The practical ceiling: an aiohttp client that only receives and discards frames.

Same connection options as the monitor (monitor/connection.py `connect`, with the monitor's
defaults: MONITOR_HEARTBEAT_SECONDS 10, MONITOR_MAX_FRAME_BYTES 1 MiB x 16 at the transport):
bytes not str, autoping, heartbeat, the same size limit, a default ClientSession. Prints one
JSON line when `--count` frames have arrived.

`--batched` reads as the monitor's pump does (monitor/connection.py `pump`): after each
receive(), the TEXT messages already parsed and waiting in aiohttp's queue are taken with the
queue's own read() into one batch (a private aiohttp API; this client fails rather than fall
back if it is missing, so it never silently measures the other variant). With the sender's
large writes that is the faster receive-only client; run.py's `ratio` part measures both and
takes the faster as the ceiling.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time
from collections import deque

import aiohttp
from aiohttp import WSMsgType


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    parser.add_argument("--batched", action="store_true", help="read queued frames in batches, as the pump")
    args = parser.parse_args()
    async with aiohttp.ClientSession() as session, session.ws_connect(
        args.url, heartbeat=10.0, autoping=True, decode_text=False, max_msg_size=16 * 1024 * 1024,
        timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
    ) as ws:
        print(json.dumps({"connected": True, "pid": os.getpid()}), flush=True)
        receive, text = ws.receive, WSMsgType.TEXT
        n, count, first = 0, args.count, 0.0
        buffer = read = None
        if args.batched:
            reader = ws._reader
            buffer, read = reader._buffer, reader.read
            if not isinstance(buffer, deque) or not callable(read):
                raise SystemExit("this aiohttp has no reader queue to batch from")
        cpu0 = time.process_time()
        async with asyncio.timeout(args.timeout):
            if buffer is not None and read is not None:
                while n < count:
                    msg = await receive()
                    if msg.type is text:
                        if not n:
                            first = time.time()
                        batch = [msg.data]
                        while buffer and buffer[0][0].type is text:
                            batch.append((await read()).data)
                        n += len(batch)
                    elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                        break
            else:
                while n < count:
                    msg = await receive()
                    if msg.type is text:
                        if not n:
                            first = time.time()
                        n += 1
                    elif msg.type in (WSMsgType.CLOSE, WSMsgType.CLOSED, WSMsgType.ERROR):
                        break
        last = time.time()
        cpu = time.process_time() - cpu0
    print(json.dumps({"frames": n, "first": first, "last": last, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
