"""The checks of a fleet run, its results table, and the files it is written to.

`report()` prints the table and the pages, updates the run's section of FLEET-RESULTS.md (one
section per fleet size and profile; the method and the other sections are kept) and writes every
notification and figure as JSON.
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from processes import LINES

from harness.fleet_pages import (
    LISTED,
    PAGER,
    TICKET,
    Alerted,
    between,
    first_notified,
    outage_description,
    resolved_at,
)
from harness.fleet_stack import NAMESPACE

if TYPE_CHECKING:
    from harness.fleet import Run

MIB = 2**20
LIQUIDATION = "GatewayLiquidation"
METHOD = """\
# Fleet harness results

`make fleet N=100` (= `.venv/bin/python tests/harness/fleet.py --gateways 100`); the CI smoke is
`tests/test_fleet_smoke.py` (5 gateways, 2 of the 3 on saxo-live give up). Everything runs on
127.0.0.1 and is torn down at the end:

* **gateways**: N simulated gateways (`monitor.simulator.Simulator`, each its own port with
  `/health`, `/metrics`, `/v1/ws` and the `/_sim/` control API), 25 per host process
  (`tests/harness/fleet_gateways.py`), 2 market-data frames/s each over 4 instruments; 60% on
  `saxo-live` (quotes with `provider: saxo`, as the Saxo adapter sends them), the rest on
  `alpaca-paper`, assigned at random;
* **monitors**: one `python -m monitor` process per gateway, probing every scrape interval;
* **Prometheus 3.7.3** scraping every monitor (job `gateway-monitor`) and every gateway (job
  `gateway`) with the `namespace`/`pod`/`container` labels of the Kubernetes scrape config,
  `--enable-feature=extra-scrape-metrics`, the repository's rules rendered with scaled
  thresholds; **Alertmanager 0.29.0** with `alerts/alertmanager.yml`, webhooks pointed at the
  harness's receiver, which records every notification;
* **profiles** (`tests/harness/fleet_profile.py`): `e2e` is `tests/alerts/test_e2e_paging.py`'s
  timings (scrape and evaluation 1 s, thresholds in seconds instead of minutes, pager
  group_wait 3 s / group_interval 5 s, ticket 6 s / 10 s), give-ups staggered over 5 s;
  `production` divides every production timing by 10 (scrape and evaluation 30 s -> 3 s,
  pager group_wait 10 s -> 1 s, group_interval 1m -> 6 s, every threshold a tenth) and the 5 s
  stagger with it (0.5 s), so that every ratio is production's.

