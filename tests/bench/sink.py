"""The practical ceiling: an aiohttp client that only receives and discards frames.

Same connection options as the monitor (monitor/connection.py): bytes not str, autoping,
heartbeat, the same size limit. Prints one JSON line when `--count` frames have arrived.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import time

import aiohttp
from aiohttp import WSMsgType


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=120.0)
    args = parser.parse_args()
    async with aiohttp.ClientSession() as session, session.ws_connect(
        args.url, heartbeat=10.0, autoping=True, decode_text=False, max_msg_size=16 * 1024 * 1024,
        timeout=aiohttp.ClientWSTimeout(ws_close=1.0),
    ) as ws:
        print(json.dumps({"connected": True, "pid": os.getpid()}), flush=True)
        receive, text = ws.receive, WSMsgType.TEXT
        n, count, first = 0, args.count, 0.0
        cpu0 = time.process_time()
        async with asyncio.timeout(args.timeout):
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
