"""End to end, with real processes: simulated gateway -> monitor -> Prometheus -> Alertmanager -> webhook.

Everything listens on 127.0.0.1: `gateway-monitor simulate` (the simulated gateway), the monitor
observing it, Prometheus scraping both every second (job `gateway-monitor` and job `gateway`,
with the `namespace`/`pod` labels of the Kubernetes scrape config: both belong to one pod),
Alertmanager (clustering off) and a webhook receiver standing in for pager, ticket queue and
dead man's switch. The rules are alerts/src rendered by alerts/generate.py with the thresholds
of alerts/thresholds.yaml scaled from minutes to seconds (TEST_THRESHOLDS); the Alertmanager
configuration is alerts/alertmanager.yml with the webhook URLs pointed at the receiver and the
timings shortened in production's proportions (warnings wait longer than pages).

It runs on both version lines of processes.LINES, the current one (Prometheus 3.7.3,
Alertmanager 0.29.0: Prometheus 3 made range selectors left-open, which the rules' first-occurrence
terms depend on) and the old one (Debian's Prometheus 2.42, Alertmanager 0.25), with the same
scenarios: one pipeline per line, both at the same time (they wait most of the time), and every
test once per line.

One setup per line serves the whole module, the phases run one after the other (about two minutes):

1. healthy: market data only, for HEALTHY_SECONDS: only the Watchdog may be notified;
2. paging: POSITION_UNPROTECTED, LIQUIDATION, BROKER_CONNECTION_FAILED and an OCO double exit
   injected STAGGER apart; each must page once within PAGE_TIMEOUT, and nothing more for that
   alert within ONCE_WINDOW; then `unprotected_fill` (a counter of the gateway's own /metrics
   only), after the socket's GatewayPositionUnprotected has resolved: Alertmanager groups by
   alertname and pod, so while the first one fired both would be in the fill's page and the page
   would not show that the gateway's counter alone pages. (The group outlives the resolution:
   the fill's alert is sent at the group's next group_interval tick, not after group_wait.)
3. dashboards: every panel query of deploy/grafana/gateway-monitor.json and gateway-fleet.json
   against Prometheus, while a symbol is stale and an instrument silent (after two silences that
   ended, for the silence histogram); the fleet queries read the recording rules of fleet.yml;
4. quiet: wait until no alert but the Watchdog is left, so that the last phase starts clean;
5. kill: SIGKILL the simulator; one page (GatewayMonitorCannotSeeGateway), every warning of the
   pod inhibited.

Sharing one setup is reliable because each paging alert has its own Alertmanager group (the only
alert that occurs twice is separated in time, see 2.), and it keeps the run well under the
four minutes a setup per scenario would cost. The fixture records; each test checks one behaviour.
Latencies (injection -> webhook) are printed by test_latency_report (`pytest -s`) and written to
latency.json in the line's temporary directory (e2e-paging-<line>/), and for both lines to the
file named by $PAGING_FIGURES when it is set.
"""

from __future__ import annotations

import asyncio
import functools
import json
import math
import os
import re
import sys
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_support import ALERTS_DIR, REPO_ROOT, RULES_DIR, run
from processes import (
    HOST,
    LINES,
    ManagedProcess,
    Notification,
    ProcessStack,
    VersionLine,
    WebhookReceiver,
    alertmanager_test_config,
    get_json,
    post,
    prometheus_config,
    start_alertmanager,
    start_monitor,
    start_prometheus,
    start_simulator,
)

from monitor.simulator import frames

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.usefixtures("no_leftover_daemons")]

