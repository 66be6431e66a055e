"""A simulated Tektii Trading Gateway that behaves like the real one, faults included."""

from monitor.simulator.cli import serve
from monitor.simulator.market_data import run_market_data
from monitor.simulator.scenarios import SCENARIOS, run_cycle, run_scenario
from monitor.simulator.server import Simulator

__all__ = ["SCENARIOS", "Simulator", "run_cycle", "run_market_data", "run_scenario", "serve"]
