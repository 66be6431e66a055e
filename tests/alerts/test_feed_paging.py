"""Feed alerts end to end with real processes: a closed market is muted, late quotes open a ticket.

simulated gateway -> monitor (a silence after 2 s) -> Prometheus (the rules rendered with the
scaled TEST_THRESHOLDS of test_e2e_paging.py) -> Alertmanager (alerts/alertmanager.yml, its
webhooks pointed at the receiver) -> webhook receiver, on each version line.

The market-hours mute is the shipped routing with the definition of its interval swapped: the
simulated gateway's broker is alpaca-paper, whose feed alerts the routes mute during
`us-equities-closed`. First that interval covers every moment (a closed market: the feed freezes,
Prometheus fires GatewayFeedFrozen, nobody is paged), then, after a configuration reload, no
moment (the same alert pages). Which hours the shipped intervals cover is data, checked by amtool
in test_alertmanager_config.py; this module proves the routes and the mute work.
"""

from __future__ import annotations

import asyncio
import copy
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import yaml
from alerts_support import ALERTS_DIR
from processes import (
    LINES,
    ProcessStack,
    VersionLine,
    WebhookReceiver,
    alertmanager_test_config,
    post,
    prometheus_config,
    start_alertmanager,
    start_monitor,
    start_prometheus,
    start_simulator,
)
from test_e2e_paging import ROOT_TIMINGS, ROUTE_TIMINGS, firing_names, render_test_rules, scrape_job

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), pytest.mark.usefixtures("no_leftover_daemons")]

ALWAYS = [{"weekdays": ["sunday:saturday"]}]
NEVER = [{"years": ["2000"]}]
MUTED_WAIT = 12.0  # pager group_wait (3s) and group_interval (5s) pass with the alert firing
FIRE_TIMEOUT = 40.0


@dataclass
class Observed:
    """What the run saw; the tests assert on it."""

    frozen_firing_while_closed: bool = False
    pages_while_muted: list[str] = field(default_factory=list)
    tickets_while_muted: list[str] = field(default_factory=list)
    page_after_reload: float | None = None
    resolved_after_open: bool = False
    late_ticket_after: float | None = None
    late_resolved: bool = False
    late_age: float | None = None


def with_interval(config: dict[str, Any], name: str, intervals: list[dict[str, Any]]) -> dict[str, Any]:
    """`config` with the time interval `name` redefined."""
    out = copy.deepcopy(config)
    (entry,) = [t for t in out["time_intervals"] if t["name"] == name]
    entry["time_intervals"] = intervals
    return out