Phases: healthy (nothing may page), outage (every saxo-live gateway hit gives up on its broker
within the stagger; two liquidations on two other pods meanwhile), recovery (the operator
restarts the gateways that gave up, staggered likewise; everything resolves), dashboard (a few
events for the panels, an instrument silent on two saxo-live gateways twice and then a third
time, so that the silence panels and the fleet's "alerts firing now" have data, then every panel
query of every `deploy/grafana/*.json` dashboard, 5 instant runs and 2 range runs each,
medians). A *page* is a notification to the pager receiver that carries an alert (fingerprint
and startsAt) not sent firing before, once per alertname, as `new_pages` counts; the timelines
are `query_range` steps of the rules' own series. Scrape figures come from Prometheus's
per-target `scrape_*` series over the run, Prometheus's memory and rule timings from its own
`/metrics` read every few seconds, RSS from `/proc/<pid>/status`.
"""


@dataclass
class Check:
    """One expectation of the design and what the run showed."""

    name: str
    ok: bool
    detail: str


def _window(run: Run, name: str) -> tuple[float, float]:
    return run.phases.get(name, (math.inf, math.inf))


def classify(run: Run) -> dict[str, list[Alerted]]:
    """Pages and tickets by phase (outage pages without the liquidations)."""
    notes = run.fleet.receiver.notifications
    pages, tickets = first_notified(notes, PAGER), first_notified(notes, TICKET)
    outage_start, recovery_start = _window(run, "outage")[0], _window(run, "recovery")[0]
    recovery_end = _window(run, "recovery")[1]
    def outage(alerted: list[Alerted], start: float, end: float, liquidation: bool) -> list[Alerted]:
        return [a for a in between(alerted, start, end) if (a.alertname == LIQUIDATION) == liquidation]

    return {
        "healthy pages": between(pages, *_window(run, "healthy")),
        "healthy tickets": between(tickets, *_window(run, "healthy")),
        "outage pages": outage(pages, outage_start, recovery_start, False),
        "liquidation pages": outage(pages, outage_start, recovery_end, True),
        "recovery pages": outage(pages, recovery_start, recovery_end, False),
        "dashboard pages": between(pages, *_window(run, "dashboard")),
        "outage tickets": between(tickets, outage_start, recovery_start),
        "recovery tickets": between(tickets, recovery_start, recovery_end),
        "dashboard tickets": between(tickets, *_window(run, "dashboard")),
    }


def checks(run: Run, seen: dict[str, list[Alerted]]) -> list[Check]:
    """Did the design hold: a silent healthy fleet, <= 2 pages for the outage naming the broker and
    the gateways, one page per liquidation with its pod, a quiet recovery, data on every panel."""
    out = [Check("healthy fleet pages nothing", not seen["healthy pages"] and "healthy" in run.phases,
                 f"{len(seen['healthy pages'])} pages, {len(seen['healthy tickets'])} tickets")]
    outage_pages = seen["outage pages"]
    out.append(Check("outage: at most 2 pages", "outage" in run.phases and len(outage_pages) <= 2,
                     f"{len(outage_pages)} pages: " + _names(outage_pages)))
    out.append(_outage_page_check(run, outage_pages))
    pods = sorted(p.labels.get("pod", "") for p in seen["liquidation pages"])
    wanted = sorted(gw.pod for gw in run.liquidated)
    out.append(Check("liquidations page once each, with their pod", pods == wanted,
                     f"paged {pods}, injected on {wanted}"))
    recovery = run.phases.get("recovery")
    notes = run.fleet.receiver.notifications
    resolved = resolved_at(notes, "GatewayBrokerOutage", recovery[0]) if recovery else None
    after = f"{resolved - recovery[0]:.1f}s after the first restart" if recovery and resolved else "never"
    out.append(Check("recovery: no page, the outage resolves",
                     bool(recovery) and not seen["recovery pages"] and resolved is not None
                     and bool(run.observed.get("quiet")),
                     f"{len(seen['recovery pages'])} pages ({_names(seen['recovery pages'])}); "
                     f"outage resolved {after}"))
    if "dashboard" not in run.run_phases:
        return out
    oco = sorted((p.alertname, p.labels.get("pod", "")) for p in seen["dashboard pages"])
    out.append(Check("an OCO double exit pages once, for its pod (the only page of the dashboard phase)",
                     oco == [("GatewayOcoDoubleExit", run.liquidated[0].pod)], f"paged {oco}"))
    empty = [q for q in run.queries if not q.ok]
    missed = sorted(k for k in run.observed if k.startswith("silence"))  # fleet.silence timed out
    out.append(Check("every dashboard query returns data", bool(run.queries) and not empty and not missed,
                     f"{len(run.queries) - len(empty)}/{len(run.queries)} return data"
                     + "".join(f"; {k}" for k in missed)))
    return out


def _outage_page_check(run: Run, pages: list[Alerted]) -> Check:
    broker_pages = [p for p in pages if p.alertname == "GatewayBrokerOutage"]
    if len(broker_pages) != 1:
        return Check("outage: one GatewayBrokerOutage page naming broker and gateways", False,
                     f"{len(broker_pages)} GatewayBrokerOutage pages")
    page = broker_pages[0]
    stated, total, listed = outage_description(page)
    on_broker = sum(gw.broker == page.labels.get("broker") for gw in run.fleet.gateways)
    hit = {f"{NAMESPACE}/{gw.pod}" for gw in run.hit}
    ok = (page.labels.get("broker") == "saxo-live" and total == on_broker
          and len(listed) == min(stated, LISTED) and stated >= 2 and set(listed) <= hit)
    return Check("outage: one GatewayBrokerOutage page naming broker and gateways", ok,
                 f"broker={page.labels.get('broker')}, says {stated} of {total} gateways and lists "
                 f"{len(listed)}; "
                 f"{len(hit)} of {on_broker} were hit")


def _names(alerted: list[Alerted]) -> str:
    counts: dict[str, int] = {}
    for a in alerted:
        counts[a.alertname] = counts.get(a.alertname, 0) + 1
    return ", ".join(f"{name} x{n}" for name, n in counts.items()) or "none"


# --- the table ---------------------------------------------------------------------------------


def _mib(value: float) -> str:
    return f"{value / MIB:,.1f} MiB" if not math.isnan(value) else "n/a"


def _num(value: float, digits: int = 0) -> str:
    return f"{value:,.{digits}f}" if not math.isnan(value) else "n/a"


def _ms(value: float) -> str:
    return f"{value * 1000:,.1f} ms" if not math.isnan(value) else "n/a"


Row = tuple[str, str]


def rows(run: Run, verdict: list[Check], failure: str | None) -> list[Row]:
    """(measure, value) of the results table."""
    n = len(run.fleet.gateways)
    profile = run.profile
    on_saxo = sum(gw.broker == "saxo-live" for gw in run.fleet.gateways)
    out = [("gateways", f"{n} ({on_saxo} saxo-live, {n - on_saxo} alpaca-paper); {n} monitor processes, "
                        f"{len(run.fleet.hosts)} gateway host processes"),
           ("profile", f"{profile.name}: scrape/eval {profile.interval:g}s, pager group_wait "
                       f"{profile.route_timings['pager']['group_wait']} / group_interval "
                       f"{profile.route_timings['pager']['group_interval']}, stagger {profile.stagger:g}s")]
    wall = run.events.get("end", time.monotonic()) - run.started
    phases = ", ".join(f"{name} {end - begin:.0f}s" for name, (begin, end) in run.phases.items())
    ready = run.events.get("ready", math.nan) - run.started
    out.append(("harness wall time", f"{wall:.0f}s (start-up {ready:.0f}s; {phases})"))
    for check in verdict:
        out.append((f"{'OK' if check.ok else 'FAILED'}: {check.name}", check.detail))
    if failure:
        out.append(("FAILED: run", failure))
    out.extend(_scrape_rows(run.figures.get("scrapes", {})))
    out.extend(_prometheus_rows(run))
    out.extend(_query_rows(run))
    return out


def _scrape_rows(scrapes: dict[str, dict[str, float]]) -> list[tuple[str, str]]:
    out = []
    for job in ("gateway-monitor", "gateway"):
        f = scrapes.get(job)
        if not f:
            continue
        series = f"median {_num(f['series_median'])}, max {_num(f['series_max'])}"
        out.append((f"{job} target: series", f"{series} (all targets {_num(f['series_total'])})"))
        out.append((f"{job} target: scrape_samples_scraped", f"median {_num(f['samples_median'])}, "
                                                            f"peak {_num(f['samples_peak'])}"))
        out.append((f"{job} target: scrape_series_added over the run",
                    f"median {_num(f['series_added_median'])}, max {_num(f['series_added_max'])}"))
        out.append((f"{job} target: scrape duration", f"median {_ms(f['duration_median'])}, "
                                                     f"max {_ms(f['duration_max'])}"))
        out.append((f"{job} target: scrape body", f"median {_num(f['body_median'] / 1024, 1)} KiB, "
                                                 f"max {_num(f['body_max'] / 1024, 1)} KiB"))
    if "all" in scrapes:
        every = scrapes["all"]
        head, recorded = _num(every["head_series"]), _num(every["recorded_series"])
        out.append(("series in Prometheus at the end", f"{head} (recorded by rules: {recorded})"))
    return out


def _prometheus_rows(run: Run) -> list[tuple[str, str]]:
    sampler = run.sampler
    if sampler is None or not sampler.readings:
        return []
    last = sampler.readings[-1].prometheus
    out = []
    for key, label in (("rss", "RSS"), ("heap_inuse", "go heap in use")):
        values = sampler.series(key)
        out.append((f"Prometheus {label}", f"end {_mib(last.get(key, math.nan))}, peak {_mib(max(values))}"))
    heads = sampler.series("head_series")
    out.append(("prometheus_tsdb_head_series",
                f"end {_num(last.get('head_series', math.nan))}, peak {_num(max(heads))}"))
    rate = sampler.samples_per_second()
    out.append(("samples appended", f"{_num(rate)}/s at a {run.profile.interval:g}s interval "
                                     f"(= {_num(rate * run.profile.interval / 30)}/s at 30s)"))
    heap_per_series = last.get("heap_inuse", math.nan) / max(last.get("head_series", math.nan), 1)
    out.append(("heap in use per head series", f"{_num(heap_per_series / 1024, 1)} KiB"))
    for group, f in sampler.rule_groups().items():
        out.append((f"rule group {group}", f"median {_ms(f['median_s'])}, max {_ms(f['max_s'])}, "
                                           f"{_num(f['samples'])} samples/evaluation"))
    slowest = run.figures.get("rules", [])[:5]
    out.append(("slowest rules (last evaluation)",
                ", ".join(f"{r['rule']} {_ms(r['seconds'])}" for r in slowest) or "n/a"))
    out.append(("rule evaluation failures, notifications dropped",
                f"{_num(last.get('rule_failures', 0))}, {_num(last.get('notifications_dropped', 0))}"))
    for role in ("monitor", "gateway host", "alertmanager"):
        f = sampler.rss(role)
        if f:
            out.append((f"{role} RSS", f"median {_mib(f['median'])}, max {_mib(f['max'])}, "
                                       f"total {_mib(f['total'])} ({int(f['count'])} processes)"))
    cores = {role: sampler.cores(role) for role in ("monitor", "gateway host", "prometheus", "alertmanager")}
    out.append(("CPU while running (cores)", ", ".join(f"{role} {_num(c, 2)}" for role, c in cores.items())))
    return out


def _query_rows(run: Run) -> list[tuple[str, str]]:
    if not run.queries:
        return []
    instants = [q.instant_s for q in run.queries if not math.isnan(q.instant_s)]
    ranges = [q.range_s for q in run.queries if not math.isnan(q.range_s)]
    boards = sorted({q.query.dashboard for q in run.queries})
    slow = max(run.queries, key=lambda q: q.range_s if not math.isnan(q.range_s) else -1)
    empty = [q for q in run.queries if not q.ok]
    out = [("dashboard queries", f"{len(run.queries)} from {', '.join(boards)}; "
                                 f"{len(run.queries) - len(empty)} return data")]
    if instants:
        out.append(("dashboard query time, instant", f"median {_ms(statistics.median(instants))}, "
                                                     f"max {_ms(max(instants))}, sum {_ms(sum(instants))}"))
    if ranges:
        out.append(("dashboard query time, range (dashboard's time range)",
                    f"median {_ms(statistics.median(ranges))}, max {_ms(max(ranges))} "
                    f"({slow.query.where}), sum {_ms(sum(ranges))}"))
    peak = max(run.queries, key=lambda q: q.range_peak)
    out.append(("dashboard range query, most samples at once (peakSamples)",
                f"{peak.range_peak:,} ({peak.query.where}; Prometheus refuses a query above 50,000,000)"))
    out.extend((f"empty: {q.query.dashboard} {q.query.where}", q.reason) for q in empty)
    return out


def markdown_table(table: list[tuple[str, str]]) -> str:
    """The rows as a Markdown table."""
    width = max(len(m) for m, _ in table)
    lines = [f"| {'measure'.ljust(width)} | value |", f"|{'-' * (width + 2)}|---|"]
    lines += [f"| {m.ljust(width)} | {v.replace('|', '/')} |" for m, v in table]
    return "\n".join(lines)


# --- the files ---------------------------------------------------------------------------------


def machine() -> str:
    """What ran it: cores, CPU, memory, Python, load."""
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
        meminfo = Path("/proc/meminfo").read_text().splitlines()
        mem = next(line for line in meminfo if line.startswith("MemTotal"))
        mem_gib = int(mem.split()[1]) / 2**20
    except (OSError, StopIteration):
        mem_gib = math.nan
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    line = LINES["current"]
    return (f"{os.cpu_count()} cores ({model}), {mem_gib:.0f} GiB, Python {platform.python_version()}, "
            f"{line.title}; load average at the end {load} (a shared machine)")


def pages_text(run: Run, seen: dict[str, list[Alerted]]) -> list[str]:
    """Every page and ticket by phase, with its time from the phase's start."""
    out = []
    for key, alerted in seen.items():
        phase = key.split()[0]
        origin = run.phases.get("outage" if phase == "liquidation" else phase, (run.started, 0))[0]
        out.append(f"* {key}: {len(alerted)}")
        for a in alerted[:12]:
            limit = 600 if a.labels.get("source") == "fleet" else 120
            out.append(f"  * +{a.received - origin:.1f}s {a.text(limit)}")
        if len(alerted) > 12:
            out.append(f"  * ... {len(alerted) - 12} more")
    return out


