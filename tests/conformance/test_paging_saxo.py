"""Paging end to end with the real gateway's Saxo adapter and fake_saxo.py (pipeline: paging_support.py).

Recorded by a module fixture, once per Prometheus/Alertmanager version line (processes.LINES, the
lines at the same time): reconnects refused and the broker stream dropped, so the gateway gives up
(BROKER_CONNECTION_FAILED after RECONNECT_MAX_DURATION_SECS); that must page
GatewayBrokerConnectionFailed. Then the fake accepts again and the gateway is restarted (SIGTERM,
start on the same port), the operator's remedy; that must resolve the page. Times from the give-up
and from the restart to the webhook are printed by test_give_up_latency_report (`pytest -s`) and
written to paging-latency.json in each line's directory (paging-saxo-<line>N/).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from alerts_support import no_leftover_daemons  # noqa: F401 - importing a fixture registers it
from gateway_support import FakeSaxo, RawClient, RealGateway, require_fake_saxo, saxo_env, wait_until
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
from processes import LINES, VersionLine
from test_e2e_paging import PAGE_TIMEOUT, RESOLVE_TIMEOUT, firing_alerts, firing_names, new_pages

FAKE_SAXO = require_fake_saxo()
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240), pytest.mark.usefixtures("no_leftover_daemons")]

GIVE_UP_TIMEOUT = 15.0


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


async def saxo_run(line: VersionLine, workdir: Path) -> Run:
    """A fake broker of its own, and the pipeline around a Saxo-mode gateway."""
    fake = FakeSaxo(FAKE_SAXO, workdir / "fake-saxo")
    await fake.start()
    try:
        return await pipeline_run(line, workdir, saxo_env(fake.port), saxo_body(fake))
    finally:
        await fake.stop()


@pytest.fixture(scope="module")
def saxo_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Run | BaseException]:
    """The Saxo-mode pipeline, once per version line, the lines at the same time."""
    workdirs = {name: tmp_path_factory.mktemp(f"paging-saxo-{name}") for name in LINES}
    return asyncio.run(run_lines(saxo_run, workdirs))


@pytest.fixture(scope="module", params=list(LINES))
def saxo_run_(request: pytest.FixtureRequest, saxo_runs: dict[str, Run | BaseException]) -> Run:
    """What the pipeline of one version line observed."""
    return run_of(saxo_runs, request.param)


# --- tests ---------------------------------------------------------------------------------------


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


def test_give_up_latency_report(saxo_run_: Run) -> None:
    give_up, restart = "broker give-up (BROKER_CONNECTION_FAILED)", "gateway restarted after the give-up"
    rows = latency_report([
        (saxo_run_, give_up, "firing", first(saxo_run_.pages["GatewayBrokerConnectionFailed"])),
        (saxo_run_, restart, "resolved", saxo_run_.resolved),
    ], saxo_run_.workdir / "paging-latency.json")
    assert rows[0]["seconds_to_webhook"] is not None and rows[0]["seconds_to_webhook"] < LATENCY_BOUND, rows
    assert rows[1]["seconds_to_webhook"] is not None, rows
