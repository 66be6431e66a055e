"""The alerting pipeline of tests/alerts/test_e2e_paging.py around the real gateway.

Set up as that test does it (and with its helpers): Prometheus (of each version line of
processes.LINES) scrapes the real gateway's /metrics (job `gateway`) and a `gateway-monitor`
process observing it (job `gateway-monitor`), both every second with the same `namespace`/`pod`
labels; the rules are alerts/src rendered with the scaled TEST_THRESHOLDS; Alertmanager runs
alerts/alertmanager.yml with the webhooks pointed at a receiver and production's timings shortened
in proportion. A raw client beside the monitor tells when each event really happened.

`Setup` changes that for one run: monitor flags (e.g. a short silence floor), the scrape and
evaluation interval, the committed production rules and Alertmanager's shipped timings (the
default-settings run of test_feed_default_settings.py), the markets-closed mutes removed.
"""

from __future__ import annotations

import asyncio
import copy
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_support import RULES_DIR
from gateway_support import API_KEY, RawClient, RealGateway, gateway_binary
from harness.durations import seconds
from processes import (
    LINES,
    ManagedProcess,
    Notification,
    VersionLine,
    WebhookReceiver,
    alertmanager_test_config,
    prometheus_config,
    start_alertmanager,
    start_monitor,
    start_prometheus,
)
from test_e2e_paging import (
    ALERTS_DIR,
    RESOLVE_TIMEOUT,
    ROOT_TIMINGS,
    ROUTE_TIMINGS,
    Pipeline,
    firing_names,
    is_page,
    render_test_rules,
    scrape_job,
)

ONCE_WINDOW = 12.0  # after a page: two pager group_intervals, a repeated page would show
LATENCY_BOUND = 15.0  # event -> webhook: scrape 1 s + evaluation 1 s + group_wait 3 s + slack


@dataclass(frozen=True)
class Setup:
    """How one pipeline run is set up; the defaults are the scaled CI pipeline described above."""

    monitor_flags: tuple[str, ...] = ()
    """Appended to start_monitor's (later flags win)."""
    interval: str = "1s"
    """Prometheus' scrape and evaluation interval."""
    production_rules: bool = False
    """alerts/rules/*.yml as committed, instead of alerts/src rendered with TEST_THRESHOLDS."""
    shipped_timings: bool = False
    """alerts/alertmanager.yml's own group_wait/group_interval/repeat_interval."""
    market_hours: bool = True
    """Keep the mute_time_intervals (False: feed alerts are never muted by the clock)."""
    watchdog_timeout: float = 30.0


def without_market_hours(config: dict[str, Any]) -> dict[str, Any]:
    """`config` without its mute_time_intervals: alerts/alertmanager.yml mutes saxo-*'s feed alerts
    on FX weekends, and a test must not depend on the day it runs."""
    config = copy.deepcopy(config)

    def strip(route: dict[str, Any]) -> None:
        route.pop("mute_time_intervals", None)
        for child in route.get("routes", []):
            strip(child)

    strip(config["route"])
    return config


def shipped_config(base: dict[str, Any], receiver: WebhookReceiver) -> dict[str, Any]:
    """alerts/alertmanager.yml as shipped (timings included), its webhooks sent to `receiver`."""
    config = copy.deepcopy(base)
    for rcv in config.get("receivers", []):
        for hook in rcv.get("webhook_configs", []):
            hook["url"] = receiver.url(rcv["name"])
    return config


@dataclass
class Run:
    """What one pipeline run observed."""

    line: str  # the Prometheus/Alertmanager version line (processes.LINES)
    workdir: Path
    notifications: list[Notification]
    up_jobs: list[str] = field(default_factory=list)
    healthy_end: float = 0.0
    healthy_alerts: list[dict[str, Any]] = field(default_factory=list)
    events: dict[str, float] = field(default_factory=dict)  # name -> monotonic time of the event
    pages: dict[str, list[Notification]] = field(default_factory=dict)
    resolved: Notification | None = None
    frames: list[dict[str, Any]] = field(default_factory=list)
    gateway_counters: dict[str, float | None] = field(default_factory=dict)
    firing_after_oco: dict[str, set[tuple[str, str]]] = field(default_factory=dict)
    """alertname -> {(source, broker)} firing in Prometheus once the OCO page was sent."""
    data: dict[str, Any] = field(default_factory=dict)
    """Whatever else a body records."""

    def latency(self, event: str, note: Notification | None) -> float | None:
        """Seconds from the event to `note`."""
        return None if note is None else round(note.received_monotonic - self.events[event], 3)