def timeline_text(name: str, rows_: list[dict[str, float]]) -> list[str]:
    """A timeline, keeping only the evaluations where something changed."""
    if not rows_:
        return []
    out = [f"{name} (t from the phase's start; per evaluation: saxo-live gateways failed as "
           f"`broker:gateway_monitor_gateways_failed:count` saw them, per-pod GatewayBrokerConnectionFailed "
           f"firing, GatewayBrokerOutage firing):", "", "| t | failed | per-pod firing | outage firing |",
           "|---|---|---|---|"]
    before: tuple[float, ...] | None = None
    for row in rows_:
        now = (row.get("failed", 0), row.get("per_pod_firing", 0), row.get("outage_firing", 0))
        if now != before:
            out.append(f"| {row['t']:+.1f}s | {now[0]:.0f} | {now[1]:.0f} | {now[2]:.0f} |")
            before = now
    return [*out, ""]


def queries_text(run: Run) -> list[str]:
    """Every dashboard query with its timings."""
    out = ["| dashboard | panel / variable | series | instant | exec | samples | range | range samples | "
           "range peak | |", "|---|---|---|---|---|---|---|---|---|---|"]
    for q in run.queries:
        status = "ok" if q.ok else f"EMPTY: {q.reason}"
        where = q.query.where.replace("|", "/")
        out.append(f"| {q.query.dashboard} | {where} | {q.series} | {_ms(q.instant_s)} | {_ms(q.exec_s)} | "
                   f"{q.samples:,} | {_ms(q.range_s)} | {q.range_samples:,} | {q.range_peak:,} | {status} |")
    return out


