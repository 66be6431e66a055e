"""Feed health paged end to end on the real gateway's Saxo adapter (scenario: feed_paging.py).

Per Prometheus/Alertmanager version line (processes.LINES, the lines at the same time), Prometheus
scrapes the real gateway and a monitor process observing it; the repository's rules and
alerts/alertmanager.yml route the alerts to a webhook receiver. Muting EURUSD at fake_saxo.py
must ticket GatewayInstrumentSilent naming EURUSD, never GBPUSD, while the gateway's /health
stays green; muting GBPUSD too must page GatewayFeedFrozen once, the instrument alerts
inhibited; unmuting both must resolve them.

Scaled to take about a minute and a half in `make test`: the monitor calls 3 s without a tick a
silence (`--silence-floor-seconds 3 --silence-multiple 2`), Prometheus scrapes and evaluates every
second, the rules are rendered with TEST_THRESHOLDS and Alertmanager runs production's timings
shortened in proportion (paging_support.py). The markets-closed mutes of alerts/alertmanager.yml
are removed (they mute saxo-*'s feed alerts on FX weekends: the test must not depend on the
day). The same scenario at default settings is test_feed_default_settings.py.

Times from each control call to the monitor's log line, to the alert firing (or gone) in
Prometheus and to the webhook are printed by test_feed_latency_report (`pytest -s`) and written to
paging-latency.json in each line's directory (paging-feed-<line>N/).
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest
from alerts_support import no_leftover_daemons  # noqa: F401 - importing a fixture registers it
from feed_paging import (
    Plan,
    check_bounds,
    check_frozen_pages_once,
    check_gbpusd_never_named,
    check_health_green,
    check_instrument_alerts_inhibited,
    check_nothing_else,
    check_resolved,
    check_ticket_names_eurusd,
    feed_body,
    figures,
    print_figures,
)
from gateway_support import FakeSaxo, require_fake_saxo, saxo_env
from harness.durations import seconds
from paging_support import Run, Setup, pipeline_run, run_lines, run_of
from processes import LINES, VersionLine
from test_e2e_paging import ROUTE_TIMINGS

FAKE_SAXO = require_fake_saxo()
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.usefixtures("no_leftover_daemons")]


PLAN = Plan(
    name="scaled",
    setup=Setup(monitor_flags=("--silence-floor-seconds", "3", "--silence-multiple", "2"),
                market_hours=False),
    floor=3.0,
    interval=1.0,
    ticket_wait=seconds(ROUTE_TIMINGS["ticket"]["group_wait"]),
    ticket_interval=seconds(ROUTE_TIMINGS["ticket"]["group_interval"]),
    page_wait=seconds(ROUTE_TIMINGS["pager"]["group_wait"]),
    page_interval=seconds(ROUTE_TIMINGS["pager"]["group_interval"]),
)


async def feed_run(line: VersionLine, workdir: Path) -> Run:
    """A fake broker of its own, and the pipeline around a Saxo-mode gateway."""
    fake = FakeSaxo(FAKE_SAXO, workdir / "fake-saxo")
    await fake.start()
    try:
        return await pipeline_run(line, workdir, saxo_env(fake.port), feed_body(fake, PLAN), PLAN.setup)
    finally:
        await fake.stop()


@pytest.fixture(scope="module")
def feed_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run | BaseException]:
    """The scenario, once per version line, the lines at the same time."""
    workdirs = {name: tmp_path_factory.mktemp(f"paging-feed-{name}") for name in LINES}
    return asyncio.run(run_lines(feed_run, workdirs))


@pytest.fixture(scope="module", params=list(LINES))
def feed_run_(request: pytest.FixtureRequest, feed_runs: dict[str, Run | BaseException]) -> Run:
    """What the pipeline of one version line observed."""
    return run_of(feed_runs, request.param)


# --- tests ---------------------------------------------------------------------------------------


def test_muted_eurusd_tickets_instrument_silent_naming_it(feed_run_: Run) -> None:
    check_ticket_names_eurusd(feed_run_)


def test_gbpusd_is_never_named(feed_run_: Run) -> None:
    check_gbpusd_never_named(feed_run_)


def test_health_stays_green_while_muted(feed_run_: Run) -> None:
    check_health_green(feed_run_)


def test_every_instrument_muted_pages_feed_frozen_once(feed_run_: Run) -> None:
    check_frozen_pages_once(feed_run_)


def test_frozen_feed_inhibits_the_instrument_alerts(feed_run_: Run) -> None:
    check_instrument_alerts_inhibited(feed_run_)


def test_unmuting_resolves_them(feed_run_: Run) -> None:
    check_resolved(feed_run_)


def test_feed_run_notifies_nothing_else(feed_run_: Run) -> None:
    check_nothing_else(feed_run_)


def test_feed_latency_report(feed_run_: Run) -> None:
    table = figures(feed_run_)
    path = feed_run_.workdir / "paging-latency.json"
    path.write_text(json.dumps({"line": feed_run_.line, "plan": PLAN.name, "seconds": table}, indent=2),
                    encoding="utf-8")
    print_figures(f"{LINES[feed_run_.line].title}, scaled (floor 3 s, 1 s scrape/evaluation) ({path})", table)
    check_bounds(table, PLAN)