POD = {"namespace": "trading-gateway", "pod": "gateway-0"}
BROKER = "alpaca-paper"
# alerts/thresholds.yaml in seconds instead of minutes, keeping production's order: the monitor
# is blind (critical) no later than /readyz fails (warning), windows outlast the observation.
TEST_THRESHOLDS = {
    "critical_event_window": "20s",
    "monitor_blind_for": "5s",
    "monitor_down_for": "8s",
    "gateway_target_down_for": "10s",
    "broker_disconnected_for": "10s",
    "symbols_stale_for": "10s",
    "rate_limit_window": "20s",
    "readyz_failing_for": "5s",
    "degraded_for": "10s",
    "no_frames_for": "30s",
    "invalid_frames_window": "20s",
    "slow_consumer_window": "20s",
    "quote_age_window": "20s",
    "quote_age_recent_window": "10s",
    "fleet_rollup_interval": "20s",
    "broker_wide_keep_firing_for": "10s",
}
ROOT_TIMINGS = {"group_wait": "3s", "group_interval": "5s", "repeat_interval": "1h"}
ROUTE_TIMINGS = {
    "pager": {"group_wait": "3s", "group_interval": "5s", "repeat_interval": "1h"},
    "ticket": {"group_wait": "6s", "group_interval": "10s", "repeat_interval": "1h"},
    "watchdog": {"group_wait": "0s", "group_interval": "5s", "repeat_interval": "10s"},
}
LONGEST_GROUP_INTERVAL = 10.0
HEALTHY_SECONDS = 25.0
PAGE_TIMEOUT = 25.0  # injection -> page; scrape 1s + evaluation 1s + group_wait 3s + slack
ONCE_WINDOW = 12.0  # after the first page: two pager group_intervals, an update would show
RESOLVE_TIMEOUT = 45.0
QUIET_TIMEOUT = 60.0
KILL_WINDOW = 25.0  # GatewayMetricsTargetDown (10s) fires and the ticket group_wait (6s) passes
LATENCY_BOUND = 12.0
# Between the injections of the paging phase: not a multiple of the 1s scrape interval, so that
# the latencies sample different scrape/evaluation phases.
STAGGER = 1.3
KILLED = "simulator SIGKILLed (monitor blind)"
# The one instrument that may fall silent in this run, after SILENCE_SECONDS without a tick (the
# others keep the 60 s default, which no phase reaches): the dashboard phase mutes it.
SILENT = "MSFT"
SILENCE_SECONDS = 3
SILENCE_TIMEOUT = 20.0
# Dashboard queries that are empty in this run by design, and why.
EMPTY_BY_DESIGN = {
    ("gateway-fleet", "Fleet alerts firing now", "A"): (
        "a broker-wide alert needs fleet_min_gateways (2) gateways hit on one broker; the run has one"
    ),
}


@dataclass
class Incident:
    """One injected event and the pages it caused."""

    name: str
    alertname: str
    injected_monotonic: float = 0.0
    injected_wall: float = 0.0
    pages: list[Notification] = field(default_factory=list)  # firing, within ONCE_WINDOW

    def start(self) -> None:
        """Record the injection time (just before the first request)."""
        self.injected_monotonic, self.injected_wall = time.monotonic(), time.time()

    @property
    def latency(self) -> float | None:
        """Seconds from injection to the first page, None without a page."""
        return self.pages[0].received_monotonic - self.injected_monotonic if self.pages else None


@dataclass
class Report:
    """What the run observed; the tests assert on it."""

    line: VersionLine
    workdir: Path
    notifications: list[Notification]
    rule_health: dict[str, str] = field(default_factory=dict)
    healthy_end: float = 0.0
    healthy_alerts: list[dict[str, Any]] = field(default_factory=list)
    incidents: dict[str, Incident] = field(default_factory=dict)
    resolved_before_fill: bool = False
    dashboard: list[dict[str, Any]] = field(default_factory=list)
    quiet: bool = False
    killed_at: float = 0.0
    kill: Incident = field(default_factory=lambda: Incident(KILLED, "GatewayMonitorCannotSeeGateway"))
    alertmanager_after_kill: list[dict[str, Any]] = field(default_factory=list)

    def after(self, start: float, end: float = math.inf) -> list[Notification]:
        """Notifications received in [start, end) (monotonic seconds)."""
        return [n for n in self.notifications if start <= n.received_monotonic < end]


def firing_alerts(note: Notification) -> list[dict[str, Any]]:
    """The alerts of a notification that are firing (a group update also carries resolved ones)."""
    return [a for a in note.payload.get("alerts", []) if a.get("status") == "firing"]


def firing_names(note: Notification) -> set[str]:
    """alertname of every firing alert in a notification."""
    return {a["labels"]["alertname"] for a in firing_alerts(note)}


def is_page(alertname: str, since: float) -> Callable[[Notification], bool]:
    """Predicate: a pager notification, received after `since`, with `alertname` firing."""
    return lambda n: n.path == "/pager" and n.received_monotonic >= since and alertname in firing_names(n)


