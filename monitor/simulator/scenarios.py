"""Scripted gateway incidents: each emits its frames and moves /metrics and /health as a real one.

Every scenario takes the simulator and a pause (seconds between steps).
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections.abc import Awaitable, Callable

import structlog

from monitor.protocol import CRITICAL_ERROR_CODES, ERROR_CODES
from monitor.simulator import frames
from monitor.simulator.business import (
    account_body,
    error_example,
    fill_trade,
    order_body,
    position_body,
)
from monitor.simulator.market_data import instruments, run_market_data
from monitor.simulator.server import Simulator

__all__ = ["CYCLE", "SCENARIOS", "run_cycle", "run_market_data", "run_rounds", "run_scenario"]

Scenario = Callable[[Simulator, float], Awaitable[None]]

log = structlog.get_logger("simulator")
STALE_SYMBOLS = ["AAPL", "MSFT"]


def _platform(sim: Simulator) -> dict[str, str]:
    """The `platform` label of the gateway's own metrics for its broker."""
    return {"platform": sim.broker}


def variant_name(platform: str) -> str:
    """How the gateway's provider-level frames name a platform: its Rust variant name, as the
    Binance adapter does (alpaca-paper -> AlpacaPaper), beside the platform id of gateway-level
    frames."""
    return "".join(part.capitalize() for part in platform.split("-"))


async def _critical(sim: Simulator, frame: frames.Frame) -> None:
    # The real gateway counts a critical notification that reached no client at all.
    if await sim.broadcast(frame) == 0:
        sim.inc_metric("gateway_critical_notifications_dropped_total", _platform(sim))


async def _broker_lost(sim: Simulator, error: str) -> None:
    """The broker stream closes: what the real gateway (v0.2.0, Saxo adapter) then sends.

    DISCONNECTING without a broker first (the adapter's, not a shutdown), then
    BROKER_DISCONNECTED naming the broker by its variant name, then STALE for its symbols.
    """
    broker = sim.broker
    sim.set_broker(broker, connected=False, stale_instruments=STALE_SYMBOLS)
    sim.inc_metric("gateway_broker_disconnections_total", _platform(sim))
    await sim.broadcast(frames.connection("DISCONNECTING"))
    await sim.broadcast(frames.connection("BROKER_DISCONNECTED", broker=variant_name(broker), error=error))
    stale_since = sim.providers[broker].stale_since
    await sim.broadcast(
        frames.data_staleness("STALE", STALE_SYMBOLS, stale_since=stale_since, broker=broker)
    )


async def broker_outage(sim: Simulator, pause: float) -> None:
    """Broker link drops, quotes go stale, the gateway reconnects and data is fresh again."""
    started = time.monotonic()
    await _broker_lost(sim, "websocket closed by peer: 1006 abnormal closure")
    await asyncio.sleep(pause)
    sim.inc_metric("gateway_broker_reconnect_attempts_total", _platform(sim))
    await asyncio.sleep(pause)
    sim.set_broker(sim.broker, connected=True)
    sim.inc_metric("gateway_broker_reconnections_total", _platform(sim))
    gap_ms = int((time.monotonic() - started) * 1000)
    await sim.broadcast(
        frames.connection("BROKER_RECONNECTED", broker=sim.broker, gap_duration_ms=gap_ms)
    )
    await asyncio.sleep(pause)
    sim.set_broker(sim.broker, stale_instruments=[])
    await sim.broadcast(frames.data_staleness("FRESH", STALE_SYMBOLS, broker=sim.broker))


async def broker_give_up(sim: Simulator, pause: float) -> None:
    """Broker link drops and the gateway gives up for good: only a restart clears it.

    /health stays degraded (provider not connected, its symbols stale) until the gateway
    restarts (the graceful_shutdown scenarios); no frame ever says the broker is back.
    """
    await _broker_lost(sim, "connection reset by peer (os error 104)")
    await asyncio.sleep(pause)
    sim.inc_metric("gateway_broker_reconnect_attempts_total", _platform(sim))
    sim.inc_metric("gateway_broker_reconnect_failures_total", _platform(sim))
    await sim.broadcast(
        frames.connection(
            "BROKER_CONNECTION_FAILED",
            broker=sim.broker,
            error="max reconnect attempts (10) exceeded: HTTP 401 from broker auth",
        )
    )


async def documented_recovery(sim: Simulator, pause: float) -> None:
    """The documented protocol, not what v0.2.0 does: CONNECTED naming a broker that gave up.

    The guide's CONNECTED means "successfully connected to provider"; a gateway that recovers
    a failed broker session this way clears the failure. v0.2.0 never sends it to clients.
    """
    sim.set_broker(sim.broker, connected=True, stale_instruments=[])
    await sim.broadcast(frames.connection("CONNECTED", broker=sim.broker))
    await asyncio.sleep(pause)
    await sim.broadcast(frames.data_staleness("FRESH", STALE_SYMBOLS, broker=sim.broker))


