"""A steady stream of quotes and candles over a handful of instruments, as the broker's feed allows.

The instruments are the simulated gateway's own provider's (`sim.broker`, spelled as that
broker's adapter spells `quote.provider`: the platform id for Alpaca, `saxo` for both Saxo
platforms), so that the monitor files them under the broker /health lists.
`sim.market` (monitor/simulator/market_state.py) mutes instruments, delays quotes or closes the
market.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
from dataclasses import dataclass
from decimal import Decimal

from monitor.simulator import frames
from monitor.simulator.http_api import DEFAULT_BROKER
from monitor.simulator.market_state import Market
from monitor.simulator.server import Simulator

# How a broker's adapter names itself in quote.provider, where that is not the platform id.
QUOTE_PROVIDER = {"saxo-sim": "saxo", "saxo-live": "saxo"}
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

    def quote(self, late_seconds: float = 0.0) -> frames.Frame:
        """The current bid/ask/last as a quote frame, quoted `late_seconds` before it is sent."""
        bid, ask = self.price - self.step, self.price + self.step
        quoted_at = frames.iso_in(-late_seconds) if late_seconds else None
        return frames.quote(
            self.symbol, self.provider, str(bid), str(ask), str(self.price), size=self.size,
            quoted_at=quoted_at,
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


def instruments(provider: str = DEFAULT_BROKER) -> list[Instrument]:
    """AAPL, MSFT, NVDA and BTC/USD at plausible prices."""
    return [
        Instrument("AAPL", provider, Decimal("150.25"), Decimal("0.01"), "200"),
        Instrument("MSFT", provider, Decimal("410.10"), Decimal("0.01"), "100"),
        Instrument("NVDA", provider, Decimal("131.70"), Decimal("0.01"), "300"),
        Instrument("BTC/USD", provider, Decimal("42000.00"), Decimal("0.50"), "0.25"),
    ]


def quote_provider(platform: str) -> str:
    """`quote.provider` of the quotes a gateway on `platform` receives (saxo-live -> saxo)."""
    return QUOTE_PROVIDER.get(platform, platform)


def next_frame(book: list[Instrument], sent: int, market: Market, rng: random.Random) -> frames.Frame | None:
    """Frame number `sent` of the round robin over `book`, or None for an instrument not ticking."""
    inst = book[sent % len(book)]
    if not market.ticking(inst.symbol):
        return None
    inst.move(rng)
    return inst.candle() if sent % CANDLE_EVERY == CANDLE_EVERY - 1 else inst.quote(market.late_seconds)


async def run_market_data(sim: Simulator, rate: float, stop: asyncio.Event) -> None:
    """Broadcast about `rate` market-data frames per second until `stop` is set."""
    if rate <= 0:
        await stop.wait()
        return
    rng = random.Random(7)
    book = instruments(quote_provider(sim.broker))
    started = time.monotonic()
    sent = 0
    while not stop.is_set():
        due = int((time.monotonic() - started) * rate) + 1
        for _ in range(due - sent):
            frame = next_frame(book, sent, sim.market, rng)
            if frame is not None:
                await sim.broadcast(frame)
            sent += 1
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), max(TICK_SECONDS, 1 / rate))
