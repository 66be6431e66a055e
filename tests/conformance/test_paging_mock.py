"""Paging end to end with the real gateway in mock mode (see paging_support.py for the pipeline).

Recorded by a module fixture, once per Prometheus/Alertmanager version line (processes.LINES, the
lines at the same time): a healthy stretch of HEALTHY_SECONDS (60 s: the scaled thresholds fire
within 20 s, so a minute covers every `for:` and window three times over) must notify nothing but
the Watchdog; then an OCO double exit made through the real REST API must page
GatewayOcoDoubleExit. No frame arrives for it (v0.2.0 drops the router's notification), so the
gateway's own counter carries it. The time from the second leg's fill to the webhook is printed by
test_oco_latency_report (`pytest -s`) and written to paging-latency.json in each line's directory
(paging-mock-<line>N/).
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest
from alerts_support import no_leftover_daemons  # noqa: F401 - importing a fixture registers it
from gateway_support import RawClient, RealGateway, mock_env, wait_until
from paging_support import (
    LATENCY_BOUND,
    RealPipeline,
    Run,
    first,
    latency_report,
    pipeline_run,
    run_lines,
    run_of,
)
from processes import LINES
from test_e2e_paging import PAGE_TIMEOUT, POD, firing_alerts, firing_names, new_pages

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), pytest.mark.usefixtures("no_leftover_daemons")]

HEALTHY_SECONDS = 60.0
FILL_TIMEOUT = 5.0


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
    for sample in await pipe.query('ALERTS{alertstate="firing", alertname!="Watchdog"}'):
        labels = sample["metric"]
        run.firing_after_oco.setdefault(labels["alertname"], set()).add(
            (labels.get("source", ""), labels.get("broker", "")))
    run.gateway_counters = {
        name: await gateway.metric(name, platform="mock")
        for name in ("gateway_oco_double_exit_total", "gateway_critical_notifications_dropped_total")
    }


def _filled(raw: RawClient, order_id: str) -> Any:
    return raw.find(lambda f: f.event == "ORDER_FILLED" and (f.data.get("order") or {}).get("id") == order_id)


@pytest.fixture(scope="module")
def mock_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run | BaseException]:
    """The mock-mode pipeline, once per version line, the lines at the same time."""
    workdirs = {name: tmp_path_factory.mktemp(f"paging-mock-{name}") for name in LINES}
    return asyncio.run(run_lines(lambda line, workdir: pipeline_run(line, workdir, mock_env(), mock_body),
                                 workdirs))


@pytest.fixture(scope="module", params=list(LINES))
def mock_run(request: pytest.FixtureRequest, mock_runs: dict[str, Run | BaseException]) -> Run:
    """What the pipeline of one version line observed."""
    return run_of(mock_runs, request.param)


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


def test_oco_double_exit_pages_only_what_the_gateways_counters_explain(mock_run: Run) -> None:
    # The gateway also counts the OCO_DOUBLE_EXIT notification it could not deliver in
    # gateway_critical_notifications_dropped_total, which the rules page as GatewayPositionUnprotected
    # (source gateway-metrics); Alertmanager mutes that for the same gateway and broker while the
    # OCO page fires (alerts/alertmanager.yml), so one incident is one page.
    assert new_pages(mock_run.notifications) == {"GatewayOcoDoubleExit": 1}
    assert mock_run.firing_after_oco.get("GatewayPositionUnprotected") == {("gateway-metrics", "mock")}


def test_oco_latency_report(mock_run: Run) -> None:
    event = "OCO double exit (second leg filled)"
    (row,) = latency_report([(mock_run, event, "firing", first(mock_run.pages["GatewayOcoDoubleExit"]))],
                            mock_run.workdir / "paging-latency.json")
    assert row["seconds_to_webhook"] is not None and row["seconds_to_webhook"] < LATENCY_BOUND, row