def section(run: Run, table: list[tuple[str, str]], seen: dict[str, list[Alerted]], command: str) -> str:
    """The run's section of FLEET-RESULTS.md."""
    date = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(run.started_wall))
    parts = [f"## N={len(run.fleet.gateways)}, profile {run.profile.name}", "",
             f"{date}, commit {git_describe()}, `{command}`. Machine: {machine()}.", "",
             markdown_table(table), "",
             "Pages and tickets (first notification of each alert; time from the phase's start):", "",
             *pages_text(run, seen), ""]
    parts += timeline_text("Outage timeline", run.figures.get("outage_timeline", []))
    parts += timeline_text("Recovery timeline", run.figures.get("recovery_timeline", []))
    parts += ["Dashboard queries (medians; `exec` is Prometheus's execTotalTime; `samples` its "
              "totalQueryableSamples; `range peak` the peakSamples of the range query):", "",
              *queries_text(run), ""]
    return "\n".join(parts)


def update_results(path: Path, text: str) -> None:
    """Replace (or add) this section of `path`, below the method; other sections stay."""
    title = text.split("\n", 1)[0]
    sections: list[str] = []
    if path.exists():
        sections = ["## " + s for s in path.read_text(encoding="utf-8").split("\n## ")[1:]]
    kept = [s.rstrip("\n") for s in sections if s.split("\n", 1)[0] != title]
    ordered = sorted([*kept, text.rstrip("\n")], key=lambda s: _size_key(s.split("\n", 1)[0]))
    path.write_text(METHOD + "\n" + "\n\n".join(ordered) + "\n", encoding="utf-8")


