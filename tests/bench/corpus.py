"""The benchmark's frames: realistic, deterministic mixes, pre-serialised and pre-framed.

Two mixes (by count of frames):

* ``stress`` (alias ``mix``, the corpus of the throughput, fixed-rate and no-loss parts since
  the harness exists): 70% quote, 20% candle, 5% order, 5% monitoring frames (connection
  1.5%, data_staleness 1.5%, rate_limit 1%, error 1%). Far more non-quote frames than a
  gateway sends: it stresses the paths that decode, count by label and log.
* ``live``: what a live gateway sends to one client subscribed to market data. The
  proportions come from a model of the stream, not from any throughput target. The book is
  this module's (50 Alpaca equities, 10 Binance spot pairs, 8 Oanda FX pairs), each
  subscribed to `quote` and `candle`, in market hours, with one strategy trading it:

  - Alpaca (paper: the IEX feed): ~2 quotes/s per stock, plus ~0.5 trades/s that the
    gateway's adapter turns into quote frames (bid = ask = last = the trade price, `volume`
    = its size, no `ask_size`); one minute bar per stock per minute. 50 x 2.5 = 125 quotes/s,
    0.83 candles/s.
  - Binance spot: `@bookTicker` pushes every change of the best bid/ask, ~10/s for an
    average pair (majors far more, small pairs less): 100 quotes/s. Candles come from
    `@kline_1m`, which pushes the open candle about every 2 s and the adapter forwards every
    push (it does not wait for the closed candle): 10 x 0.5 = 5 candles/s.
  - Oanda (practice): the pricing stream, ~2 prices/s per pair (Oanda sends at most ~4/s):
    16 quotes/s; candles are polled once a minute: 0.13 candles/s.
  - Orders: the strategy places ~6 orders a minute, ~2.5 updates each (created, partly
    filled, filled or cancelled): 0.25 frames/s.
  - Connection, staleness, rate-limit and error frames: about two a minute in all (a quiet
    instrument going STALE and FRESH, a rate-limit warning, a rare reconnection or error).

  Together ~247 frames/s: 97.47% quote, 2.41% candle, 0.10% order, 0.013% the rest. Candles
  are ~2.4% rather than the ~0.4% of one bar per instrument per minute because of Binance's
  kline pushes; with busier instruments (SIP data, majors) quotes are an even larger share.
  The instruments are drawn in proportion to these rates (Binance: most candles, ~41% of
  quotes), and the clock advances ~4 ms a frame, so the bars' minutes move as they would.

Shapes follow the gateway's serde models (`type` first, optional fields left out when
absent) as its adapters fill them: quotes `{"type":"quote","quote":{symbol, provider, bid,
bid_size?, ask, ask_size?, last, volume?, timestamp},"timestamp"}`, candles `{"type":"candle",
"bar":{symbol, provider, timeframe, timestamp, open, high, low, close, volume},"timestamp"}`.
`provider` is spelled as each adapter's stream spells it: `alpaca-paper` (Alpaca: the
platform id), `binance-spot` (Binance: the product, without live/testnet), `oanda-practice`
(Oanda's stream: the platform id). Times are chrono's RFC 3339 (`AutoSi`: nanoseconds,
`2026-12-01T14:33:09.658893085Z`; no fraction for a whole second, as a bar's start);
Binance's decimals keep the 8 places of its strings. `backtest=True` adds an `event_id` and
sorts the keys as the backtest engine does. None of the background frames is critical: the
critical frames of the no-loss check are placed by `build(critical_every=...)`, so their counts are exact.
"""

from __future__ import annotations

import random
import struct
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

import orjson

START = datetime(2026, 12, 1, 14, 33, tzinfo=UTC)
START_NS = int(START.timestamp()) * 1_000_000_000
BROKERS = ("alpaca-paper", "binance-spot-live", "oanda-practice")
# `provider` of streamed market data, as each adapter spells it (see the module docstring).
PROVIDERS = {"alpaca-paper": "alpaca-paper", "binance-spot-live": "binance-spot",
             "oanda-practice": "oanda-practice"}
EQUITIES = [
    "AAPL", "MSFT", "NVDA", "AMZN", "GOOGL", "META", "TSLA", "AVGO", "JPM", "V", "UNH", "XOM", "LLY",
    "MA", "JNJ", "PG", "HD", "COST", "MRK", "ABBV", "CVX", "CRM", "BAC", "NFLX", "AMD", "PEP", "KO",
    "TMO", "WMT", "ADBE", "LIN", "MCD", "CSCO", "ACN", "ABT", "ORCL", "DHR", "INTC", "WFC", "DIS",
    "QCOM", "TXN", "PM", "VZ", "INTU", "IBM", "AMGN", "CMCSA", "NOW", "UNP",
]
CRYPTO = ["BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT", "XRPUSDT", "ADAUSDT", "DOGEUSDT", "AVAXUSDT",
          "LINKUSDT", "DOTUSDT"]
