"""Paging end to end with the real gateway: gateway + monitor -> Prometheus -> Alertmanager -> webhook.

Set up as tests/alerts/test_e2e_paging.py does it (and with its helpers): Prometheus 2 scrapes the
real gateway's /metrics (job `gateway`) and a `gateway-monitor` process observing it (job
`gateway-monitor`), both every second with the same `namespace`/`pod` labels; the rules are
alerts/src rendered with the scaled TEST_THRESHOLDS; Alertmanager runs alerts/alertmanager.yml with
the webhooks pointed at a receiver and production's timings shortened in proportion.

Two runs, one per gateway mode, each recorded once by a module fixture:

- mock: a healthy stretch of HEALTHY_SECONDS (60 s: the scaled thresholds fire within 20 s, so
  a minute covers every `for:` and window three times over) must notify nothing but the Watchdog;
  then an OCO double exit made through the real REST API must page GatewayOcoDoubleExit. No frame
  arrives for it (v0.2.0 drops the router's notification), so the gateway's counter carries it;
- Saxo (fake_saxo.py): a broker give-up must page GatewayBrokerConnectionFailed, and restarting the
  gateway must resolve that page.

Times from each event (as a raw client saw it) to the webhook are printed by
test_paging_latency_report (`pytest -s`) and written to paging-latency.json in the run's directory.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml
from alerts_support import no_leftover_daemons  # noqa: F401 - importing a fixture registers it
from gateway_support import (
    API_KEY,
    FakeSaxo,
    RawClient,
    RealGateway,
    fake_saxo_script,
    gateway_binary,
    mock_env,
    saxo_env,
    wait_until,
)
from processes import (
    Notification,
    WebhookReceiver,
    alertmanager_test_config,
    prometheus_config,
    start_alertmanager,
    start_monitor,
    start_prometheus,
)
from test_e2e_paging import (
    ALERTS_DIR,
    PAGE_TIMEOUT,
    POD,
    RESOLVE_TIMEOUT,
    ROOT_TIMINGS,
    ROUTE_TIMINGS,
    Pipeline,
    firing_alerts,
    firing_names,
    is_page,
    new_pages,
    render_test_rules,
    scrape_job,
)

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300), pytest.mark.usefixtures("no_leftover_daemons")]

HEALTHY_SECONDS = 60.0
ONCE_WINDOW = 12.0  # after a page: two pager group_intervals, a repeated page would show
FILL_TIMEOUT = 5.0
GIVE_UP_TIMEOUT = 15.0
LATENCY_BOUND = 15.0  # event -> webhook: scrape 1 s + evaluation 1 s + group_wait 3 s + slack


@dataclass
class Run:
    """What one pipeline run observed."""

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

    def latency(self, event: str, note: Notification | None) -> float | None:
        """Seconds from the event to `note`."""
        return None if note is None else round(note.received_monotonic - self.events[event], 3)


class RealPipeline(Pipeline):
    """tests/alerts' pipeline with the real gateway in place of the simulator."""

    async def start_real(self, gateway: RealGateway, rules: list[Path]) -> None:
        """Monitor process, Alertmanager and Prometheus around a started real gateway."""
        key_file = self.workdir / "api-key"
        key_file.write_text(API_KEY)
        monitor = await self._keep(start_monitor(self.workdir / "monitor", gateway.url,
                                                 "--api-key-file", str(key_file)))
        base = yaml.safe_load((ALERTS_DIR / "alertmanager.yml").read_text(encoding="utf-8"))
        config = alertmanager_test_config(base, self.receiver, ROOT_TIMINGS, ROUTE_TIMINGS)
        self.alertmanager = await self._keep(start_alertmanager(self.workdir / "alertmanager", config))
        jobs = [scrape_job("gateway-monitor", monitor), scrape_job("gateway", gateway)]  # type: ignore[arg-type]  # duck: .port
        prom_config = prometheus_config(jobs, rules, self.alertmanager.port)
        self.prometheus = await self._keep(start_prometheus(self.workdir / "prometheus", prom_config))
        up = "sum(up) == 2 and sum(gateway_monitor_ws_connected) == 1"
        if not await self.until(lambda: self.query(up), "targets"):
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


