"""Running the simulated gateway alone: serve() and the `gateway-monitor simulate` command."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import structlog

from monitor import logs, redaction
from monitor.simulator.control import control_routes
from monitor.simulator.http_api import DEFAULT_BROKER
from monitor.simulator.market_data import run_market_data
from monitor.simulator.scenarios import run_rounds
from monitor.simulator.server import Simulator
from monitor.stopping import StopRequest

log = structlog.get_logger("simulator")


async def serve(
    host: str,
    port: int,
    *,
    api_key: str | None,
    cycle: bool,
    market_data_rate: float,
    pause: float,
    stop: asyncio.Event,
    broker: str = DEFAULT_BROKER,
) -> None:
    """Serve a simulator of a gateway on `broker` on host:port until `stop` is set."""
    sim = Simulator(api_key=api_key, extra_routes=[control_routes], broker=broker)
    sim.scenario_pause = pause
    await sim.start(host, port)
    log.info(
        "simulator.serving",
        url=sim.url,
        broker=broker,
        cycle=cycle,
        market_data_rate=market_data_rate,
        pause=pause,
    )
    tasks = [asyncio.create_task(run_market_data(sim, market_data_rate, stop))]
    if cycle:
        tasks.append(asyncio.create_task(run_rounds(sim, pause, stop)))
    try:
        await stop.wait()
    finally:
        for task in tasks:
            task.cancel()
        for result in await asyncio.gather(*tasks, return_exceptions=True):
            if not isinstance(result, asyncio.CancelledError | None):
                log.error("simulator.task_failed", error=repr(result))
        await sim.stop()


def parse_listen(listen: str) -> tuple[str, int]:
    """Split host:port (an empty host, as in ":18080", means 127.0.0.1)."""
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise SystemExit(f"--listen must look like 127.0.0.1:18080, got {listen!r}")
    return host or "127.0.0.1", int(port)


def read_key(path: str | None) -> str | None:
    """The API key held in `path` (surrounding whitespace ignored), or None without a file."""
    if path is None:
        return None
    key = Path(path).read_text(encoding="utf-8").strip()
    if not key:
        raise SystemExit(f"--api-key-file {path} is empty")
    redaction.register(key)
    return key


async def run_simulate(args: dict[str, Any], stop: StopRequest) -> None:
    """Serve the simulator with the options of the `simulate` sub-command."""
    logs.configure(args.get("log_level", "info"), args.get("log_format", "auto"))
    host, port = parse_listen(args.get("listen", "127.0.0.1:18080"))
    await serve(
        host,
        port,
        api_key=read_key(args.get("api_key_file")),
        cycle=not args.get("no_cycle", False),
        market_data_rate=float(args.get("market_data_rate", 20.0)),
        pause=float(args.get("pause", 2.0)),
        stop=stop.event,
        broker=args.get("broker", DEFAULT_BROKER),
    )