def _size_key(title: str) -> tuple[int, str]:
    try:
        return -int(title.split("N=", 1)[1].split(",", 1)[0]), title
    except (IndexError, ValueError):
        return 0, title


def write_json(run: Run, path: Path, verdict: list[Check], seen: dict[str, list[Alerted]]) -> None:
    """Every notification, page, figure and query of the run."""
    base = run.started
    record = {
        "profile": asdict(run.profile),
        "gateways": [{"pod": gw.pod, "broker": gw.broker, "port": gw.port} for gw in run.fleet.gateways],
        "hit": [gw.pod for gw in run.hit], "liquidated": [gw.pod for gw in run.liquidated],
        "pids": run.fleet.pids(),
        "phases": {k: [a - base, b - base] for k, (a, b) in run.phases.items()},
        "events": {k: v - base for k, v in run.events.items()},
        "checks": [asdict(c) for c in verdict],
        "seen": {k: [{"t": a.received - base, "labels": a.labels, "annotations": a.annotations} for a in v]
                 for k, v in seen.items()},
        "notifications": [{"t": n.received_monotonic - base, "path": n.path, "payload": n.payload}
                          for n in run.fleet.receiver.notifications],
        "figures": run.figures,
        "rule_groups": run.sampler.rule_groups() if run.sampler else {},
        "readings": [{"t": r.at - base, **r.prometheus, "rss_by_role": {k: sum(v) for k, v in r.rss.items()},
                      "cpu_by_role": r.cpu}
                     for r in (run.sampler.readings if run.sampler else [])],
        "queries": [{**asdict(q.query), **{k: v for k, v in asdict(q).items() if k != "query"}}
                    for q in run.queries],
    }
    path.write_text(json.dumps(record, indent=1, default=str), encoding="utf-8")


def report(run: Run, failure: str | None, results: Path | None, json_path: Path, command: str) -> bool:
    """Print the table and the pages, write the files; True when every check held."""
    seen = classify(run)
    verdict = checks(run, seen)
    table = rows(run, verdict, failure)
    text = section(run, table, seen, command)
    print(text)
    write_json(run, json_path, verdict, seen)
    if results is not None:
        update_results(results, text)
    print(f"[fleet] notifications and figures: {json_path}", flush=True)
    return all(c.ok for c in verdict)


def git_describe() -> str:
    """The commit the run measured (for the JSON)."""
    argv = ["git", "describe", "--always", "--dirty"]
    out = subprocess.run(argv, capture_output=True, text=True, check=False, cwd=Path(__file__).parent)
    return out.stdout.strip()
