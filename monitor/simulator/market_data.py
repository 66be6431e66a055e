"""A steady stream of quotes and candles over a handful of instruments."""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from decimal import Decimal

from monitor.simulator import frames
from monitor.simulator.server import Simulator

# Sleeping per frame would cap the rate at the timer resolution; frames go out in batches.
TICK_SECONDS = 0.02
CANDLE_EVERY = 20


@dataclass
class Instrument:
    """One symbol's random walk."""

    symbol: str
    provider: str
    price: Decimal
    step: Decimal
    size: str

    def move(self, rng: random.Random) -> None:
        """Advance the price by a few steps, never below one step."""
        self.price = max(self.step, self.price + self.step * rng.randint(-3, 3))

    def quote(self) -> frames.Frame:
        """The current bid/ask/last as a quote frame."""
        bid, ask = self.price - self.step, self.price + self.step
        return frames.quote(
            self.symbol, self.provider, str(bid), str(ask), str(self.price), size=self.size
        )

    def candle(self) -> frames.Frame:
        """A 1m bar around the current price."""
        spread = self.step * 5
        ohlcv = (
            str(self.price - self.step),
            str(self.price + spread),
            str(self.price - spread),
            str(self.price),
            "1500000",
        )
        return frames.candle(self.symbol, self.provider, ohlcv, timeframe="1m")


def instruments() -> list[Instrument]:
    """AAPL, MSFT, EUR/USD and BTCUSDT at plausible prices."""
    return [
        Instrument("AAPL", "alpaca", Decimal("150.25"), Decimal("0.01"), "200"),
        Instrument("MSFT", "alpaca", Decimal("410.10"), Decimal("0.01"), "100"),
        Instrument("EUR/USD", "oanda", Decimal("1.0846"), Decimal("0.0001"), "100000"),
        Instrument("BTCUSDT", "binance", Decimal("42000.00"), Decimal("0.50"), "0.25"),
    ]


async def run_market_data(sim: Simulator, rate: float, stop: asyncio.Event) -> None:
    """Broadcast about `rate` market-data frames per second until `stop` is set."""
    if rate <= 0:
        await stop.wait()
        return
    rng = random.Random(7)
    book = instruments()
    started = time.monotonic()
    sent = 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate) + 1
        for _ in range(due - sent):
            inst = book[sent % len(book)]
            inst.move(rng)
            frame = inst.candle() if sent % CANDLE_EVERY == CANDLE_EVERY - 1 else inst.quote()
            await sim.broadcast(frame)
            sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(TICK_SECONDS, 1 / rate))