async def pipeline_run(workdir: Path, env: dict[str, str], body: Callable[..., Any]) -> Run:
    """Start gateway (env), raw client and the pipeline; run `body(pipe, gateway, raw, run)`; stop all."""
    binary = gateway_binary()
    assert binary is not None
    receiver = WebhookReceiver()
    await receiver.start()
    run = Run(workdir, receiver.notifications)
    pipe = RealPipeline(workdir, receiver)
    gateway = RealGateway(binary, workdir / "gateway", env)
    raw: RawClient | None = None
    try:
        await gateway.start()
        raw = RawClient(gateway.url)
        await raw.connect()
        await pipe.start_real(gateway, render_test_rules(workdir))
        run.up_jobs = await pipe.jobs_up()
        await receiver.wait_for(lambda n: n.path == "/watchdog", 30)
        await body(pipe, gateway, raw, run)
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


async def mock_body(pipe: RealPipeline, gateway: RealGateway, raw: RawClient, run: Run) -> None:
    """Healthy stretch, then an OCO double exit through the REST API."""
    await asyncio.sleep(HEALTHY_SECONDS)
    run.healthy_alerts = await pipe.query('ALERTS{alertname!="Watchdog"}')
    run.healthy_end = time.monotonic()
    first = await gateway.post_order(side="BUY", oco_group_id="conformance-oco")
    await wait_until(lambda: _filled(raw, first["id"]), FILL_TIMEOUT, "the first leg's fill")
    second = await gateway.post_order(side="SELL", oco_group_id="conformance-oco")
    await wait_until(lambda: _filled(raw, second["id"]), FILL_TIMEOUT, "the second leg's fill")
    filled = _filled(raw, second["id"])
    assert filled is not None
    run.events["OCO double exit (second leg filled)"] = filled.received
    run.pages["GatewayOcoDoubleExit"] = await pipe.first_page("GatewayOcoDoubleExit", filled.received,
                                                              PAGE_TIMEOUT)
    run.gateway_counters = {
        name: await gateway.metric(name, platform="mock")
        for name in ("gateway_oco_double_exit_total", "gateway_critical_notifications_dropped_total")
    }


def _filled(raw: RawClient, order_id: str) -> Any:
    return raw.find(lambda f: f.event == "ORDER_FILLED" and (f.data.get("order") or {}).get("id") == order_id)


def saxo_body(fake: FakeSaxo) -> Callable[..., Any]:
    """Give-up (refused reconnects), then a gateway restart."""

    async def body(pipe: RealPipeline, gateway: RealGateway, raw: RawClient, run: Run) -> None:
        await fake.ctl("refuse?on=1")
        await fake.ctl("drop")
        await wait_until(lambda: raw.find(lambda f: f.event == "BROKER_CONNECTION_FAILED"),
                         GIVE_UP_TIMEOUT, "BROKER_CONNECTION_FAILED")
        failed = raw.find(lambda f: f.event == "BROKER_CONNECTION_FAILED")
        assert failed is not None
        run.events["broker give-up (BROKER_CONNECTION_FAILED)"] = failed.received
        run.pages["GatewayBrokerConnectionFailed"] = await pipe.first_page(
            "GatewayBrokerConnectionFailed", failed.received, PAGE_TIMEOUT)
        await fake.ctl("refuse?on=0")
        await gateway.stop()
        await gateway.start()
        run.events["gateway restarted after the give-up"] = time.monotonic()
        run.resolved = await pipe.resolution("GatewayBrokerConnectionFailed", time.monotonic())

    return body


async def saxo_run(workdir: Path, script: Path) -> Run:
    fake = FakeSaxo(script, workdir / "fake-saxo")
    await fake.start()
    try:
        return await pipeline_run(workdir, saxo_env(fake.port), saxo_body(fake))
    finally:
        await fake.stop()