class RealPipeline(Pipeline):
    """tests/alerts' pipeline with the real gateway in place of the simulator."""

    monitor: ManagedProcess

    async def start_real(self, gateway: RealGateway, rules: list[Path], setup: Setup = Setup()) -> None:
        """Monitor process, Alertmanager and Prometheus around a started real gateway."""
        key_file = self.workdir / "api-key"
        key_file.write_text(API_KEY)
        self.monitor = monitor = await self._keep(start_monitor(
            self.workdir / "monitor", gateway.url, "--api-key-file", str(key_file), *setup.monitor_flags))
        base = yaml.safe_load((ALERTS_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
        if setup.shipped_timings:
            config = shipped_config(base, self.receiver)
        else:
            config = alertmanager_test_config(base, self.receiver, ROOT_TIMINGS, ROUTE_TIMINGS)
        if not setup.market_hours:
            config = without_market_hours(config)
        self.alertmanager = await self._keep(
            start_alertmanager(self.line, self.workdir / "alertmanager", config))
        jobs = [scrape_job("gateway-monitor", monitor), scrape_job("gateway", gateway)]  # type: ignore[arg-type]  # duck: .port
        prom_config = prometheus_config(jobs, rules, self.alertmanager.port, interval=setup.interval)
        self.prometheus = await self._keep(
            start_prometheus(self.line, self.workdir / "prometheus", prom_config))
        up = "sum(up) == 2 and sum(gateway_monitor_ws_connected) == 1"
        settle = 30.0 + 3 * seconds(setup.interval)
        if not await self.until(lambda: self.query(up), "targets", timeout=settle):
            pytest.fail(f"Prometheus never saw both targets up and the monitor connected ({up})",
                        pytrace=False)

    async def jobs_up(self) -> list[str]:
        """Jobs whose target Prometheus scrapes successfully."""
        return sorted(r["metric"]["job"] for r in await self.query("up == 1"))

    async def first_page(self, alertname: str, since: float, timeout: float) -> list[Notification]:
        """Pages of `alertname` after `since`: the first within `timeout`, then all within ONCE_WINDOW."""
        try:
            first = await self.receiver.wait_for(is_page(alertname, since), timeout)
        except AssertionError:
            return []
        await asyncio.sleep(max(0.0, first.received_monotonic + ONCE_WINDOW - time.monotonic()))
        end = first.received_monotonic + ONCE_WINDOW
        return [n for n in self.receiver.notifications
                if is_page(alertname, since)(n) and n.received_monotonic <= end]

    async def resolution(self, alertname: str, since: float) -> Notification | None:
        """The first pager notification after `since` resolving `alertname`, nothing of it firing."""

        def resolves(n: Notification) -> bool:
            return (n.path == "/pager" and n.received_monotonic >= since
                    and any(a["labels"]["alertname"] == alertname and a["status"] == "resolved"
                            for a in n.payload["alerts"])
                    and alertname not in firing_names(n))

        try:
            return await self.receiver.wait_for(resolves, RESOLVE_TIMEOUT)
        except AssertionError:
            return None


async def pipeline_run(
    line: VersionLine, workdir: Path, env: dict[str, str], body: Callable[..., Any], setup: Setup = Setup()
) -> Run:
    """Start gateway (env), raw client and the pipeline; run `body(pipe, gateway, raw, run)`; stop all."""
    binary = gateway_binary()
    assert binary is not None
    receiver = WebhookReceiver()
    await receiver.start()
    run = Run(line.name, workdir, receiver.notifications)
    pipe = RealPipeline(line, workdir, receiver)
    gateway = RealGateway(binary, workdir / "gateway", env)
    raw: RawClient | None = None
    try:
        await gateway.start()
        raw = RawClient(gateway.url)
        await raw.connect()
        rules = sorted(RULES_DIR.glob("*.yml")) if setup.production_rules else render_test_rules(workdir)
        await pipe.start_real(gateway, rules, setup)
        run.up_jobs = await pipe.jobs_up()
        await receiver.wait_for(lambda n: n.path == "/watchdog", setup.watchdog_timeout)
        await body(pipe, gateway, raw, run)
    except Exception as err:  # say whether the gateway was still there, with its log
        raise AssertionError(f"{type(err).__name__}: {err}\n{gateway.process.describe()}") from err
    finally:
        if raw is not None:
            run.frames = [f.data for f in raw.frames if f.type != "quote"]
            await raw.close()
        await pipe.stop()
        await gateway.stop()
        await receiver.close()
        notes = [{"path": n.path, "received_monotonic": n.received_monotonic, "payload": n.payload}
                 for n in run.notifications]
        (workdir / "notifications.json").write_text(json.dumps(notes, indent=2), encoding="utf-8")
    return run


def latency_report(rows: list[tuple[Run, str, str, Notification | None]], path: Path) -> list[dict[str, Any]]:
    """(run, event, firing|resolved, notification) rows -> printed and written to `path` as JSON."""
    table = [{"event": event, "webhook": kind, "seconds_to_webhook": run.latency(event, note)}
             for run, event, kind, note in rows]
    path.write_text(json.dumps(table, indent=2), encoding="utf-8")
    print(f"\nevent -> webhook received ({path}):")
    for row in table:
        seconds = row["seconds_to_webhook"]
        shown = f"{seconds:.2f}s" if seconds is not None else "none"
        print(f"  {row['event']:45} {row['webhook']:9} {shown}")
    return table


def first(notes: list[Notification]) -> Notification | None:
    """The first of `notes`, None when there is none."""
    return notes[0] if notes else None


async def run_lines(
    start: Callable[[VersionLine, Path], Awaitable[Run]], workdirs: dict[str, Path]
) -> dict[str, Run | BaseException]:
    """`start(line, workdir)` for every version line, concurrently (as tests/alerts' e2e test runs
    them); a line that fails keeps its exception."""

    async def outcome(name: str) -> Run | BaseException:
        try:
            return await start(LINES[name], workdirs[name])
        except (Exception, pytest.fail.Exception) as exc:
            return exc

    results = await asyncio.gather(*(outcome(name) for name in workdirs))
    return dict(zip(workdirs, results, strict=True))


def run_of(runs: dict[str, Run | BaseException], line: str) -> Run:
    """The run of one line, or its exception raised."""
    result = runs[line]
    if isinstance(result, BaseException):
        raise result
    return result
