"""Plausible order, trade, position and account objects and error texts for the scenarios."""

from __future__ import annotations

import secrets

from monitor.simulator import frames

BROKER = "alpaca-paper"
SYMBOL = "AAPL"
QUANTITY = "100"
FILL_PRICE = "150.25"


def order_body(order_id: str, filled: str, status: str) -> frames.Frame:
    """A 100-share AAPL limit buy with `filled` shares done."""
    now = frames.iso()
    filled_qty = int(filled)
    body: frames.Frame = {
        "id": order_id,
        "symbol": SYMBOL,
        "side": "BUY",
        "order_type": "LIMIT",
        "quantity": QUANTITY,
        "filled_quantity": filled,
        "remaining_quantity": str(int(QUANTITY) - filled_qty),
    }
    if filled_qty:
        body["average_fill_price"] = FILL_PRICE
    body.update(
        status=status,
        time_in_force="GTC",
        limit_price="150.50",
        created_at=now,
        updated_at=now,
    )
    return body


def fill_trade(order_id: str) -> frames.Frame:
    """The own-fill record of the whole order."""
    return {
        "id": "trd_" + secrets.token_hex(4),
        "order_id": order_id,
        "symbol": SYMBOL,
        "side": "BUY",
        "quantity": QUANTITY,
        "price": FILL_PRICE,
        "commission": "0.50",
        "commission_currency": "USD",
        "is_maker": False,
        "timestamp": frames.iso(),
    }


def position_body(position_id: str, *, quantity: str, realized_pnl: str) -> frames.Frame:
    """An AAPL long (an equity position: no margin_mode/leverage fields)."""
    now = frames.iso()
    return {
        "id": position_id,
        "symbol": SYMBOL,
        "side": "LONG",
        "quantity": quantity,
        "average_entry_price": FILL_PRICE,
        "current_price": "150.40",
        "unrealized_pnl": "15.00" if quantity != "0" else "0.00",
        "realized_pnl": realized_pnl,
        "opened_at": now,
        "updated_at": now,
    }


def account_body(*, margin_used: str) -> frames.Frame:
    """A USD margin account of 10,000 with `margin_used` committed."""
    available = f"{10000 - float(margin_used):.2f}"
    return {
        "balance": "10000.00",
        "equity": "10250.00",
        "margin_used": margin_used,
        "margin_available": available,
        "unrealized_pnl": "250.00",
        "currency": "USD",
    }


def _examples() -> dict[str, tuple[str, frames.Frame | None]]:
    return {
        "INVALID_MESSAGE": (
            "Failed to parse order request: missing required field 'symbol'",
            {"field": "symbol"},
        ),
        "INTERNAL_ERROR": ("Internal error", None),
        "POSITION_UNPROTECTED": (
            "Position pos_7f3a91c2 on AAPL is open without its stop-loss: bracket leg rejected",
            {"position_id": "pos_7f3a91c2", "symbol": SYMBOL, "missing": ["stop_loss"],
             "platform": BROKER},
        ),
        "LIQUIDATION": (
            "Position pos_1b5e0d44 on AAPL was liquidated by the broker",
            {"position_id": "pos_1b5e0d44", "symbol": SYMBOL, "quantity": "100",
             "price": "142.10", "platform": BROKER},
        ),
        "OCO_DOUBLE_EXIT": (
            "Both legs of OCO group oco_52c1 filled before the cancel reached the broker",
            {"oco_group_id": "oco_52c1", "symbol": SYMBOL,
             "filled_order_ids": ["ord_tp_52c1", "ord_sl_52c1"], "platform": BROKER},
        ),
        "INVALID_REQUEST": ("Missing required field symbol", {"field": "symbol"}),
        "INVALID_VALUE": (
            "Invalid value for quantity: must be positive",
            {"field": "quantity", "value": "-5"},
        ),
        "VALIDATION_ERROR": (
            "Validation failed: 2 errors",
            {"errors": [{"field": "quantity", "message": "must be positive"},
                        {"field": "limit_price", "message": "required for LIMIT orders"}]},
        ),
        "UNAUTHORIZED": ("API key missing or invalid", None),
        "ORDER_NOT_FOUND": ("Order not found: ord_abc123", {"order_id": "ord_abc123"}),
        "POSITION_NOT_FOUND": ("Position not found: pos_xyz789", {"position_id": "pos_xyz789"}),
        "SYMBOL_NOT_FOUND": ("Symbol not found: ZZZZ", {"symbol": "ZZZZ"}),
        "ORDER_NOT_MODIFIABLE": (
            "Order already filled",
            {"order_id": "ord_abc123", "status": "FILLED"},
        ),
        "ORDER_REJECTED": (
            "Order rejected: insufficient margin",
            {"reject_code": "INSUFFICIENT_MARGIN"},
        ),
        "RATE_LIMITED": (
            "Rate limit exceeded",
            {"retry_after_seconds": 5, "reset_at": frames.iso_in(5)},
        ),
        "PROVIDER_UNAVAILABLE": (
            "Provider unavailable: upstream timeout — retrying with backoff",
            {"provider": BROKER},
        ),
        "PROVIDER_ERROR": ("Provider error: 502 from upstream", {"provider": BROKER, "status": 502}),
        "SHUTTING_DOWN": ("Gateway is shutting down", None),
        "UNSUPPORTED_OPERATION": (
            "modify_order not supported on alpaca-paper",
            {"operation": "modify_order", "provider": BROKER},
        ),
    }


def error_example(code: str) -> tuple[str, frames.Frame | None]:
    """A realistic (message, details) pair for `code`; unknown codes get a generic text."""
    return _examples().get(code, (code.replace("_", " ").capitalize(), None))
