"""The gateway's protocol vocabulary, as its public documentation gives it, and label folding.

Every value that ends up as a Prometheus label passes through this module, so the
set of label values stays bounded whatever the gateway (or an attacker) sends.
"""

from __future__ import annotations

import functools
import re

OTHER = "other"
"""Label value for anything outside the documented vocabulary."""

NO_BROKER = "none"
"""Broker label value for frames that name no broker."""

FRAME_TYPES: tuple[str, ...] = (
    "candle",
    "quote",
    "trade",
    "order",
    "position",
    "account",
    "connection",
    "rate_limit",
    "data_staleness",
    "error",
    "ping",
)
MARKET_DATA_TYPES: frozenset[str] = frozenset({"candle", "quote", "trade"})

CONNECTION_EVENTS: tuple[str, ...] = (
    "CONNECTED",
    "DISCONNECTING",
    "RECONNECTING",
    "BROKER_DISCONNECTED",
    "BROKER_RECONNECTED",
    "BROKER_CONNECTION_FAILED",
)
STALENESS_EVENTS: tuple[str, ...] = ("STALE", "FRESH")
RATE_LIMIT_EVENTS: tuple[str, ...] = ("RATE_LIMIT_WARNING", "RATE_LIMIT_HIT")
ACCOUNT_EVENTS: tuple[str, ...] = ("BALANCE_UPDATED", "MARGIN_WARNING", "MARGIN_CALL")
ORDER_EVENTS: tuple[str, ...] = (
    "ORDER_CREATED",
    "ORDER_MODIFIED",
    "ORDER_CANCELLED",
    "ORDER_REJECTED",
    "ORDER_FILLED",
    "ORDER_PARTIALLY_FILLED",
    "ORDER_EXPIRED",
    "BRACKET_ORDER_CREATED",
    "BRACKET_ORDER_MODIFIED",
)
POSITION_EVENTS: tuple[str, ...] = ("POSITION_OPENED", "POSITION_MODIFIED", "POSITION_CLOSED")

# WsErrorCode (event-types) first, then the REST envelope codes (connection guide),
# which the gateway may also push as `error` frames.
ERROR_CODES: tuple[str, ...] = (
    "INVALID_MESSAGE",
    "INTERNAL_ERROR",
    "POSITION_UNPROTECTED",
    "LIQUIDATION",
    "OCO_DOUBLE_EXIT",
    "INVALID_REQUEST",
    "INVALID_VALUE",
    "VALIDATION_ERROR",
    "UNAUTHORIZED",
    "ORDER_NOT_FOUND",
    "POSITION_NOT_FOUND",
    "SYMBOL_NOT_FOUND",
    "ORDER_NOT_MODIFIABLE",
    "ORDER_REJECTED",
    "RATE_LIMITED",
    "PROVIDER_UNAVAILABLE",
    "PROVIDER_ERROR",
    "SHUTTING_DOWN",
    "UNSUPPORTED_OPERATION",
)

# Conditions that need a person now: logged at error level, and the alerts page on them.
CRITICAL_ERROR_CODES: frozenset[str] = frozenset(
    {"POSITION_UNPROTECTED", "LIQUIDATION", "OCO_DOUBLE_EXIT"}
)
CRITICAL_CONNECTION_EVENTS: frozenset[str] = frozenset({"BROKER_CONNECTION_FAILED"})
CRITICAL_ACCOUNT_EVENTS: frozenset[str] = frozenset({"MARGIN_CALL"})

# The gateway's TradingPlatform ids (its kebab-case serde names), `tektii` (the backtest
# engine) included although the guide's list omits it.
PLATFORMS: tuple[str, ...] = (
    "alpaca-paper",
    "alpaca-live",
    "binance-spot-testnet",
    "binance-spot-live",
    "binance-futures-testnet",
    "binance-futures-live",
    "binance-margin-testnet",
    "binance-margin-live",
    "binance-coin-futures-testnet",
    "binance-coin-futures-live",
    "oanda-practice",
    "oanda-live",
    "saxo-sim",
    "saxo-live",
    "tektii",
    "mock",
)
_PLATFORM_SET = frozenset(PLATFORMS)
# The short names the gateway's own parser (TradingPlatform::from_str) accepts.
_ALIASES = {
    "alpaca": "alpaca-paper",
    "binance-spot": "binance-spot-testnet",
    "binance-futures": "binance-futures-testnet",
    "binance-margin": "binance-margin-testnet",
    "binance-coin-futures": "binance-coin-futures-testnet",
    "oanda": "oanda-practice",
    "saxo": "saxo-sim",
}
# A word boundary inside a Rust variant name: "BinanceSpotLive" -> "Binance-Spot-Live".
_CAMEL_BOUNDARY = re.compile(r"(?<=[a-z0-9])(?=[A-Z])")
_MAX_BROKER_TEXT = 64


def fold(value: object, known: frozenset[str] | tuple[str, ...]) -> str:
    """Return `value` when it is one of `known`, else OTHER."""
    return value if isinstance(value, str) and value in known else OTHER


@functools.lru_cache(maxsize=256)
def _platform_id(value: str) -> str:
    candidate = _CAMEL_BOUNDARY.sub("-", value.strip()).lower().replace("_", "-").replace(" ", "-")
    candidate = _ALIASES.get(candidate, candidate)
    return candidate if candidate in _PLATFORM_SET else OTHER


def normalise_broker(value: object) -> str:
    """Map a broker field to a platform id, NO_BROKER or OTHER.

    The gateway names a platform by its id (`saxo-sim`) in gateway-level frames and by its
    Rust variant name (`SaxoSim`, `BinanceSpotLive`) in some provider-level ones; other
    gateways vary case and separators (`Alpaca_Paper`). All of them are one platform.
    """
    if value is None or value == "":
        return NO_BROKER
    if not isinstance(value, str) or len(value) > _MAX_BROKER_TEXT:
        return OTHER
    if value in _PLATFORM_SET:
        return value
    return _platform_id(value)