def new_pages(notes: list[Notification], path: str = "/pager") -> Counter[str]:
    """Per alertname, the notifications that carried an alert not seen firing before.

    An alert is (fingerprint, startsAt): a re-fired alert counts again. Updates of a group
    (an alert of it resolved) carry nothing new and do not count.
    """
    seen: set[tuple[str, str]] = set()
    pages: Counter[str] = Counter()
    for note in sorted((n for n in notes if n.path == path), key=lambda n: n.received_monotonic):
        fresh = {
            a["labels"]["alertname"]
            for a in firing_alerts(note)
            if (a["fingerprint"], a["startsAt"]) not in seen
        }
        seen |= {(a["fingerprint"], a["startsAt"]) for a in firing_alerts(note)}
        pages.update(fresh)
    return pages


# --- setup ---------------------------------------------------------------------------------------


def render_test_rules(workdir: Path) -> list[Path]:
    """Render alerts/src with TEST_THRESHOLDS (all durations of thresholds.yaml) into workdir."""
    production = yaml.safe_load((ALERTS_DIR / "thresholds.yaml").read_text(encoding="utf-8"))
    durations = {k for k, v in production.items() if re.fullmatch(r"(?:\d+(?:ms|s|m|h|d|w|y))+", str(v))}
    assert durations == set(TEST_THRESHOLDS), (
        f"TEST_THRESHOLDS must scale every duration of thresholds.yaml: missing "
        f"{sorted(durations - set(TEST_THRESHOLDS))}, unknown {sorted(set(TEST_THRESHOLDS) - durations)}"
    )
    thresholds = workdir / "thresholds.yaml"
    thresholds.write_text(yaml.safe_dump({**production, **TEST_THRESHOLDS}), encoding="utf-8")
    out = workdir / "rules"
    generate = [
        sys.executable,
        str(ALERTS_DIR / "generate.py"),
        "--thresholds",
        str(thresholds),
        "--out",
        str(out),
    ]
    result = run(generate)
    assert result.returncode == 0, result.stdout + result.stderr
    rendered = sorted(out.glob("*.yml"))
    assert [p.name for p in rendered] == sorted(p.name for p in RULES_DIR.glob("*.yml"))
    return rendered


def scrape_job(name: str, proc: ManagedProcess) -> dict[str, Any]:
    """A static scrape job with the labels the Kubernetes scrape config adds."""
    return {"job_name": name, "static_configs": [{"targets": [f"{HOST}:{proc.port}"], "labels": POD}]}


