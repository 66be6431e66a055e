"""The official SDK's stream (tektii.AsyncEventStream) receiving the same frames.

Runs in its own virtual environment (.venv-sdk: the SDK pins websockets<17); it never
imports the monitor. Counts every event the stream yields plus every frame it drops
with a warning, and prints one JSON line when `--count` frames are accounted for. The
SDK acknowledges each event (an `event_ack` frame per event): that is its normal
behaviour and part of its cost, so it is left on (the sender discards the acks).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import os
import time

from tektii.stream import AsyncEventStream


class DropCounter(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.WARNING)
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Dropping"):
            self.count += 1


async def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--count", type=int, required=True)
    parser.add_argument("--timeout", type=float, default=300.0)
    args = parser.parse_args()
    drops = DropCounter()
    sdk_log = logging.getLogger("tektii.stream")
    sdk_log.addHandler(drops)
    sdk_log.propagate = False
    n, first = 0, 0.0
    stream = AsyncEventStream(ws_url=args.url, reconnect=False)
    async with stream:
        print(json.dumps({"connected": True, "pid": os.getpid()}), flush=True)
        cpu0 = time.process_time()
        async with asyncio.timeout(args.timeout):
            async for _event in stream:
                if not n:
                    first = time.time()
                n += 1
                if n + drops.count >= args.count:
                    break
        last = time.time()
        cpu = time.process_time() - cpu0
    print(json.dumps({"frames": n + drops.count, "events": n, "dropped": drops.count,
                      "first": first, "last": last, "cpu": cpu}), flush=True)


if __name__ == "__main__":
    asyncio.run(main())
