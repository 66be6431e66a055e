"""Many simulated gateways in one process, each its own gateway on its own port.

    python tests/harness/fleet_gateways.py --brokers saxo-live,saxo-live,alpaca-paper
                                           [--market-data-rate 2] [--seed 1]

One `Simulator` per broker given, each with its own listener on 127.0.0.1 (a free port), /health,
/readyz, /metrics, /v1/ws, the /_sim/ control API (as `gateway-monitor simulate --no-cycle`) and
its own market data. Once every gateway listens, the process prints one JSON line,
`{"ports": [...]}`, in the order of --brokers, then runs until SIGTERM/SIGINT. A simulated
gateway costs a listener and a market-data task here, not an interpreter: the fleet harness
(fleet.py) hosts 100 of them in a handful of processes, and gives each its own monitor process.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import sys
from pathlib import Path

if __name__ == "__main__":  # run as a script: import harness.* from tests/, as pytest does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.net import HOST
from monitor import logs
from monitor.simulator import Simulator, run_market_data
from monitor.simulator.control import control_routes
from monitor.stopping import StopRequest, run_until_signal


async def _feed(sim: Simulator, rate: float, stop: asyncio.Event, delay: float) -> None:
    """Market data from `delay` seconds on, so that the gateways do not tick in lockstep."""
    await asyncio.sleep(delay)
    await run_market_data(sim, rate, stop)


async def host(brokers: list[str], rate: float, seed: int, stop: StopRequest) -> None:
    """Serve one simulator per entry of `brokers` until `stop`."""
    logs.configure("warning", "json")
    rng = random.Random(seed)
    sims: list[Simulator] = []
    feeds: list[asyncio.Task[None]] = []
    feed_stop = asyncio.Event()
    try:
        for broker in brokers:
            sim = Simulator(extra_routes=[control_routes], broker=broker)
            await sim.start(HOST, 0)
            sims.append(sim)
        period = 1 / rate if rate > 0 else 0.0
        feeds = [asyncio.create_task(_feed(sim, rate, feed_stop, rng.uniform(0, period))) for sim in sims]
        print(json.dumps({"ports": [sim.port for sim in sims]}), flush=True)
        await stop.wait()
    finally:
        feed_stop.set()
        await asyncio.gather(*feeds, return_exceptions=True)
        await asyncio.gather(*(sim.stop() for sim in sims), return_exceptions=True)


def main(argv: list[str] | None = None) -> int:
    """Parse the options and serve until a signal."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--brokers", required=True, help="comma-separated platform ids, one per gateway")
    parser.add_argument("--market-data-rate", type=float, default=2.0, help="frames/s per gateway")
    parser.add_argument("--seed", type=int, default=1, help="seed of the market-data start offsets")
    args = parser.parse_args(argv)
    brokers = [b.strip() for b in args.brokers.split(",") if b.strip()]
    return run_until_signal(host, brokers, args.market_data_rate, args.seed)


if __name__ == "__main__":
    sys.exit(main())