FX = ["EUR_USD", "GBP_USD", "USD_JPY", "AUD_USD", "USD_CAD", "USD_CHF", "NZD_USD", "EUR_GBP"]


@dataclass(frozen=True)
class Mix:
    """Frame kinds with their weights, and how instruments and the clock move."""

    kinds: tuple[tuple[str, float], ...]
    # Per-broker weight of an instrument when a quote / a candle is drawn; None: uniform.
    quote_weight: dict[str, float] | None = None
    candle_weight: dict[str, float] | None = None
    gap_ns: tuple[int, int] = (2_000, 18_000)  # the clock's step between two frames
    trade_share: float = 0.0  # of Alpaca quote frames: converted trades (with `volume`)


MIXES = {
    "stress": Mix(kinds=(
        ("quote", 0.70),
        ("candle", 0.20),
        ("order", 0.05),
        ("connection", 0.015),
        ("data_staleness", 0.015),
        ("rate_limit", 0.01),
        ("error", 0.01),
    )),
    # Frames per second of the modelled live stream (module docstring); choices() normalises.
    "live": Mix(
        kinds=(
            ("quote", 241.0),  # 50 x 2.5 (Alpaca) + 10 x 10 (Binance) + 8 x 2 (Oanda)
            ("candle", 5.97),  # 50 / 60 + 10 x 0.5 + 8 / 60
            ("order", 0.25),
            ("connection", 0.005),
            ("data_staleness", 0.015),
            ("rate_limit", 0.008),
            ("error", 0.005),
        ),
        quote_weight={"alpaca-paper": 2.5, "binance-spot-live": 10.0, "oanda-practice": 2.0},
        candle_weight={"alpaca-paper": 1 / 60, "binance-spot-live": 0.5, "oanda-practice": 1 / 60},
        gap_ns=(1, 8_000_000),  # ~4 ms a frame on average: ~247 frames/s
        trade_share=0.2,
    ),
}
ALIASES = {"mix": "stress"}  # the single mix's name before `live` existed
MIX = MIXES["stress"].kinds
# The frames the no-loss check counts one by one: each one is critical in the monitor
# (logged at error level, remembered on the status page) and absent from the background.
CRITICAL_KINDS = ("POSITION_UNPROTECTED", "BROKER_CONNECTION_FAILED", "MARGIN_CALL")


def mix_name(name: str) -> str:
    """The canonical name of a mix (`mix` is `stress`); KeyError for an unknown one."""
    name = ALIASES.get(name, name)
    if name not in MIXES:
        raise KeyError(f"unknown mix {name!r}")
    return name


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
    # Binance's REST and stream decimals are strings with 8 places ("43251.12000000"); the
    # gateway parses them into Decimals, which keep that scale when serialised.
    book += [Instrument(s, "binance-spot-live", round(rng.uniform(0.1, 60000), 2), 0.01, 8,
                        f"{rng.uniform(0.01, 5):.8f}") for s in CRYPTO]
    book += [Instrument(s, "oanda-practice", rng.uniform(0.6, 150), 0.0001, 5, "1000000") for s in FX]
    return book


def iso_ns(ns: int) -> str:
    """Unix nanoseconds as chrono serialises a DateTime<Utc> (RFC 3339, `AutoSi`, `Z`)."""
    seconds, frac = divmod(ns, 1_000_000_000)
    text = datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%dT%H:%M:%S")
    if not frac:
        return text + "Z"
    if frac % 1_000_000 == 0:
        return f"{text}.{frac // 1_000_000:03d}Z"
    if frac % 1_000 == 0:
        return f"{text}.{frac // 1_000:06d}Z"
    return f"{text}.{frac:09d}Z"