class Pipeline(ProcessStack):
    """The running processes and the receiver, with the few actions the phases need."""

    def __init__(self, line: VersionLine, workdir: Path, receiver: WebhookReceiver) -> None:
        super().__init__()
        self.line = line
        self.workdir = workdir
        self.receiver = receiver
        self.sim: ManagedProcess
        self.alertmanager: ManagedProcess

    async def start(self, rules: list[Path]) -> None:
        """Start simulator, monitor, Alertmanager and Prometheus; wait until both targets are up."""
        self.sim = await self._keep(start_simulator(self.workdir / "simulator"))
        silent = json.dumps([{"broker": BROKER, "instrument": SILENT, "threshold_seconds": SILENCE_SECONDS}])
        monitor = await self._keep(
            start_monitor(self.workdir / "monitor", self.sim.base_url, "--silence-overrides", silent)
        )
        base = yaml.safe_load((ALERTS_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
        config = alertmanager_test_config(base, self.receiver, ROOT_TIMINGS, ROUTE_TIMINGS)
        self.alertmanager = await self._keep(
            start_alertmanager(self.line, self.workdir / "alertmanager", config)
        )
        jobs = [scrape_job("gateway-monitor", monitor), scrape_job("gateway", self.sim)]
        prom_config = prometheus_config(jobs, rules, self.alertmanager.port)
        self.prometheus = await self._keep(
            start_prometheus(self.line, self.workdir / "prometheus", prom_config)
        )
        up = "sum(up) == 2 and sum(gateway_monitor_ws_connected) == 1"
        if not await self.until(lambda: self.query(up), "targets"):
            pytest.fail(
                f"Prometheus never saw both targets up and the monitor connected ({up})", pytrace=False
            )

    async def until(self, check: Callable[[], Any], what: str, timeout: float = 30.0) -> bool:
        """Await `check()` until it returns something truthy; False after `timeout`."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if await check():
                return True
            await asyncio.sleep(0.5)
        return False

    async def sim_post(self, path: str, body: Any = None) -> Any:
        """POST to the simulator's control API (/_sim/...)."""
        return await post(f"{self.sim.base_url}/_sim/{path}", body)

    async def frame(self, frame: dict[str, object]) -> None:
        """Have the simulated gateway send `frame` to its clients."""
        await self.sim_post("frame", frame)

    async def metric(self, name: str, labels: dict[str, str] | None = None, value: float = 1) -> None:
        """Increment one of the gateway's own metrics."""
        await self.sim_post("metric", {"name": name, "labels": labels, "value": value})

    async def scenario(self, name: str, pause: float = 0.0) -> None:
        """Run a simulator scenario to completion."""
        await self.sim_post(f"scenario/{name}?pause={pause}")


# --- phases --------------------------------------------------------------------------------------


async def healthy_phase(pipe: Pipeline, report: Report) -> None:
    """Market data only: wait for the first Watchdog, then HEALTHY_SECONDS more."""
    await pipe.receiver.wait_for(lambda n: n.path == "/watchdog", 30)
    await asyncio.sleep(HEALTHY_SECONDS)
    report.healthy_alerts = await pipe.query('ALERTS{alertname!="Watchdog"}')
    report.healthy_end = time.monotonic()


async def page(pipe: Pipeline, incident: Incident, inject: Callable[[], Any]) -> Incident:
    """Inject, wait for the page, then collect every firing page of the alert in ONCE_WINDOW."""
    incident.start()
    await inject()
    try:
        first = await pipe.receiver.wait_for(
            is_page(incident.alertname, incident.injected_monotonic), PAGE_TIMEOUT
        )
    except AssertionError:
        return incident
    await asyncio.sleep(max(0.0, first.received_monotonic + ONCE_WINDOW - time.monotonic()))
    end = first.received_monotonic + ONCE_WINDOW
    incident.pages = [
        n for n in pipe.receiver.notifications
        if is_page(incident.alertname, incident.injected_monotonic)(n) and n.received_monotonic <= end
    ]  # fmt: skip
    return incident


async def broker_connection_failed(pipe: Pipeline, incident: Incident) -> None:
    """The broker_give_up scenario without its recovery: the broker stays failed for a while."""
    await pipe.frame(
        frames.connection("BROKER_DISCONNECTED", broker=BROKER, error="connection reset by peer")
    )
    await pipe.sim_post("broker", {"platform": BROKER, "connected": False})
    await pipe.metric("gateway_broker_disconnections_total", {"platform": BROKER})
    await pipe.metric("gateway_broker_reconnect_attempts_total", {"platform": BROKER})
    await asyncio.sleep(1.0)
    incident.start()
    await pipe.metric("gateway_broker_reconnect_failures_total", {"platform": BROKER})
    await pipe.frame(
        frames.connection(
            "BROKER_CONNECTION_FAILED", broker=BROKER, error="max reconnect attempts (10) exceeded"
        )
    )


async def paging_phase(pipe: Pipeline, report: Report) -> None:
    """Four critical events STAGGER apart, then unprotected_fill once the first page resolved."""
    incidents = [
        (Incident("POSITION_UNPROTECTED frame", "GatewayPositionUnprotected"), "position_unprotected"),
        (Incident("LIQUIDATION frame", "GatewayLiquidation"), "liquidation"),
        (Incident("OCO double exit (frame + counter)", "GatewayOcoDoubleExit"), "oco_double_exit_frame"),
    ]
    tasks = []
    for i, (incident, scenario) in enumerate(incidents):
        report.incidents[incident.name] = incident
        tasks.append(_after(i * STAGGER, page(pipe, incident, functools.partial(pipe.scenario, scenario))))
    broker = Incident("BROKER_CONNECTION_FAILED frame (+ counter)", "GatewayBrokerConnectionFailed")
    report.incidents[broker.name] = broker
    # page() records the start; broker_connection_failed() records it again after its prelude.
    inject_broker = page(pipe, broker, lambda: broker_connection_failed(pipe, broker))
    tasks.append(_after(len(incidents) * STAGGER, inject_broker))
    await asyncio.gather(*tasks)
    await pipe.sim_post("broker", {"platform": BROKER, "connected": True})
    await pipe.frame(frames.connection("CONNECTED", broker=BROKER))
    await dashboard_data(pipe)
    first = report.incidents["POSITION_UNPROTECTED frame"]
    report.resolved_before_fill = await _resolved(
        pipe, "GatewayPositionUnprotected", first.injected_monotonic
    )
    fill = Incident("unprotected_fill (gateway counter only)", "GatewayPositionUnprotected")
    report.incidents[fill.name] = fill
    await page(pipe, fill, lambda: pipe.scenario("unprotected_fill"))


async def _after(delay: float, action: Any) -> Any:
    await asyncio.sleep(delay)
    return await action


async def _resolved(pipe: Pipeline, alertname: str, since: float) -> bool:
    """Wait for a pager notification that resolves `alertname` and has nothing of it firing."""

    def resolved(n: Notification) -> bool:
        return (
            n.path == "/pager"
            and n.received_monotonic >= since
            and any(
                a["labels"]["alertname"] == alertname and a["status"] == "resolved"
                for a in n.payload["alerts"]
            )
            and alertname not in firing_names(n)
        )

    try:
        await pipe.receiver.wait_for(resolved, RESOLVE_TIMEOUT)
    except AssertionError:
        return False
    return True


async def dashboard_data(pipe: Pipeline) -> None:
    """Events that no alert needs but dashboard panels show (histograms observed twice, so that
    rate() sees an increase; counters no scenario moves are incremented directly)."""
    for _ in range(2):
        await pipe.scenario("orders")
        await pipe.scenario("broker_outage", pause=0.3)
        await asyncio.sleep(2.5)  # a scrape between the two observations
    await pipe.scenario("rate_limit")
    await pipe.scenario("error_codes")
    await pipe.metric("gateway_circuit_breaker_resets_total")
    await pipe.metric("gateway_ws_slow_consumer_disconnects", value=3)


async def silence(pipe: Pipeline, muted: bool) -> bool:
    """Mute (or unmute) SILENT; wait until Prometheus shows it silent (or no longer)."""
    await pipe.sim_post("market", {"muted": [SILENT] if muted else []})
    query = f'gateway_monitor_instrument_silent_since_timestamp_seconds{{symbol="{SILENT}"}}'
    return await pipe.until(
        lambda: pipe.query(query) if muted else _none(pipe.query(query)), "silence", SILENCE_TIMEOUT
    )


async def dashboard_phase(pipe: Pipeline, report: Report) -> None:
    """Run every panel query of both dashboards while a symbol is stale and an instrument silent
    (their tables need one), after two silences that ended (the silence histogram's rate needs two
    observations)."""
    # /health lists it too, as the gateway's does: else the monitor reconciles it away after
    # reconcile_grace_seconds, which the silences below can outlast.
    await pipe.sim_post("broker", {"platform": BROKER, "stale_instruments": ["DASH"]})
    await pipe.frame(frames.data_staleness("STALE", ["DASH"], stale_since=frames.iso(), broker=BROKER))
    for _ in range(2):
        assert await silence(pipe, muted=True), f"{SILENT} never went silent"
        assert await silence(pipe, muted=False), f"{SILENT} stayed silent"
    assert await silence(pipe, muted=True), f"{SILENT} never went silent"
    for ready in ("gateway_monitor_symbol_stale_since_timestamp_seconds",
                  "namespace_pod:gateway_monitor_silent_instruments:sum > 0"):
        assert await pipe.until(functools.partial(pipe.query, ready), ready), f"never true: {ready}"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, str(REPO_ROOT / "deploy" / "grafana" / "dashboard.py"), "--queries",
        stdout=asyncio.subprocess.PIPE,
    )  # fmt: skip
    stdout, _ = await proc.communicate()
    assert proc.returncode == 0
    for query in json.loads(stdout):
        result = await pipe.query(query["resolved"])
        values = [float(sample["value"][1]) for sample in result]
        report.dashboard.append({**query, "series": len(result), "values": values})
    await pipe.sim_post("broker", {"platform": BROKER, "stale_instruments": []})
    await pipe.frame(frames.data_staleness("FRESH", ["DASH"], broker=BROKER))
    await silence(pipe, muted=False)


async def quiet_phase(pipe: Pipeline, report: Report) -> None:
    """Wait until only the Watchdog is left, then for Alertmanager to send the resolutions."""
    report.quiet = await pipe.until(
        lambda: _none(pipe.query('ALERTS{alertname!="Watchdog"}')), "quiet", QUIET_TIMEOUT
    )
    await asyncio.sleep(LONGEST_GROUP_INTERVAL + 1)


async def _none(results: Any) -> bool:
    return not await results


async def kill_phase(pipe: Pipeline, report: Report) -> None:
    """SIGKILL the simulator and watch for KILL_WINDOW seconds."""

    async def kill() -> None:
        pipe.sim.kill()

    await page(pipe, report.kill, kill)
    report.killed_at = report.kill.injected_monotonic
    await asyncio.sleep(max(0.0, report.killed_at + KILL_WINDOW - time.monotonic()))
    report.alertmanager_after_kill = await get_json(f"{pipe.alertmanager.base_url}/api/v2/alerts")


async def run_pipeline(line: VersionLine, workdir: Path, rules: list[Path]) -> Report:
    """Start everything, run the phases in order, stop everything; return what was seen."""
    receiver = WebhookReceiver()
    await receiver.start()
    pipe = Pipeline(line, workdir, receiver)
    report = Report(line, workdir, receiver.notifications)
    try:
        await pipe.start(rules)
        for phase in (healthy_phase, paging_phase, dashboard_phase, quiet_phase):
            await phase(pipe, report)
        # Now, after every group has evaluated (fleet_rollup_interval is 20 s): at start-up a
        # group not yet evaluated reads "unknown".
        groups = (await get_json(f"{pipe.prometheus.base_url}/api/v1/rules"))["data"]["groups"]
        report.rule_health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        await kill_phase(pipe, report)
    finally:
        await pipe.stop()
        await receiver.close()
        write_record(report)
    return report


def write_record(report: Report) -> None:
    """Keep every notification and dashboard result beside the process logs, for a failing run."""
    notes = [
        {"path": n.path, "received_monotonic": n.received_monotonic, "status": n.status, "payload": n.payload}
        for n in report.notifications
    ]
    (report.workdir / "notifications.json").write_text(json.dumps(notes, indent=2), encoding="utf-8")
    for name, data in (
        ("dashboard", report.dashboard),
        ("alertmanager-after-kill", report.alertmanager_after_kill),
    ):
        (report.workdir / f"{name}.json").write_text(json.dumps(data, indent=2), encoding="utf-8")


async def run_lines(workdirs: dict[str, Path], rules: list[Path]) -> dict[str, Report | BaseException]:
    """One pipeline per version line, concurrently; a line that fails keeps its exception."""

    async def outcome(name: str) -> Report | BaseException:
        try:
            return await run_pipeline(LINES[name], workdirs[name], rules)
        except (Exception, pytest.fail.Exception) as exc:
            return exc

    results = await asyncio.gather(*(outcome(name) for name in workdirs))
    return dict(zip(workdirs, results, strict=True))


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Report | BaseException]:
    """Run the whole pipeline once per version line for this module."""
    rules = render_test_rules(tmp_path_factory.mktemp("e2e-rules"))
    workdirs = {name: tmp_path_factory.mktemp(f"e2e-paging-{name}") for name in LINES}
    return asyncio.run(run_lines(workdirs, rules))