@pytest.fixture(scope="module")
def mock_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The mock-mode pipeline, run once."""
    workdir = tmp_path_factory.mktemp("paging-mock")
    return asyncio.run(pipeline_run(workdir, mock_env(), mock_body))


@pytest.fixture(scope="module")
def saxo_run_(tmp_path_factory: pytest.TempPathFactory) -> Run:
    """The Saxo-mode pipeline, run once (skipped without fake_saxo.py)."""
    script = fake_saxo_script()
    if script is None or not script.exists():
        pytest.skip("Saxo paging skipped: no fake_saxo.py; set TEKTII_FAKE_SAXO")
    return asyncio.run(saxo_run(tmp_path_factory.mktemp("paging-saxo"), script))


# --- tests ---------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_real_gateway_and_the_monitor(mock_run: Run) -> None:
    assert mock_run.up_jobs == ["gateway", "gateway-monitor"]


def test_healthy_run_notifies_nothing_but_the_watchdog(mock_run: Run) -> None:
    healthy = [n for n in mock_run.notifications if n.received_monotonic < mock_run.healthy_end]
    assert {(n.path, frozenset(n.alertnames)) for n in healthy} == {("/watchdog", frozenset({"Watchdog"}))}
    assert len(healthy) >= 2, "the watchdog repeats while all is well"
    assert mock_run.healthy_alerts == [], "nothing even pending after the healthy stretch"


def test_oco_double_exit_through_rest_pages_from_the_gateways_counter(mock_run: Run) -> None:
    pages = mock_run.pages["GatewayOcoDoubleExit"]
    assert pages, f"no GatewayOcoDoubleExit page within {PAGE_TIMEOUT}s of the second fill"
    assert len(pages) == 1, [sorted(firing_names(n)) for n in pages]
    alerts = firing_alerts(pages[0])
    assert {(a["labels"]["alertname"], a["labels"]["source"], a["labels"].get("broker")) for a in alerts} == {
        ("GatewayOcoDoubleExit", "gateway-metrics", "mock")
    }
    assert all({k: a["labels"][k] for k in POD} == POD for a in alerts)
    assert mock_run.gateway_counters["gateway_oco_double_exit_total"] == 1, mock_run.gateway_counters


def test_oco_double_exit_sends_no_frame(mock_run: Run) -> None:
    assert mock_run.gateway_counters["gateway_critical_notifications_dropped_total"] == 1
    assert [f for f in mock_run.frames if f.get("type") not in ("candle", "order")] == []


def test_give_up_pages_broker_connection_failed(saxo_run_: Run) -> None:
    pages = saxo_run_.pages["GatewayBrokerConnectionFailed"]
    assert pages, f"no GatewayBrokerConnectionFailed page within {PAGE_TIMEOUT}s of the give-up"
    assert len(pages) == 1, [sorted(firing_names(n)) for n in pages]
    alerts = firing_alerts(pages[0])
    assert {a["labels"]["alertname"] for a in alerts} == {"GatewayBrokerConnectionFailed"}
    assert {a["labels"].get("broker") for a in alerts} == {"saxo-sim"}
    assert ("socket", "saxo-sim") in {(a["labels"]["source"], a["labels"].get("broker")) for a in alerts}


def test_gateway_restart_resolves_the_give_up_page(saxo_run_: Run) -> None:
    assert saxo_run_.resolved is not None, f"not resolved within {RESOLVE_TIMEOUT}s of the restart"


def test_saxo_run_pages_nothing_else(saxo_run_: Run) -> None:
    assert set(new_pages(saxo_run_.notifications)) == {"GatewayBrokerConnectionFailed"}


def test_paging_latency_report(mock_run: Run, saxo_run_: Run) -> None:
    rows = [
        {"event": event, "webhook": kind, "seconds_to_webhook": run.latency(event, note)}
        for run, event, kind, note in (
            (mock_run, "OCO double exit (second leg filled)", "firing",
             _first(mock_run.pages["GatewayOcoDoubleExit"])),
            (saxo_run_, "broker give-up (BROKER_CONNECTION_FAILED)", "firing",
             _first(saxo_run_.pages["GatewayBrokerConnectionFailed"])),
            (saxo_run_, "gateway restarted after the give-up", "resolved", saxo_run_.resolved),
        )
    ]
    path = mock_run.workdir.parent / "paging-latency.json"
    path.write_text(json.dumps(rows, indent=2), encoding="utf-8")
    print(f"\nevent -> webhook received ({path}):")
    for row in rows:
        seconds = row["seconds_to_webhook"]
        shown = f"{seconds:.2f}s" if seconds is not None else "none"
        print(f"  {row['event']:45} {row['webhook']:9} {shown}")
    assert all(r["seconds_to_webhook"] is not None and r["seconds_to_webhook"] < LATENCY_BOUND
               for r in rows[:2]), rows
    assert rows[2]["seconds_to_webhook"] is not None, rows


def _first(notes: list[Notification]) -> Notification | None:
    return notes[0] if notes else None

