"""The benchmark's frames: a realistic, deterministic mix, pre-serialised and pre-framed.

Mix (by count): 70% quote, 20% candle, 5% order, 5% monitoring frames (connection 1.5%,
data_staleness 1.5%, rate_limit 1%, error 1%). Shapes follow the protocol docs and
validate against the official SDK's models; keys are in the gateway's serde order
(`type` first) unless `backtest=True`, which adds an `event_id` and sorts the keys as
the backtest engine does. None of the background frames is critical: the critical
frames of the no-loss check are placed by `with_criticals`, so their counts are exact.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

START = datetime(2026, 3, 2, 14, 30, tzinfo=UTC)
BROKERS = ("alpaca-paper", "binance-spot-live", "oanda-practice")
PROVIDERS = {"alpaca-paper": "alpaca", "binance-spot-live": "binance", "oanda-practice": "oanda"}
EQUITIES = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "JPM", "V", "UNH", "XOM", "LLY",
    "MA", "JNJ", "PG", "HD", "COST", "MRK", "ABBV", "CVX", "CRM", "BAC", "NFLX", "AMD", "PEP", "KO",
    "TMO", "WMT", "ADBE", "LIN", "MCD", "CSCO", "ACN", "ABT", "ORCL", "DHR", "INTC", "WFC", "DIS",
    "QCOM", "TXN", "PM", "VZ", "INTU", "IBM", "AMGN", "CMCSA", "NOW", "UNP",
]
CRYPTO = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT",
          "LINKUSDT", "DOTUSDT"]
FX = ["EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD", "USD_CAD", "USD_CHF", "NZD_USD", "EUR_GBP"]
MIX = (
    ("quote", 0.70),
    ("candle", 0.20),
    ("order", 0.05),
    ("connection", 0.015),
    ("data_staleness", 0.015),
    ("rate_limit", 0.01),
    ("error", 0.01),
)
# The frames the no-loss check counts one by one: each one is critical in the monitor
# (logged at error level, remembered on the status page) and absent from the background.
CRITICAL_KINDS = ("POSITION_UNPROTECTED", "BROKER_CONNECTION_FAILED", "MARGIN_CALL")


@dataclass
class Instrument:
    symbol: str
    broker: str
    price: float
    tick: float
    decimals: int
    size: str

    def move(self, rng: random.Random) -> None:
        self.price = max(self.tick, self.price + self.tick * rng.randint(-4, 4))

    def fmt(self, value: float) -> str:
        return f"{value:.{self.decimals}f}"


def instruments(rng: random.Random) -> list[Instrument]:
    book = [Instrument(s, "alpaca-paper", rng.uniform(20, 900), 0.01, 2, str(rng.choice((100, 200, 500))))
            for s in EQUITIES]
    book += [Instrument(s, "binance-spot-live", rng.uniform(0.1, 60000), 0.01, 2,
                        f"{rng.uniform(0.01, 5):.4f}") for s in CRYPTO]
    book += [Instrument(s, "oanda-practice", rng.uniform(0.6, 150), 0.0001, 5, "100000") for s in FX]
    return book


def iso(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


@dataclass
class Corpus:
    """Frames as one blob of WebSocket frames (server to client: unmasked) plus offsets."""

    payloads: list[bytes]
    kinds: list[str]
    critical: list[str | None] = field(default_factory=list)
    blob: bytes = b""
    offsets: list[int] = field(default_factory=list)

    def __post_init__(self) -> None:
        if not self.critical:
            self.critical = [None] * len(self.payloads)
        framed = [ws_frame(p) for p in self.payloads]
        self.offsets = [0]
        for f in framed:
            self.offsets.append(self.offsets[-1] + len(f))
        self.blob = b"".join(framed)

    def __len__(self) -> int:
        return len(self.payloads)


def _exact(data: bytes) -> bytes:
    """A copy of just the bytes: orjson's result keeps its ~4 KiB working buffer allocated."""
    return memoryview(data).tobytes()