@pytest.fixture(scope="module", params=list(LINES))
def report(request: pytest.FixtureRequest, reports: dict[str, Report | BaseException]) -> Report:
    """What the pipeline of one version line observed."""
    result = reports[request.param]
    if isinstance(result, BaseException):
        raise result
    return result


# --- tests ---------------------------------------------------------------------------------------


def test_prometheus_loaded_every_repository_rule(report: Report) -> None:
    # Alerts and recording rules (the fleet dashboard reads the recordings of fleet.yml).
    production = {r.get("alert") or r["record"] for p in RULES_DIR.glob("*.yml")
                  for g in yaml.safe_load(p.read_text())["groups"] for r in g["rules"]}  # fmt: skip
    assert set(report.rule_health) == production
    assert set(report.rule_health.values()) == {"ok"}, report.rule_health


def test_healthy_run_pages_nothing_but_the_watchdog(report: Report) -> None:
    healthy = report.after(0, report.healthy_end)
    assert {(n.path, frozenset(n.alertnames)) for n in healthy} == {("/watchdog", frozenset({"Watchdog"}))}
    assert len(healthy) >= 2, "the watchdog repeats (repeat_interval 10s) while all is well"
    assert report.healthy_alerts == [], "nothing even pending after the healthy stretch"


PAGING = {
    "POSITION_UNPROTECTED frame": {("socket-event", None)},
    "LIQUIDATION frame": {("socket-event", None)},
    "OCO double exit (frame + counter)": {("socket-event", None), ("gateway-metrics", BROKER)},
    "BROKER_CONNECTION_FAILED frame (+ counter)": {("socket", BROKER), ("gateway-metrics", BROKER)},
    "unprotected_fill (gateway counter only)": {("gateway-metrics", BROKER)},
}


