"""Stopping on SIGTERM/SIGINT: the request every long-running command waits on, and its runner."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import Awaitable, Callable
from typing import Any


class StopRequest:
    """Set by SIGTERM/SIGINT; carries the reason into the last log line."""

    def __init__(self) -> None:
        self.event = asyncio.Event()
        self.reason = ""

    def set(self, reason: str) -> None:
        self.reason = reason
        self.event.set()

    async def wait(self) -> str:
        await self.event.wait()
        return self.reason


def run_until_signal(target: Callable[..., Awaitable[None]], *args: Any) -> int:
    """Run `target(*args, stop)` until SIGTERM/SIGINT; exit 0 on a requested stop."""

    async def runner() -> None:
        stop = StopRequest()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, stop.set, sig.name)
        await target(*args, stop)

    asyncio.run(runner())
    return 0
