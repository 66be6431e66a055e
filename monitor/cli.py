"""The `gateway-monitor` command: run (default), demo, simulate, --check-config."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from . import __version__, logs
from .config import FLAG_ALIASES, SETTINGS, Config, ConfigError, load
from .stopping import StopRequest, run_until_signal

EXIT_BAD_CONFIG = 2


def build_parser() -> argparse.ArgumentParser:
    """The command-line interface; every setting also has an env var and a YAML key."""
    settings = argparse.ArgumentParser(add_help=False)
    group = settings.add_argument_group("settings (flag > env var > --config file > default)")
    group.add_argument("--config", default=argparse.SUPPRESS, metavar="FILE",
                       help="YAML file of settings (env MONITOR_CONFIG)")
    for s in SETTINGS:
        group.add_argument("--" + s.name.replace("_", "-"), *FLAG_ALIASES.get(s.name, ()), dest=s.name,
                           default=argparse.SUPPRESS,
                           metavar="JSON" if s.kind is list else s.kind.__name__.upper(),
                           help=f"{s.help} (env {s.env}, default {s.default})")
    parser = argparse.ArgumentParser(
        prog="gateway-monitor", parents=[settings],
        description="Prometheus/alerting sidecar for the Tektii Trading Gateway.",
    )
    parser.add_argument("--version", action="version", version=f"gateway-monitor {__version__}")
    parser.add_argument("--check-config", action="store_true", default=argparse.SUPPRESS,
                        help="validate the configuration, print it, exit 0 (valid) or 1")
    sub = parser.add_subparsers(dest="command", metavar="{run,demo,simulate}")
    sub.add_parser("run", parents=[settings], help="observe a gateway (the default)")
    demo = sub.add_parser("demo", help="run the simulated gateway and the monitor against it")
    demo.add_argument("--listen", default="127.0.0.1:9478", help="the monitor's address")
    demo.add_argument("--gateway-listen", default="127.0.0.1:18080",
                      help="the simulated gateway's address")
    demo.add_argument("--pause", type=float, default=2.0, help="seconds between scenario steps")
    simulate = sub.add_parser("simulate", help="run the simulated gateway alone")
    simulate.add_argument("--listen", default="127.0.0.1:18080", help="host:port to serve on")
    simulate.add_argument("--api-key-file", default=None, help="require the key in this file")
    simulate.add_argument("--no-cycle", action="store_true", help="do not cycle the scenarios")
    simulate.add_argument("--market-data-rate", type=float, default=20.0,
                          help="quote/candle frames per second")
    simulate.add_argument("--pause", type=float, default=2.0, help="seconds between scenario steps")
    simulate.add_argument("--broker", default="alpaca-paper",
                          help="platform id of the gateway's provider, e.g. saxo-live")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the console script."""
    argv = sys.argv[1:] if argv is None else list(argv)
    args = vars(build_parser().parse_args(argv))
    command = args.pop("command", None) or "run"
    if command == "demo":
        from .demo import run_demo

        return run_until_signal(run_demo, args["listen"], args["gateway_listen"], args["pause"])
    if command == "simulate":
        from .simulator.cli import run_simulate

        return run_until_signal(run_simulate, args)
    check = args.pop("check_config", False)
    config_file = args.pop("config", None)
    try:
        config = load(args, config_file=config_file)
    except ConfigError as err:
        print("gateway-monitor: invalid configuration:", file=sys.stderr)
        for problem in err.problems:
            print(f"  - {problem}", file=sys.stderr)
        return 1 if check else EXIT_BAD_CONFIG
    if check:
        print(f"configuration is valid: {config!r}")
        return 0
    logs.configure(config.log_level, config.log_format)
    return run_until_signal(_run_monitor, config)


async def _run_monitor(config: Config, stop: StopRequest) -> None:
    from .app import Monitor

    monitor = Monitor(config)
    await monitor.start()
    await monitor.stop(f"received {await stop.wait()}")