@pytest.mark.parametrize("name", PAGING)
def test_critical_event_pages_once(report: Report, name: str) -> None:
    incident = report.incidents[name]
    assert incident.pages, f"{name}: no page within {PAGE_TIMEOUT}s"
    assert len(incident.pages) == 1, [sorted(firing_names(n)) for n in incident.pages]
    alerts = firing_alerts(incident.pages[0])
    assert {a["labels"]["alertname"] for a in alerts} == {incident.alertname}
    # Every source of evidence is in the one page (not a second page when the other arrives).
    assert {(a["labels"]["source"], a["labels"].get("broker")) for a in alerts} == PAGING[name]
    for alert in alerts:
        assert alert["labels"]["severity"] == "critical"
        assert {k: alert["labels"][k] for k in POD} == POD
        assert alert["annotations"]["runbook_url"].endswith("#" + incident.alertname.lower())


def test_unprotected_fill_runs_after_the_first_alert_resolved(report: Report) -> None:
    assert report.resolved_before_fill, "GatewayPositionUnprotected never resolved: the fill joined its group"


def test_the_whole_run_is_not_a_storm(report: Report) -> None:
    assert new_pages(report.notifications) == {
        "GatewayPositionUnprotected": 2,
        "GatewayLiquidation": 1,
        "GatewayOcoDoubleExit": 1,
        "GatewayBrokerConnectionFailed": 1,
        "GatewayMonitorCannotSeeGateway": 1,
    }
    assert not [n for n in report.notifications if n.path == "/watchdog" and n.alertnames != {"Watchdog"}]