class Feed(ProcessStack):
    """The processes of one run and the few actions it needs."""

    def __init__(self, line: VersionLine, workdir: Path, receiver: WebhookReceiver) -> None:
        super().__init__()
        self.line, self.workdir, self.receiver = line, workdir, receiver

    async def start(self) -> None:
        self.sim = await self._keep(start_simulator(self.workdir / "simulator", market_data_rate=40.0))
        monitor = await self._keep(start_monitor(self.workdir / "monitor", self.sim.base_url,
                                                 "--silence-floor-seconds", "2", "--silence-multiple", "1"))
        base = yaml.safe_load((ALERTS_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
        self.am_config = alertmanager_test_config(base, self.receiver, ROOT_TIMINGS, ROUTE_TIMINGS)
        closed = with_interval(self.am_config, "us-equities-closed", ALWAYS)
        self.alertmanager = await self._keep(
            start_alertmanager(self.line, self.workdir / "alertmanager", closed))
        jobs = [scrape_job("gateway-monitor", monitor), scrape_job("gateway", self.sim)]
        (self.workdir / "rules").mkdir()
        rules = render_test_rules(self.workdir / "rules")
        self.prometheus = await self._keep(start_prometheus(
            self.line, self.workdir / "prometheus", prometheus_config(jobs, rules, self.alertmanager.port)))
        assert await self.until("sum(gateway_monitor_instruments) == 4 and sum(up) == 2", 30), "not ready"

    async def until(self, expr: str, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await self.query(expr):
                return True
            await asyncio.sleep(0.5)
        return False

    async def market(self, **state: Any) -> None:
        await post(f"{self.sim.base_url}/_sim/market", state)

    async def reload_alertmanager(self, config: dict[str, Any]) -> None:
        (self.alertmanager.workdir / "alertmanager.yml").write_text(yaml.safe_dump(config, sort_keys=False))
        async with aiohttp.ClientSession() as session, \
                session.post(f"{self.alertmanager.base_url}/-/reload") as resp:
            assert resp.status == 200, await resp.text()

    def firing(self, path: str, alertname: str, since: float) -> bool:
        return any(n.path == path and n.received_monotonic >= since and alertname in firing_names(n)
                   for n in self.receiver.notifications)


async def run(feed: Feed) -> Observed:
    seen = Observed()
    # A closed market, while the market-hours interval covers every moment.
    closed_at = time.monotonic()
    await feed.market(closed=True)
    seen.frozen_firing_while_closed = await feed.until(
        'ALERTS{alertname="GatewayFeedFrozen", alertstate="firing"}', FIRE_TIMEOUT)
    await asyncio.sleep(MUTED_WAIT)
    seen.pages_while_muted = sorted({a for n in feed.receiver.notifications if n.path == "/pager"
                                     and n.received_monotonic >= closed_at for a in firing_names(n)})
    seen.tickets_while_muted = sorted({a for n in feed.receiver.notifications if n.path == "/ticket"
                                       and n.received_monotonic >= closed_at for a in firing_names(n)})
    # The same firing alert, once the interval covers no moment: it pages.
    reloaded = time.monotonic()
    await feed.reload_alertmanager(with_interval(feed.am_config, "us-equities-closed", NEVER))
    try:
        await feed.receiver.wait_for(lambda n: feed.firing("/pager", "GatewayFeedFrozen", reloaded),
                                     FIRE_TIMEOUT)
        seen.page_after_reload = time.monotonic() - reloaded
    except AssertionError:
        pass
    await feed.market(closed=False)
    seen.resolved_after_open = await feed.until(
        'absent(ALERTS{alertname=~"GatewayFeedFrozen|GatewayInstrumentSilent"})', FIRE_TIMEOUT)
    # Quotes 5 s late: a ticket (the market is open: nothing mutes it).
    late_at = time.monotonic()
    await feed.market(late_seconds=5.0)
    try:
        await feed.receiver.wait_for(lambda n: feed.firing("/ticket", "GatewayQuotesLate", late_at), 60.0)
        seen.late_ticket_after = time.monotonic() - late_at
    except AssertionError:
        pass
    ages = await feed.query(
        "histogram_quantile(0.5, sum by (le) (rate(gateway_monitor_quote_age_seconds_bucket[10s])))")
    seen.late_age = float(ages[0]["value"][1]) if ages else None
    await feed.market(late_seconds=0.0)
    seen.late_resolved = await feed.until('absent(ALERTS{alertname="GatewayQuotesLate"})', FIRE_TIMEOUT)
    return seen


async def run_line(line: VersionLine, workdir: Path) -> Observed | BaseException:
    receiver = WebhookReceiver()
    await receiver.start()
    feed = Feed(line, workdir, receiver)
    try:
        await feed.start()
        return await run(feed)
    except (Exception, pytest.fail.Exception) as exc:
        return exc
    finally:
        await feed.stop()
        await receiver.close()


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Observed | BaseException]:
    """Both version lines at the same time (they wait most of the time)."""

    async def both() -> dict[str, Observed | BaseException]:
        names = list(LINES)
        results = await asyncio.gather(*(run_line(LINES[name], tmp_path_factory.mktemp(f"feed-paging-{name}"))
                                         for name in names))
        return dict(zip(names, results, strict=True))

    return asyncio.run(both())


@pytest.fixture(scope="module", params=list(LINES))
def observed(request: pytest.FixtureRequest, runs: dict[str, Observed | BaseException]) -> Observed:
    result = runs[request.param]
    if isinstance(result, BaseException):
        raise result
    return result


def test_a_closed_market_freezes_the_feed_in_prometheus(observed: Observed) -> None:
    assert observed.frozen_firing_while_closed


def test_the_market_hours_interval_mutes_every_feed_alert(observed: Observed) -> None:
    assert observed.pages_while_muted == [] and observed.tickets_while_muted == []


def test_the_same_alert_pages_outside_the_interval_and_resolves_at_the_open(observed: Observed) -> None:
    assert observed.page_after_reload is not None and observed.resolved_after_open


def test_late_quotes_open_a_ticket_and_resolve(observed: Observed) -> None:
    assert observed.late_ticket_after is not None, "no GatewayQuotesLate ticket"
    assert observed.late_age is not None and 3.0 < observed.late_age < 10.0
    assert observed.late_resolved