async def rate_limit(sim: Simulator, pause: float) -> None:
    """The broker's request budget runs low, then out."""
    reset_at = frames.iso_in(60)
    for event, remaining in (("RATE_LIMIT_WARNING", 10), ("RATE_LIMIT_HIT", 0)):
        sim.inc_metric("gateway_rate_limit_events_total", {**_platform(sim), "event_type": event})
        await sim.broadcast(frames.rate_limit(event, remaining, reset_at))
        await asyncio.sleep(pause)


async def error_codes(sim: Simulator, pause: float) -> None:
    """One `error` frame for every non-critical code of the protocol."""
    for code in ERROR_CODES:
        if code in CRITICAL_ERROR_CODES:
            continue
        message, details = error_example(code)
        await sim.broadcast(frames.error(code, message, details=details))
        await asyncio.sleep(pause / 4)


async def position_unprotected(sim: Simulator, pause: float) -> None:
    """A position is open after its stop-loss leg was rejected."""
    message, details = error_example("POSITION_UNPROTECTED")
    await _critical(sim, frames.error("POSITION_UNPROTECTED", message, details=details))
    await asyncio.sleep(pause)


async def liquidation(sim: Simulator, pause: float) -> None:
    """The broker liquidates a position; the position closes."""
    message, details = error_example("LIQUIDATION")
    await _critical(sim, frames.error("LIQUIDATION", message, details=details))
    await asyncio.sleep(pause)
    closed = position_body("pos_" + secrets.token_hex(4), quantity="0", realized_pnl="-812.40")
    await sim.broadcast(frames.position("POSITION_CLOSED", closed))


async def oco_double_exit(sim: Simulator, pause: float) -> None:
    """Both legs of an OCO group fill before the second cancel reaches the broker.

    As in v0.2.0: the order router's notification goes to a channel no client reads, so
    no error frame arrives; only the gateway's counters say it happened.
    """
    sim.inc_metric("gateway_oco_double_exit_total", _platform(sim))
    sim.inc_metric("gateway_critical_notifications_dropped_total", _platform(sim))
    await asyncio.sleep(pause)


async def oco_double_exit_frame(sim: Simulator, pause: float) -> None:
    """The documented protocol, not what v0.2.0 does: the OCO_DOUBLE_EXIT error frame."""
    sim.inc_metric("gateway_oco_double_exit_total", _platform(sim))
    message, details = error_example("OCO_DOUBLE_EXIT")
    await _critical(sim, frames.error("OCO_DOUBLE_EXIT", message, details=details))
    await asyncio.sleep(pause)


async def margin_call(sim: Simulator, pause: float) -> None:
    """Margin use climbs to a warning, then to a margin call."""
    await sim.broadcast(frames.account("MARGIN_WARNING", account_body(margin_used="8200.00")))
    await asyncio.sleep(pause)
    await sim.broadcast(frames.account("MARGIN_CALL", account_body(margin_used="9650.00")))
    await asyncio.sleep(pause)


async def unprotected_fill(sim: Simulator, pause: float) -> None:
    """A fill-time protection failure that only the gateway's own metrics ever show."""
    sim.inc_metric("gateway_critical_notifications_dropped_total", _platform(sim))
    await asyncio.sleep(pause)


async def orders(sim: Simulator, pause: float) -> None:
    """A limit order is created, partly then fully filled; the position and balance follow."""
    order_id = "ord_" + secrets.token_hex(4)
    sim.inc_metric("gateway_orders_submitted_total", _platform(sim))
    sim.inc_metric("gateway_order_submit_duration_seconds", _platform(sim), 0.042)
    steps = (
        ("ORDER_CREATED", "0", "NEW"),
        ("ORDER_PARTIALLY_FILLED", "60", "PARTIALLY_FILLED"),
        ("ORDER_FILLED", "100", "FILLED"),
    )
    for event, filled, status in steps:
        sim.inc_metric("gateway_order_events_total", {**_platform(sim), "event_type": event})
        await sim.broadcast(frames.order(event, order_body(order_id, filled, status)))
        await asyncio.sleep(pause)
    await sim.broadcast(frames.trade("TRADE_FILLED", fill_trade(order_id)))
    await asyncio.sleep(pause)
    opened = position_body("pos_" + secrets.token_hex(4), quantity="100", realized_pnl="0.00")
    await sim.broadcast(frames.position("POSITION_OPENED", opened))
    await asyncio.sleep(pause)
    await sim.broadcast(frames.account("BALANCE_UPDATED", account_body(margin_used="1500.00")))