def ws_frame(payload: bytes, opcode: int = 0x1) -> bytes:
    """One unmasked, final WebSocket frame."""
    n = len(payload)
    if n < 126:
        header = struct.pack("!BB", 0x80 | opcode, n)
    elif n < 65536:
        header = struct.pack("!BBH", 0x80 | opcode, 126, n)
    else:
        header = struct.pack("!BBQ", 0x80 | opcode, 127, n)
    return header + payload


class _Builder:
    def __init__(self, seed: int, backtest: bool) -> None:
        self.rng = random.Random(seed)
        self.book = instruments(self.rng)
        self.backtest = backtest
        self.now = START
        self.event_id = 0
        self.order_id = 0

    def dumps(self, frame: dict[str, object]) -> bytes:
        option = 0
        if self.backtest:
            self.event_id += 1
            frame["event_id"] = f"evt_{self.event_id:09d}"
            option = orjson.OPT_SORT_KEYS
        return _exact(orjson.dumps(frame, option=option))

    def tick(self) -> str:
        self.now += timedelta(microseconds=self.rng.randint(2, 18))
        return iso(self.now)

    def frame(self, kind: str) -> dict[str, object]:
        ts = self.tick()
        return getattr(self, "_" + kind)(ts)

    def _quote(self, ts: str) -> dict[str, object]:
        inst = self.rng.choice(self.book)
        inst.move(self.rng)
        body: dict[str, object] = {"symbol": inst.symbol, "provider": PROVIDERS[inst.broker],
                                   "bid": inst.fmt(inst.price - inst.tick)}
        sized = self.rng.random() < 0.8
        if sized:
            body["bid_size"] = inst.size
        body["ask"] = inst.fmt(inst.price + inst.tick)
        if sized:
            body["ask_size"] = inst.size
        body["last"] = inst.fmt(inst.price)
        body["timestamp"] = ts
        return {"type": "quote", "quote": body, "timestamp": ts}

    def _candle(self, ts: str) -> dict[str, object]:
        inst = self.rng.choice(self.book)
        inst.move(self.rng)
        spread = inst.tick * self.rng.randint(2, 30)
        bar_start = iso(self.now.replace(second=0, microsecond=0))
        bar: dict[str, object] = {
            "symbol": inst.symbol, "provider": PROVIDERS[inst.broker], "timeframe": "1m",
            "timestamp": bar_start, "open": inst.fmt(inst.price - inst.tick),
            "high": inst.fmt(inst.price + spread), "low": inst.fmt(inst.price - spread),
            "close": inst.fmt(inst.price), "volume": str(self.rng.randint(100, 2_000_000)),
        }
        return {"type": "candle", "bar": bar, "timestamp": ts}

    def _order(self, ts: str) -> dict[str, object]:
        inst = self.rng.choice(self.book)
        self.order_id += 1
        event, status, filled = self.rng.choice((
            ("ORDER_CREATED", "OPEN", 0), ("ORDER_PARTIALLY_FILLED", "PARTIALLY_FILLED", 40),
            ("ORDER_FILLED", "FILLED", 100), ("ORDER_CANCELLED", "CANCELLED", 0),
            ("ORDER_MODIFIED", "OPEN", 0),
        ))
        body: dict[str, object] = {
            "id": f"ord_{self.order_id:08x}", "symbol": inst.symbol, "side": self.rng.choice(("BUY", "SELL")),
            "order_type": "LIMIT", "quantity": "100", "filled_quantity": str(filled),
            "remaining_quantity": str(100 - filled),
        }
        if filled:
            body["average_fill_price"] = inst.fmt(inst.price)
        body.update(status=status, time_in_force="GTC", limit_price=inst.fmt(inst.price),
                    created_at=ts, updated_at=ts)
        return {"type": "order", "event": event, "order": body, "timestamp": ts}

    def _connection(self, ts: str) -> dict[str, object]:
        broker = self.rng.choice(BROKERS)
        event = self.rng.choice(("BROKER_DISCONNECTED", "BROKER_RECONNECTED", "CONNECTED"))
        frame: dict[str, object] = {"type": "connection", "event": event, "broker": broker}
        if event == "BROKER_DISCONNECTED":
            frame["error"] = "websocket closed by peer: 1006 abnormal closure"
        elif event == "BROKER_RECONNECTED":
            frame["gap_duration_ms"] = self.rng.randint(200, 30_000)
        frame["timestamp"] = ts
        return frame

    def _data_staleness(self, ts: str) -> dict[str, object]:
        inst = self.rng.choice(self.book)
        symbols = [inst.symbol, *(i.symbol for i in self.rng.sample(self.book, self.rng.randint(0, 2)))]
        if self.rng.random() < 0.5:
            return {"type": "data_staleness", "event": "STALE", "symbols": symbols,
                    "stale_since": iso(self.now - timedelta(seconds=30)), "broker": inst.broker,
                    "timestamp": ts}
        return {"type": "data_staleness", "event": "FRESH", "symbols": symbols, "broker": inst.broker,
                "timestamp": ts}

    def _rate_limit(self, ts: str) -> dict[str, object]:
        hit = self.rng.random() < 0.2
        return {"type": "rate_limit", "event": "RATE_LIMIT_HIT" if hit else "RATE_LIMIT_WARNING",
                "requests_remaining": 0 if hit else self.rng.randint(1, 40),
                "reset_at": iso(self.now + timedelta(seconds=self.rng.randint(1, 60))), "timestamp": ts}

    def _error(self, ts: str) -> dict[str, object]:
        if self.rng.random() < 0.5:
            return {"type": "error", "code": "INVALID_MESSAGE",
                    "message": "Failed to parse order request: missing required field 'symbol'",
                    "details": {"field": "symbol"}, "timestamp": ts}
        return {"type": "error", "code": "INTERNAL_ERROR", "message": "Internal error", "timestamp": ts}

    def critical(self, kind: str) -> dict[str, object]:
        ts = self.tick()
        if kind == "POSITION_UNPROTECTED":
            return {"type": "error", "code": "POSITION_UNPROTECTED",
                    "message": "Position pos_7f3a91c2 on AAPL is open without its stop-loss",
                    "details": {"position_id": "pos_7f3a91c2", "symbol": "AAPL", "missing": ["stop_loss"],
                                "platform": "alpaca-paper"}, "timestamp": ts}
        if kind == "BROKER_CONNECTION_FAILED":
            return {"type": "connection", "event": "BROKER_CONNECTION_FAILED", "broker": "alpaca-paper",
                    "error": "reconnect attempts exhausted (10)", "timestamp": ts}
        account = {"balance": "10000.00", "equity": "7350.00", "margin_used": "7100.00",
                   "margin_available": "250.00", "unrealized_pnl": "-2650.00", "currency": "USD"}
        return {"type": "account", "event": "MARGIN_CALL", "account": account, "timestamp": ts}


