"""`gateway-monitor demo`: the simulated gateway and the monitor in one process."""

from __future__ import annotations

import asyncio
import contextlib
import secrets

from . import logs
from .app import Monitor
from .config import load
from .simulator import Simulator
from .simulator.control import control_routes
from .simulator.scenarios import run_market_data, run_rounds
from .stopping import StopRequest

MARKET_DATA_RATE = 50.0
SILENCE_FLOOR_SECONDS = 3.0
"""The demo's feed scenarios last seconds, not minutes: its monitor calls an instrument silent
after 3 s without a tick (by default 60 s, or 20 of its usual intervals)."""


async def run_demo(listen: str, gateway_listen: str, pause: float, stop: StopRequest) -> None:
    """Run until `stop`: scenarios cycle on the simulator, the monitor observes it."""
    logs.configure("info", "auto")
    key = secrets.token_urlsafe(32)  # the demo exercises the auth path like a real deployment
    sim = Simulator(api_key=key, extra_routes=[control_routes])
    host, port = gateway_listen.rsplit(":", 1)
    await sim.start(host, int(port))
    config = load({"gateway_url": sim.url, "listen": listen, "probe_interval_seconds": 2.0,
                   "probe_timeout_seconds": 1.0, "silence_floor_seconds": SILENCE_FLOOR_SECONDS,
                   "silence_multiple": 1.0},
                  environ={"GATEWAY_API_KEY": key})
    monitor = Monitor(config)
    await monitor.start()
    print(
        f"\n  simulated gateway: {sim.url}  (its own metrics: {sim.url}/metrics)\n"
        f"  monitor metrics:   http://{listen}/metrics\n"
        f"  monitor health:    http://{listen}/-/healthy  http://{listen}/-/ready\n"
        f"  status page:       http://{listen}/  (silent after {SILENCE_FLOOR_SECONDS:g} s here)\n"
        f"  scenarios cycle every few seconds; the monitor logs one JSON line per event below.\n"
        f"  Ctrl-C stops.\n",
        flush=True,
    )
    while sim.client_count == 0 and not stop.event.is_set():  # noqa: ASYNC110 - first scenario seen
        await asyncio.sleep(0.05)
    tasks = [
        asyncio.create_task(run_market_data(sim, MARKET_DATA_RATE, stop.event)),
        asyncio.create_task(run_rounds(sim, pause, stop.event)),
    ]
    reason = await stop.wait()
    for task in tasks:
        task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await task
    await monitor.stop(f"received {reason}")
    await sim.stop()
