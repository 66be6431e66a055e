"""The timings of a fleet run: scrape and evaluation intervals, rule thresholds, Alertmanager timings.

Two profiles:

- `e2e` (default): tests/alerts/test_e2e_paging.py's, so that the fleet sees what the paging test
  sees: scrape and evaluation every 1 s, alerts/thresholds.yaml scaled from minutes to seconds
  (TEST_THRESHOLDS), Alertmanager timings in production's proportions to each other (pager 3 s /
  5 s, ticket 6 s / 10 s), give-ups staggered over 5 s.
- `production`: everything of production divided by 10, so that every ratio is production's:
  a 30 s scrape and evaluation interval (kube-prometheus-stack's default) become 3 s, every
  duration of alerts/thresholds.yaml and of alerts/alertmanager.yml a tenth (pager group_wait
  10 s -> 1 s), and give-ups staggered over 5 s of production become 0.5 s.
"""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml
from test_e2e_paging import ROOT_TIMINGS, ROUTE_TIMINGS, TEST_THRESHOLDS

from harness.durations import DURATION, duration, seconds
from harness.net import HOST
from harness.paths import ALERTS_DIR

TIMING_KEYS = ("group_wait", "group_interval", "repeat_interval")
PRODUCTION_INTERVAL = 30.0  # kube-prometheus-stack's scrapeInterval and evaluationInterval


@dataclass(frozen=True)
class Profile:
    """Every timing of one fleet run."""

    name: str
    interval: float  # scrape and rule evaluation, seconds
    thresholds: dict[str, str]  # every duration of alerts/thresholds.yaml
    root_timings: dict[str, str]  # Alertmanager's root route
    route_timings: dict[str, dict[str, str]]  # receiver -> its route's timings
    resend_delay: str  # Prometheus --rules.alert.resend-delay
    stagger: float  # the give-ups of one outage are spread over this many seconds
    healthy: float  # length of the healthy phase
    restart_down: float  # seconds a restarted gateway refuses connections
    scale: float  # this profile's seconds per production second (its scrape interval / 30 s)

    def threshold(self, name: str) -> float:
        """A threshold of this profile in seconds."""
        return seconds(self.thresholds[name])

    def pager(self, key: str) -> float:
        """A timing of the pager route in seconds."""
        return seconds(self.route_timings["pager"][key])

    @property
    def hold(self) -> float:
        """How long an outage is watched before the gateways are restarted: long enough for the
        per-pod warnings of the gateways hit to fire and reach the end of the ticket group_wait."""
        warnings = max(self.threshold("broker_disconnected_for"), self.threshold("symbols_stale_for"))
        ticket_wait = seconds(self.route_timings["ticket"]["group_wait"])
        return warnings + ticket_wait + 2 * self.interval + self.pager("group_interval") + 5

    @property
    def longest_group_interval(self) -> float:
        """The longest group_interval of any route: resolutions are sent within it."""
        return max(seconds(t["group_interval"]) for t in [self.root_timings, *self.route_timings.values()])


def production_thresholds() -> dict[str, str]:
    """Every duration of alerts/thresholds.yaml, as production has it."""
    values = yaml.safe_load((ALERTS_DIR / "thresholds.yaml").read_text(encoding="utf-8"))
    return {k: str(v) for k, v in values.items() if DURATION.match(str(v))}


def production_route_timings() -> tuple[dict[str, str], dict[str, dict[str, str]]]:
    """Root and per-receiver route timings of alerts/alertmanager.yml."""
    route = yaml.safe_load((ALERTS_DIR / "alertmanager.yml").read_text(encoding="utf-8"))["route"]
    root = {k: route[k] for k in TIMING_KEYS}
    children = {c["receiver"]: {k: c.get(k, root[k]) for k in TIMING_KEYS} for c in route["routes"]}
    return root, children


def _scaled(timings: dict[str, str], factor: float) -> dict[str, str]:
    return {k: duration(seconds(v) * factor) for k, v in timings.items()}


def e2e() -> Profile:
    """test_e2e_paging.py's timings."""
    return Profile("e2e", 1.0, dict(TEST_THRESHOLDS), dict(ROOT_TIMINGS),
                   {k: dict(v) for k, v in ROUTE_TIMINGS.items()}, "1s",
                   stagger=5.0, healthy=25.0, restart_down=1.0, scale=1 / 30)


def production(factor: float = 0.1) -> Profile:
    """Production's timings, all multiplied by `factor`."""
    root, routes = production_route_timings()
    return Profile("production", PRODUCTION_INTERVAL * factor, _scaled(production_thresholds(), factor),
                   _scaled(root, factor), {r: _scaled(t, factor) for r, t in routes.items()},
                   duration(60 * factor), stagger=5.0 * factor, healthy=30.0, restart_down=1.0,
                   scale=factor)


PROFILES = {"e2e": e2e, "production": production}


def render_rules(profile: Profile, workdir: Path) -> list[Path]:
    """alerts/src rendered by alerts/generate.py with the profile's thresholds; the rule files."""
    production_values = yaml.safe_load((ALERTS_DIR / "thresholds.yaml").read_text(encoding="utf-8"))
    missing = set(production_thresholds()) - set(profile.thresholds)
    if missing:
        raise ValueError(f"profile {profile.name} does not scale {sorted(missing)}")
    workdir.mkdir(parents=True, exist_ok=True)
    thresholds = workdir / "thresholds.yaml"
    thresholds.write_text(yaml.safe_dump({**production_values, **profile.thresholds}), encoding="utf-8")
    out = workdir / "rules"
    argv = [sys.executable, str(ALERTS_DIR / "generate.py"), "--thresholds", str(thresholds),
            "--out", str(out)]
    result = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
    if result.returncode != 0:
        raise RuntimeError(f"alerts/generate.py failed: {result.stderr}")
    return sorted(out.glob("*.yml"))


def prometheus_config(profile: Profile, targets: list[dict[str, Any]], rules: list[Path],
                      alertmanager_port: int) -> dict[str, Any]:
    """Scrape every target (job, address, labels) at the profile's interval; rules; Alertmanager."""
    jobs: dict[str, list[dict[str, Any]]] = {}
    for target in targets:
        jobs.setdefault(target["job"], []).append(
            {"targets": [target["address"]], "labels": target["labels"]})
    interval = duration(profile.interval)
    return {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "rule_files": [str(path) for path in rules],
        "scrape_configs": [{"job_name": job, "static_configs": static} for job, static in jobs.items()],
        "alerting": {"alertmanagers": [{"static_configs": [{"targets": [f"{HOST}:{alertmanager_port}"]}]}]},
    }
