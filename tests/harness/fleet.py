"""The fleet harness: N simulated gateways, a monitor each, one Prometheus, one Alertmanager.

    python tests/harness/fleet.py --gateways 100                  (make fleet N=100)
    python tests/harness/fleet.py --gateways 10 --profile production

What it asks of the alerting design (alerts/README.md, "A fleet: one incident, one page"): a
broker-wide incident pages once, account-level events page per pod. The phases:

1. healthy: the fleet streams market data; nothing may page (the Watchdog goes to its own
   receiver);
2. outage: every gateway on `saxo-live` (60% of the fleet by default, or --outage-gateways of
   them) gives up on its broker (the simulator's `broker_give_up`, then its market data stops),
   staggered at random over the profile's stagger; pages are counted as
   test_e2e_paging.new_pages counts them (target: at most 2) and the broker-wide page is read:
   broker, how many gateways, which. During it, two liquidations on two other pods must page
   each with its pod;
3. recovery: the broker is back, the operator restarts the gateways that gave up (the
   simulator's graceful restart, staggered likewise); everything resolves;
4. dashboard: a few events that dashboard panels show, then every panel query of every
   deploy/grafana/*.json dashboard runs against the run's Prometheus (timed; each must return
   data).

Every notification is recorded; the figures (fleet_measure.py) are read throughout. The results
table is printed and written, with the method and the machine, into --results
(tests/harness/FLEET-RESULTS.md), one section per fleet size and profile; everything else goes to
--json. Exit status 0 only when every check held.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import signal
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

if __name__ == "__main__":  # run as a script: import harness.* from tests/, as pytest does
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from harness.fleet_measure import QueryResult, Sampler, run_dashboard_queries, scrape_figures
from harness.fleet_profile import PROFILES, Profile
from harness.fleet_stack import SILENCE_SECONDS, SILENT, Fleet, Gateway, step
from harness.paths import REPO
from monitor.simulator import frames
from monitor.simulator.market_data import instruments

OUTAGE_BROKER = "saxo-live"
OTHER_BROKER = "alpaca-paper"
SYMBOLS = [inst.symbol for inst in instruments()]
RESULTS = Path(__file__).with_name("FLEET-RESULTS.md")


@dataclass
class Run:
    """One fleet run: the plan, the processes, and everything observed."""

    profile: Profile
    fleet: Fleet
    hit: list[Gateway]  # give up in the outage
    liquidated: list[Gateway]  # liquidations on these, during the outage
    seed: int
    run_phases: list[str]  # of PHASES, in order
    sampler: Sampler | None = None
    started: float = field(default_factory=time.monotonic)
    started_wall: float = field(default_factory=time.time)
    phases: dict[str, tuple[float, float]] = field(default_factory=dict)
    events: dict[str, float] = field(default_factory=dict)  # what happened when (monotonic)
    observed: dict[str, Any] = field(default_factory=dict)
    queries: list[QueryResult] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)
    rng: random.Random = field(init=False)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)  # the staggering of give-ups and restarts


Plan = tuple[list[Gateway], list[Gateway], list[Gateway]]


def plan(n: int, saxo_share: float, outage_gateways: int | None, seed: int) -> Plan:
    """The fleet (brokers assigned at random), the gateways the outage hits, the two liquidated."""
    rng = random.Random(seed)
    saxo = set(rng.sample(range(n), round(saxo_share * n)))
    gateways = [Gateway(i, OUTAGE_BROKER if i in saxo else OTHER_BROKER) for i in range(n)]
    on_saxo = [gw for gw in gateways if gw.broker == OUTAGE_BROKER]
    hit = on_saxo if outage_gateways is None else rng.sample(on_saxo, outage_gateways)
    others = sorted((gw for gw in gateways if gw not in hit), key=lambda gw: gw.broker == OUTAGE_BROKER)
    if len(hit) < 2 or len(others) < 2:
        raise SystemExit(f"{n} gateways: need >= 2 hit by the outage and >= 2 others, got {len(hit)}, "
                         f"{len(others)}")
    return gateways, hit, others[:2]


# --- phases ------------------------------------------------------------------------------------


async def healthy(run: Run) -> None:
    """Market data only; the Watchdog must arrive, nothing else."""
    receiver = run.fleet.receiver
    await receiver.wait_for(lambda n: n.path == "/watchdog", 30 + 5 * run.profile.interval)
    await asyncio.sleep(run.profile.healthy)
    run.observed["healthy_alerts"] = await run.fleet.query('ALERTS{alertname!="Watchdog"}')


async def outage(run: Run) -> None:
    """The broker gives up on every gateway hit, staggered; two liquidations elsewhere meanwhile."""
    start = time.monotonic()
    run.events["outage"] = start
    offsets = {gw.pod: run.rng.uniform(0, run.profile.stagger) for gw in run.hit}

    async def give_up(gw: Gateway) -> None:
        await asyncio.sleep(offsets[gw.pod])
        await run.fleet.sim(gw, "scenario/broker_give_up", pause=0.2)
        run.events[f"give_up {gw.pod}"] = time.monotonic()
        await run.fleet.sim(gw, "market", {"muted": SYMBOLS})  # no broker, no prices

    await asyncio.gather(*(give_up(gw) for gw in run.hit))
    profile = run.profile
    page_timeout = profile.stagger + 4 * profile.interval + profile.pager("group_wait") + 20
    try:
        await run.fleet.receiver.wait_for(_page_of("GatewayBrokerOutage"), max(1.0, start + page_timeout
                                                                                 - time.monotonic()))
    except AssertionError:
        run.observed["outage_page_missing"] = True
    for i, gw in enumerate(run.liquidated):
        await asyncio.sleep(1.3 * profile.interval if i else 0)
        run.events[f"liquidation {gw.pod}"] = time.monotonic()
        await run.fleet.sim(gw, "scenario/liquidation", pause=0.1)
    for gw in run.liquidated:
        try:
            await run.fleet.receiver.wait_for(_page_of("GatewayLiquidation", gw.pod), page_timeout)
        except AssertionError:
            run.observed[f"liquidation_page_missing {gw.pod}"] = True
    await asyncio.sleep(max(0.0, start + profile.hold - time.monotonic()))


def _page_of(alertname: str, pod: str | None = None) -> Any:
    def match(note: Any) -> bool:
        return note.path == "/pager" and any(
            a["status"] == "firing" and a["labels"].get("alertname") == alertname
            and (pod is None or a["labels"].get("pod") == pod) for a in note.payload.get("alerts", []))
    return match


async def recovery(run: Run) -> None:
    """The broker is back: restart every gateway that gave up; wait until everything resolved."""
    run.events["recovery"] = time.monotonic()
    profile = run.profile
    offsets = {gw.pod: run.rng.uniform(0, profile.stagger) for gw in run.hit}

    async def restart(gw: Gateway) -> None:
        await asyncio.sleep(offsets[gw.pod])
        await run.fleet.sim(gw, "market", {"muted": []})
        await run.fleet.sim(gw, "shutdown", down_seconds=profile.restart_down)
        run.events[f"restart {gw.pod}"] = time.monotonic()

    await asyncio.gather(*(restart(gw) for gw in run.hit))
    fleet = run.fleet
    run.observed["failed_cleared"] = await fleet.until(
        lambda: _none(fleet.query("gateway_monitor_broker_connection_failed == 1")), 60)
    timeout = profile.threshold("critical_event_window") + 60
    run.observed["quiet"] = await fleet.until(
        lambda: _none(fleet.query('ALERTS{alertstate="firing", alertname!="Watchdog"}')), timeout)
    run.events["quiet"] = time.monotonic()
    await asyncio.sleep(profile.longest_group_interval + 2)  # the last resolutions go out


async def _none(result: Any) -> bool:
    return not await result


async def silence(run: Run, gateways: list[Gateway], muted: bool) -> None:
    """Mute (or unmute) SILENT on `gateways`; wait until Prometheus sees them all silent (or none)."""
    fleet = run.fleet
    for gw in gateways:
        await fleet.sim(gw, "market", {"muted": [SILENT] if muted else []})
    query = f'count(gateway_monitor_instrument_silent_since_timestamp_seconds{{symbol="{SILENT}"}})'

    async def reached() -> bool:
        result = await fleet.query(query)
        count = float(result[0]["value"][1]) if result else 0.0
        return count == (len(gateways) if muted else 0)
    if not await fleet.until(reached, SILENCE_SECONDS + 20 * run.profile.interval):
        run.observed[f"silence {'start' if muted else 'end'} missed"] = True


async def dashboard(run: Run) -> None:
    """Events that dashboard panels show, a stale symbol, two silences that ended and one under way
    on two gateways of one broker (a fleet ticket), then every panel query of every dashboard."""
    fleet = run.fleet
    pods = [run.hit[0], run.liquidated[0]]
    quiet = run.hit[:2]  # one broker: their silences add up to GatewayBrokerDegraded
    for _ in range(2):  # the silence histogram's rate needs two observations
        await silence(run, quiet, muted=True)
        await silence(run, quiet, muted=False)
    await silence(run, quiet, muted=True)
    for _ in range(2):  # histograms and counters observed twice, a scrape apart: rate() sees them
        for gw in pods:
            await fleet.sim(gw, "scenario/orders", pause=0.05)
            await fleet.sim(gw, "scenario/broker_outage", pause=0.3)
        await asyncio.sleep(2.5 * run.profile.interval)
    for gw in pods:
        await fleet.sim(gw, "scenario/rate_limit", pause=0.05)
        await fleet.sim(gw, "scenario/error_codes", pause=0.05)
        await fleet.sim(gw, "metric", {"name": "gateway_circuit_breaker_resets_total"})
        await fleet.sim(gw, "metric", {"name": "gateway_ws_slow_consumer_disconnects", "value": 3})
    # The gateway exports its safety counters only from the first event: an OCO double exit (v0.2.0:
    # counted twice, no frame) creates both, and pages once, for its pod.
    run.events["oco"] = time.monotonic()
    await fleet.sim(run.liquidated[0], "scenario/oco_double_exit", pause=0.05)
    stale = frames.data_staleness("STALE", ["DASH"], stale_since=frames.iso(), broker=pods[0].broker)
    await fleet.sim(pods[0], "frame", stale)
    await fleet.until(lambda: fleet.query("gateway_monitor_symbol_stale_since_timestamp_seconds"), 30)
    profile = run.profile
    try:  # the OCO page, before the queries: the dashboard phase's only page
        await fleet.receiver.wait_for(_page_of("GatewayOcoDoubleExit", run.liquidated[0].pod),
                                      4 * profile.interval + profile.pager("group_wait") + 20)
    except AssertionError:
        run.observed["oco_page_missing"] = True
    await asyncio.sleep(profile.pager("group_interval") + profile.interval)
    run.events["queries"] = time.monotonic()
    run.queries = await run_dashboard_queries(fleet)
    await fleet.sim(pods[0], "frame", frames.data_staleness("FRESH", ["DASH"], broker=pods[0].broker))
    await silence(run, quiet, muted=False)


PHASES = {"healthy": healthy, "outage": outage, "recovery": recovery, "dashboard": dashboard}


# --- the run -----------------------------------------------------------------------------------


async def timeline(run: Run, phase: str, before: float, seconds: float) -> list[dict[str, float]]:
    """Per evaluation, from `before` seconds before the phase's start (t=0) on: gateways of the
    broker failed as the rules saw them, per-pod GatewayBrokerConnectionFailed alerts firing (one
    per source), GatewayBrokerOutage firing."""
    failed = f'sum(broker:gateway_monitor_gateways_failed:count{{broker="{OUTAGE_BROKER}"}})'
    per_pod = ('count(ALERTS{alertname="GatewayBrokerConnectionFailed", alertstate="firing", '
               f'broker="{OUTAGE_BROKER}"}})')
    exprs = {"failed": failed, "per_pod_firing": per_pod,
             "outage_firing": 'count(ALERTS{alertname="GatewayBrokerOutage", alertstate="firing"})'}
    origin = run.started_wall + (run.phases[phase][0] - run.started)
    interval = run.profile.interval
    grid = [round(-before + i * interval, 3) for i in range(int((before + seconds) / interval) + 1)]
    rows: dict[float, dict[str, float]] = {t: dict.fromkeys(exprs, 0.0) for t in grid}
    for name, expr in exprs.items():
        body = await run.fleet.api("query_range", query=expr, start=str(origin - before),
                                   end=str(origin + seconds), step=step(interval))
        for series in body["data"]["result"]:
            for at, value in series["values"]:
                rows.setdefault(round(float(at) - origin, 3), {})[name] = float(value)
    return [{"t": t, **rows[t]} for t in sorted(rows)]


async def measure(run: Run) -> None:
    """The figures of the run, read before anything stops."""
    fleet, profile = run.fleet, run.profile
    run.figures["scrapes"] = await scrape_figures(fleet, time.monotonic() - run.started)
    groups = (await fleet.api("rules"))["data"]["groups"]
    run.figures["rules"] = sorted(({"group": g["name"], "rule": r["name"], "seconds": r["evaluationTime"]}
                                   for g in groups for r in g["rules"]), key=lambda r: -r["seconds"])
    before = 2 * profile.interval
    if "outage" in run.phases:
        window = profile.stagger + profile.hold + 5 * profile.interval
        run.figures["outage_timeline"] = await timeline(run, "outage", before, window)
    if "recovery" in run.phases:
        window = profile.stagger + 30 * profile.interval
        run.figures["recovery_timeline"] = await timeline(run, "recovery", before, window)


async def execute(run: Run) -> None:
    """Start the fleet, run the phases, measure, stop everything."""
    fleet = run.fleet
    try:
        await fleet.start()
        run.events["ready"] = time.monotonic()
        run.sampler = Sampler(fleet, every=max(2.0, 2 * run.profile.interval))
        run.sampler.start()
        for name in run.run_phases:
            phase = PHASES[name]
            begin = time.monotonic()
            print(f"[fleet] {name} (t={begin - run.started:.0f}s)", flush=True)
            await phase(run)
            run.phases[name] = (begin, time.monotonic())
        await measure(run)
    finally:
        if run.sampler is not None:
            await run.sampler.stop()
        run.events["end"] = time.monotonic()
        await fleet.stop()


def main(argv: list[str] | None = None) -> int:
    """Run the fleet harness; print the table, write the results; 0 when every check held."""
    from harness.fleet_report import report

    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--gateways", "-n", type=int, default=6, help="fleet size (default 6)")
    parser.add_argument("--profile", choices=sorted(PROFILES), default="e2e",
                        help="timings (fleet_profile.py)")
    parser.add_argument("--saxo-share", type=float, default=0.6, help=f"share of gateways on {OUTAGE_BROKER}")
    parser.add_argument("--outage-gateways", type=int, default=None,
                        help=f"how many {OUTAGE_BROKER} gateways give up (default: all)")
    parser.add_argument("--stagger", type=float, default=None, help="seconds the give-ups spread over")
    parser.add_argument("--market-data-rate", type=float, default=2.0, help="frames/s per gateway")
    parser.add_argument("--healthy", type=float, default=None, help="seconds of the healthy phase")
    parser.add_argument("--skip-dashboard", action="store_true", help="no dashboard phase (the CI smoke)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--workdir", type=Path, default=None, help="default build/fleet/N<n>-<profile>")
    parser.add_argument("--results", default=str(RESULTS), help="Markdown file to update ('' for none)")
    parser.add_argument("--json", type=Path, default=None, help="default <workdir>/fleet.json")
    parser.add_argument("--timeout", type=float, default=1200.0, help="the whole run's bound, seconds")
    args = parser.parse_args(argv)
    profile = PROFILES[args.profile]()
    if args.stagger is not None:
        profile = replace(profile, stagger=args.stagger)
    if args.healthy is not None:
        profile = replace(profile, healthy=args.healthy)
    workdir = args.workdir or REPO / "build" / "fleet" / f"N{args.gateways}-{profile.name}"
    workdir.mkdir(parents=True, exist_ok=True)
    gateways, hit, liquidated = plan(args.gateways, args.saxo_share, args.outage_gateways, args.seed)
    fleet = Fleet(profile, workdir, gateways, args.market_data_rate)
    phases = [name for name in PHASES if not (args.skip_dashboard and name == "dashboard")]
    run = Run(profile, fleet, hit, liquidated, args.seed, phases)
    failure = _run_bounded(run, args.timeout)
    results = Path(args.results) if args.results else None
    ok = report(run, failure, results, args.json or workdir / "fleet.json", " ".join(sys.argv))
    return 0 if ok and failure is None else 1


def _run_bounded(run: Run, timeout: float) -> str | None:
    """Run with a deadline; SIGTERM/SIGINT end it cleanly. The failure as text, or None."""

    async def bounded() -> None:
        task = asyncio.current_task()
        loop = asyncio.get_running_loop()
        assert task is not None
        signals = (signal.SIGTERM, signal.SIGINT)

        def interrupt() -> None:
            for sig in signals:  # a second signal must not cut the teardown short: no orphans
                loop.add_signal_handler(sig, lambda: None)
            task.cancel()
        for sig in signals:
            loop.add_signal_handler(sig, interrupt)
        async with asyncio.timeout(timeout):
            await execute(run)

    try:
        asyncio.run(bounded())
    except TimeoutError:
        return f"the run did not finish within {timeout:.0f}s"
    except asyncio.CancelledError:
        return "interrupted"
    except (Exception, BaseException) as err:  # pytest.fail's Failed is a BaseException
        if isinstance(err, KeyboardInterrupt | SystemExit):
            raise
        return f"{type(err).__name__}: {err}"
    return None


if __name__ == "__main__":
    sys.exit(main())