def test_killed_gateway_pages_once(report: Report) -> None:
    assert report.quiet, "alerts were still open before the simulator was killed"
    pages = [n for n in report.after(report.killed_at) if n.path == "/pager" and n.status == "firing"]
    assert [sorted(firing_names(n)) for n in pages] == [["GatewayMonitorCannotSeeGateway"]]
    (alert,) = firing_alerts(pages[0])
    assert alert["labels"]["job"] == "gateway-monitor" and alert["labels"]["pod"] == POD["pod"]


def test_killed_gateway_warnings_are_inhibited(report: Report) -> None:
    tickets = [n for n in report.after(report.killed_at) if n.path == "/ticket" and firing_alerts(n)]
    assert tickets == [], [sorted(firing_names(n)) for n in tickets]
    states = {a["labels"]["alertname"]: a["status"] for a in report.alertmanager_after_kill}
    # They did fire, and were muted by the critical of the same pod.
    for name in ("GatewayNotReady", "GatewayMetricsTargetDown"):
        assert states.get(name, {}).get("state") == "suppressed", (name, states)
        assert states[name]["inhibitedBy"], name


def test_every_dashboard_query_returns_data(report: Report) -> None:
    queries = Counter(q["dashboard"] for q in report.dashboard)
    assert queries["gateway-monitor"] >= 50 and queries["gateway-fleet"] >= 20, queries
    keys = {(q["dashboard"], q["panel"], q["refId"]) for q in report.dashboard}
    assert set(EMPTY_BY_DESIGN) <= keys, "EMPTY_BY_DESIGN names a query the dashboards no longer have"
    empty = [
        (q["dashboard"], q["panel"], q["refId"], q["resolved"])
        for q in report.dashboard
        if not q["series"] and (q["dashboard"], q["panel"], q["refId"]) not in EMPTY_BY_DESIGN
    ]
    assert not empty, empty
    nan = [
        (q["dashboard"], q["panel"], q["refId"])
        for q in report.dashboard
        if q["series"] and all(math.isnan(v) for v in q["values"])
    ]
    assert not nan, f"only NaN (a histogram without observations in the window?): {nan}"