# The feed-health scenarios leave /health green and send no frame, as the real gateway does: only
# the market data changes. They last QUIET_PAUSES pauses, so that a monitor with a short silence
# floor (the demo's) sees them.
QUIET_PAUSES = 5
SILENT_SYMBOL = "MSFT"


async def instrument_silent(sim: Simulator, pause: float) -> None:
    """One instrument stops ticking while the others go on (the broker muted it)."""
    sim.market.muted.add(SILENT_SYMBOL)
    await asyncio.sleep(pause * QUIET_PAUSES)
    sim.market.muted.discard(SILENT_SYMBOL)


async def feed_frozen(sim: Simulator, pause: float) -> None:
    """Every instrument stops ticking while the broker connection stays up."""
    symbols = {inst.symbol for inst in instruments()}
    sim.market.muted |= symbols
    await asyncio.sleep(pause * QUIET_PAUSES)
    sim.market.muted -= symbols


async def late_quotes(sim: Simulator, pause: float) -> None:
    """Quotes arrive 5 s after their own timestamp (an exchange or broker falling behind)."""
    sim.market.late_seconds = 5.0
    await asyncio.sleep(pause * QUIET_PAUSES)
    sim.market.late_seconds = 0.0


async def market_closed(sim: Simulator, pause: float) -> None:
    """The market closes: no market data at all, the broker stays connected, /health green.

    On the wire a closed market is a frozen feed; Alertmanager's time intervals mute the feed
    alerts outside trading hours (alerts/alertmanager.yml).
    """
    sim.market.closed = True
    await asyncio.sleep(pause * QUIET_PAUSES)
    sim.market.closed = False


async def graceful_shutdown(sim: Simulator, pause: float) -> None:
    """The gateway is restarted: DISCONNECTING, close 1001, refused for 2 x pause, a new process."""
    await sim.graceful_shutdown(down_seconds=2 * pause)


async def shutdown_without_close_frame(sim: Simulator, pause: float) -> None:
    """A restart whose process exits before its close frame (about 1 in 3 real shutdowns)."""
    await sim.graceful_shutdown(down_seconds=2 * pause, close_frame=False)


SCENARIOS: dict[str, Scenario] = {
    "broker_outage": broker_outage,
    "rate_limit": rate_limit,
    "error_codes": error_codes,
    "position_unprotected": position_unprotected,
    "liquidation": liquidation,
    "oco_double_exit": oco_double_exit,
    "oco_double_exit_frame": oco_double_exit_frame,
    "margin_call": margin_call,
    "unprotected_fill": unprotected_fill,
    "orders": orders,
    "instrument_silent": instrument_silent,
    "feed_frozen": feed_frozen,
    "late_quotes": late_quotes,
    "market_closed": market_closed,
    "broker_give_up": broker_give_up,
    "documented_recovery": documented_recovery,
    "graceful_shutdown": graceful_shutdown,
    "shutdown_without_close_frame": shutdown_without_close_frame,
}
RESTARTS: frozenset[str] = frozenset({"graceful_shutdown", "shutdown_without_close_frame"})
"""Scenarios that restart the gateway (the only cure of a give-up): run on their own."""
DOCUMENTED_ONLY: frozenset[str] = frozenset({"documented_recovery", "oco_double_exit_frame"})
"""What the guide documents and the real gateway (v0.2.0) does not do."""
CYCLE: tuple[str, ...] = tuple(name for name in SCENARIOS if name not in RESTARTS | DOCUMENTED_ONLY)


async def run_scenario(sim: Simulator, name: str, pause: float) -> None:
    """Run one named scenario to completion, logging its start and end."""
    log.info("simulator.scenario.started", scenario=name)
    await SCENARIOS[name](sim, pause)
    log.info("simulator.scenario.finished", scenario=name)


async def run_cycle(sim: Simulator, pause: float) -> None:
    """Run the CYCLE once, in a fixed order; it ends with a give-up, which stays until a restart."""
    for name in CYCLE:
        await run_scenario(sim, name, pause)
        await asyncio.sleep(pause)


async def run_rounds(sim: Simulator, pause: float, stop: asyncio.Event) -> None:
    """Cycle until `stop`; after each cycle the operator restarts the gateway to clear the
    give-up, every other time losing the close frame as real shutdowns do."""
    rounds = 0
    while not stop.is_set():
        await run_cycle(sim, pause)
        rounds += 1
        restart = "graceful_shutdown" if rounds % 2 else "shutdown_without_close_frame"
        await run_scenario(sim, restart, pause)
        await asyncio.sleep(pause)