def build(count: int, seed: int = 7, *, backtest: bool = False, critical_every: int = 0) -> Corpus:
    """`count` frames of the mix; every `critical_every`-th one is replaced by a critical frame."""
    builder = _Builder(seed, backtest)
    kinds = [k for k, _ in MIX]
    weights = [w for _, w in MIX]
    payloads: list[bytes] = []
    chosen: list[str] = []
    critical: list[str | None] = []
    for i in range(count):
        if critical_every and i % critical_every == critical_every // 2:
            name = CRITICAL_KINDS[(i // critical_every) % len(CRITICAL_KINDS)]
            frame = builder.critical(name)
            critical.append(name)
        else:
            frame = builder.frame(builder.rng.choices(kinds, weights)[0])
            critical.append(None)
        chosen.append(str(frame["type"]))
        payloads.append(builder.dumps(frame))
    return Corpus(payloads, chosen, critical)


def staleness_frames(symbols: list[str], per_frame: int = 100, broker: str = "alpaca-paper") -> Corpus:
    """STALE frames naming `symbols`, `per_frame` at a time: each symbol becomes one series."""
    payloads = []
    for i in range(0, len(symbols), per_frame):
        ts = iso(START + timedelta(milliseconds=i))
        payloads.append(_exact(orjson.dumps({
            "type": "data_staleness", "event": "STALE", "symbols": symbols[i:i + per_frame],
            "stale_since": ts, "broker": broker, "timestamp": ts})))
    return Corpus(payloads, ["data_staleness"] * len(payloads))