def shown(report: Report, dashboard: str) -> dict[tuple[str, str], list[float]]:
    """(panel, refId) -> the values its query returned, for one dashboard."""
    return {(q["panel"], q["refId"]): q["values"] for q in report.dashboard if q["dashboard"] == dashboard}


def test_fleet_table_shows_the_gateway_as_it_is(report: Report) -> None:
    """The fleet table's row of the one gateway, from the recording rules: not blind, the muted
    instrument silent, and the critical events of the paging phase counted by the rollup group
    (evaluated every fleet_rollup_interval, 20 s here: the phase runs well after them)."""
    table = {
        ref: values
        for (panel, ref), values in shown(report, "gateway-fleet").items()
        if panel == "Every gateway"
    }
    blind, _age, _stale, silent, critical, brokers = (table[ref] for ref in "ABCDEF")
    assert blind == [0.0] and silent and silent[0] >= 1 and brokers, table
    # POSITION_UNPROTECTED, LIQUIDATION and OCO_DOUBLE_EXIT frames at least.
    assert critical and critical[0] >= 3, table


# Panels that apply increase() to a counter of the gateway's own /metrics. The gateway exports a
# series only from its first increment, so the series is born at 1 and increase() never counts
# that first event (the alert rules work around it with `${increased ...}`, see alerts/README.md).
FIRST_EVENT_PANELS = {
    ("Safety counters (gateway)", "A"): "gateway_critical_notifications_dropped_total",
    ("Safety counters (gateway)", "B"): "gateway_oco_double_exit_total",
    ("Safety counters (gateway)", "C"): "gateway_circuit_breaker_resets_total",
    ("Gateway broker link events (gateway /metrics)", "D"): "gateway_broker_reconnect_failures_total",
    ("Rate limit events", "B"): "gateway_rate_limit_events_total",
}


def test_dashboard_counts_the_first_gateway_event(report: Report) -> None:
    values = shown(report, "gateway-monitor")
    missed = {
        metric: values[key]
        for key, metric in FIRST_EVENT_PANELS.items()
        if not any(v > 0 for v in values[key])
    }
    assert not missed, f"panels show no increase although each series went 0 -> 1 in the window: {missed}"


def test_latency_report(report: Report) -> None:
    rows = [*report.incidents.values(), report.kill]
    table = [
        {
            "incident": i.name,
            "alertname": i.alertname,
            "injected_at": i.injected_wall,
            "webhook_at": i.pages[0].received_wall if i.pages else None,
            "latency_seconds": round(i.latency, 3) if i.latency is not None else None,
            "pages_in_window": len(i.pages),
        }
        for i in rows
    ]
    path = report.workdir / "latency.json"
    record = {"line": report.line.name, "versions": report.line.title, "incidents": table}
    path.write_text(json.dumps(record, indent=2), encoding="utf-8")
    if os.environ.get("PAGING_FIGURES"):  # one file for both lines, e.g. build/paging.json
        figures = Path(os.environ["PAGING_FIGURES"])
        both = json.loads(figures.read_text(encoding="utf-8")) if figures.exists() else {}
        figures.parent.mkdir(parents=True, exist_ok=True)
        figures.write_text(json.dumps({**both, report.line.name: record}, indent=2), encoding="utf-8")
    print(f"\n{report.line.title}: frame/metric injected -> webhook received ({path}):")
    print(f"  {'incident':45} {'alert':32} {'latency':>8} pages")
    for row in table:
        latency = f"{row['latency_seconds']:.2f}s" if row["latency_seconds"] is not None else "none"
        print(f"  {row['incident']:45} {row['alertname']:32} {latency:>8} {row['pages_in_window']}")
    for incident in report.incidents.values():
        assert incident.latency is not None and incident.latency < LATENCY_BOUND, incident.name
    blind_for = float(TEST_THRESHOLDS["monitor_blind_for"].rstrip("s"))
    assert report.kill.latency is not None and report.kill.latency < blind_for + LATENCY_BOUND