def iso(moment: datetime) -> str:
    return iso_ns(int(moment.timestamp()) * 1_000_000_000 + moment.microsecond * 1_000)


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
    def __init__(self, seed: int, backtest: bool, mix: Mix) -> None:
        self.rng = random.Random(seed)
        self.book = instruments(self.rng)
        self.backtest = backtest
        self.mix = mix
        self.now_ns = START_NS
        self.event_id = 0
        self.order_id = 0
        self.quote_weights = self._weights(mix.quote_weight)
        self.candle_weights = self._weights(mix.candle_weight)

    def _weights(self, per_broker: dict[str, float] | None) -> list[float] | None:
        return None if per_broker is None else [per_broker[i.broker] for i in self.book]

    def pick(self, weights: list[float] | None) -> Instrument:
        if weights is None:
            return self.rng.choice(self.book)
        return self.rng.choices(self.book, weights)[0]

    def dumps(self, frame: dict[str, object]) -> bytes:
        option = 0
        if self.backtest:
            self.event_id += 1
            frame["event_id"] = f"evt_{self.event_id:09d}"
            option = orjson.OPT_SORT_KEYS
        return _exact(orjson.dumps(frame, option=option))

    def tick(self) -> str:
        """Advance the gateway's clock to this frame; its `timestamp` (Utc::now() when sent)."""
        self.now_ns += self.rng.randint(*self.mix.gap_ns)
        return iso_ns(self.now_ns)

    def ago(self, ns: int) -> str:
        return iso_ns(self.now_ns - ns)

    def frame(self, kind: str) -> dict[str, object]:
        ts = self.tick()
        return getattr(self, "_" + kind)(ts)

    def _quote(self, ts: str) -> dict[str, object]:
        inst = self.pick(self.quote_weights)
        inst.move(self.rng)
        provider = PROVIDERS[inst.broker]
        if inst.broker == "alpaca-paper":
            # Alpaca's own event time (nanoseconds), some milliseconds before the gateway sends.
            quote_ts = self.ago(self.rng.randint(500_000, 25_000_000))
            if self.rng.random() < self.mix.trade_share:  # a trade, converted to a quote
                price, size = inst.fmt(inst.price), str(self.rng.randint(1, 400))
                return {"type": "quote", "quote": {
                    "symbol": inst.symbol, "provider": provider, "bid": price, "bid_size": size,
                    "ask": price, "last": price, "volume": size, "timestamp": quote_ts,
                }, "timestamp": ts}
        else:  # Binance and Oanda stamp the quote with Utc::now() while converting it
            quote_ts = self.ago(self.rng.randint(300, 3_000))
        return {"type": "quote", "quote": {
            "symbol": inst.symbol, "provider": provider, "bid": inst.fmt(inst.price - inst.tick),
            "bid_size": inst.size, "ask": inst.fmt(inst.price + inst.tick), "ask_size": inst.size,
            "last": inst.fmt(inst.price),  # the mid, as the adapters report it
            "timestamp": quote_ts,
        }, "timestamp": ts}

    def _candle(self, ts: str) -> dict[str, object]:
        inst = self.pick(self.candle_weights)
        inst.move(self.rng)
        spread = inst.tick * self.rng.randint(2, 30)
        minute = 60 * 1_000_000_000
        bar: dict[str, object] = {
            "symbol": inst.symbol, "provider": PROVIDERS[inst.broker], "timeframe": "1m",
            "timestamp": iso_ns(self.now_ns // minute * minute), "open": inst.fmt(inst.price - inst.tick),
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
                    "stale_since": self.ago(30_000_000_000), "broker": inst.broker, "timestamp": ts}
        return {"type": "data_staleness", "event": "FRESH", "symbols": symbols, "broker": inst.broker,
                "timestamp": ts}

    def _rate_limit(self, ts: str) -> dict[str, object]:
        hit = self.rng.random() < 0.2
        reset = (self.now_ns // 1_000_000_000 + self.rng.randint(1, 60)) * 1_000_000_000
        return {"type": "rate_limit", "event": "RATE_LIMIT_HIT" if hit else "RATE_LIMIT_WARNING",
                "requests_remaining": 0 if hit else self.rng.randint(1, 40),
                "reset_at": iso_ns(reset), "timestamp": ts}

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


def build(count: int, seed: int = 7, *, mix: str = "stress", backtest: bool = False,
          critical_every: int = 0) -> Corpus:
    """`count` frames of `mix`; every `critical_every`-th one is replaced by a critical frame."""
    spec = MIXES[mix_name(mix)]
    builder = _Builder(seed, backtest, spec)
    kinds = [k for k, _ in spec.kinds]
    weights = [w for _, w in spec.kinds]
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


def instrument_quotes(count: int, rounds: int, provider: str = "binance-spot") -> Corpus:
    """Quotes of `count` distinct instruments, `rounds` times over, in the gateway's shape."""
    payloads = []
    for r in range(rounds):
        ts = iso(START + timedelta(seconds=r))
        for i in range(count):
            price = f"{100 + (i % 997) / 100 + r / 1000:.5f}"
            payloads.append(_exact(orjson.dumps({"type": "quote", "quote": {
                "symbol": f"INST{i:06d}USDT", "provider": provider, "bid": price, "bid_size": "1.5",
                "ask": price, "ask_size": "2.5", "last": price, "timestamp": ts}, "timestamp": ts})))
    return Corpus(payloads, ["quote"] * len(payloads))
