"""What a fleet run costs: Prometheus's own figures, the scrapes, process memory, dashboard queries.

A Sampler reads Prometheus's /metrics (memory, head series, samples appended, rule group
durations) and the RSS of every process (/proc/<pid>/status) every few seconds for the whole
run; the scrape figures come from Prometheus's per-target series (`scrape_samples_scraped`,
`scrape_series_added`, `scrape_duration_seconds`, `scrape_body_size_bytes` of the
extra-scrape-metrics feature) over the run; dashboard queries are timed with `stats=all`.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import statistics
import time
from collections import defaultdict
from dataclasses import dataclass, field

import aiohttp
from metric_names import names_in_expr
from prometheus_client.parser import text_string_to_metric_families

from harness.dashboard_queries import Query, dashboard_queries
from harness.fleet_stack import Fleet, step

JOBS = ("gateway-monitor", "gateway")
PROMETHEUS_FIGURES = {
    "process_resident_memory_bytes": "rss",
    "go_memstats_heap_inuse_bytes": "heap_inuse",
    "prometheus_tsdb_head_series": "head_series",
    "prometheus_tsdb_head_samples_appended_total": "samples_appended",
    "prometheus_rule_evaluation_failures_total": "rule_failures",
    "prometheus_notifications_dropped_total": "notifications_dropped",
}


def rss_bytes(pid: int) -> int:
    """Resident set size of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/status", encoding="ascii") as status:
            for line in status:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


def cpu_seconds(pid: int) -> float:
    """User plus system CPU seconds of a process (0 once it is gone)."""
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@dataclass
class Reading:
    """One reading of Prometheus's own metrics and of every process's RSS."""

    at: float  # monotonic
    prometheus: dict[str, float]
    rule_seconds: dict[str, float]  # rule group -> last evaluation duration
    rule_samples: dict[str, float]  # rule group -> samples its last evaluation produced
    rss: dict[str, list[int]]  # role -> RSS of each of its processes
    cpu: dict[str, float]  # role -> CPU seconds of all its processes so far


@dataclass
class Sampler:
    """Reads Prometheus's /metrics and every RSS every `every` seconds until stopped."""

    fleet: Fleet
    every: float = 5.0
    readings: list[Reading] = field(default_factory=list)
    _task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start reading in the background."""
        self._task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        """Take a last reading and stop."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        with contextlib.suppress(aiohttp.ClientError, TimeoutError):
            await self.read()

    async def _loop(self) -> None:
        while True:
            with contextlib.suppress(aiohttp.ClientError, TimeoutError):
                await self.read()
            await asyncio.sleep(self.every)

    async def read(self) -> None:
        """One reading."""
        assert self.fleet.prometheus is not None
        url = f"{self.fleet.prometheus.base_url}/metrics"
        async with self.fleet.session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as resp:
            text = await resp.text()
        figures: dict[str, float] = defaultdict(float)
        rule_seconds: dict[str, float] = {}
        rule_samples: dict[str, float] = {}
        for family in text_string_to_metric_families(text):
            for sample in family.samples:
                if sample.name in PROMETHEUS_FIGURES:
                    figures[PROMETHEUS_FIGURES[sample.name]] += sample.value
                elif sample.name == "prometheus_rule_group_last_duration_seconds":
                    rule_seconds[_group(sample.labels)] = sample.value
                elif sample.name == "prometheus_rule_group_last_evaluation_samples":
                    rule_samples[_group(sample.labels)] = sample.value
        pids = self.fleet.pids()
        rss = {role: [rss_bytes(pid) for pid in role_pids] for role, role_pids in pids.items()}
        cpu = {role: sum(cpu_seconds(pid) for pid in role_pids) for role, role_pids in pids.items()}
        self.readings.append(Reading(time.monotonic(), dict(figures), rule_seconds, rule_samples, rss, cpu))

    def series(self, name: str) -> list[float]:
        """Every reading of one of Prometheus's figures."""
        return [r.prometheus[name] for r in self.readings if name in r.prometheus]

    def samples_per_second(self, last: float = 60.0) -> float:
        """Samples appended per second over the last `last` seconds of readings."""
        if len(self.readings) < 2:
            return math.nan
        end = self.readings[-1]
        start = next((r for r in self.readings if r.at >= end.at - last), self.readings[0])
        if end.at <= start.at:
            return math.nan
        appended = end.prometheus["samples_appended"] - start.prometheus["samples_appended"]
        return appended / (end.at - start.at)

    def rule_groups(self) -> dict[str, dict[str, float]]:
        """Per rule group: median and max evaluation seconds, median samples per evaluation."""
        durations: dict[str, list[float]] = defaultdict(list)
        samples: dict[str, list[float]] = defaultdict(list)
        for reading in self.readings:
            for group, value in reading.rule_seconds.items():
                durations[group].append(value)
            for group, value in reading.rule_samples.items():
                samples[group].append(value)
        return {g: {"median_s": statistics.median(d), "max_s": max(d),
                    "samples": statistics.median(samples[g]) if samples[g] else math.nan}
                for g, d in sorted(durations.items())}

    def cores(self, role: str) -> float:
        """CPU used by the processes of `role` between the first and the last reading, in cores."""
        if len(self.readings) < 2 or self.readings[-1].at <= self.readings[0].at:
            return math.nan
        first, last = self.readings[0], self.readings[-1]
        return (last.cpu.get(role, 0.0) - first.cpu.get(role, 0.0)) / (last.at - first.at)

    def rss(self, role: str) -> dict[str, float]:
        """RSS of the processes of `role`: median and max of one process, total, peak total."""
        last = [r.rss.get(role, []) for r in self.readings if any(r.rss.get(role, []))]
        if not last:
            return {}
        final = [v for v in last[-1] if v]
        return {"median": statistics.median(final), "max": max(max(v) for v in last),
                "total": sum(final), "peak_total": max(sum(v) for v in last), "count": len(final)}


def _group(labels: dict[str, str]) -> str:
    # rule_group is "<file>;<group name>": the group name is enough.
    return labels.get("rule_group", "").rsplit(";", 1)[-1]


async def scrape_figures(fleet: Fleet, run_seconds: float) -> dict[str, dict[str, float]]:
    """Per job: series per target, scrape samples, series added, scrape duration and body size."""
    window = step(max(run_seconds, 60.0))
    figures: dict[str, dict[str, float]] = {}
    for job in JOBS:
        sel = f'job="{job}"'
        exprs = {
            "series_median": f'quantile(0.5, count by (instance) ({{{sel}, __name__!~"up|scrape_.*"}}))',
            "series_max": f'max(count by (instance) ({{{sel}, __name__!~"up|scrape_.*"}}))',
            "samples_median": f"quantile(0.5, scrape_samples_scraped{{{sel}}})",
            "samples_peak": f"max(max_over_time(scrape_samples_scraped{{{sel}}}[{window}]))",
            "series_added_median": f"quantile(0.5, sum_over_time(scrape_series_added{{{sel}}}[{window}]))",
            "series_added_max": f"max(sum_over_time(scrape_series_added{{{sel}}}[{window}]))",
            "duration_median":
                f"quantile(0.5, quantile_over_time(0.5, scrape_duration_seconds{{{sel}}}[{window}]))",
            "duration_max": f"max(max_over_time(scrape_duration_seconds{{{sel}}}[{window}]))",
            "body_median":
                f"quantile(0.5, quantile_over_time(0.5, scrape_body_size_bytes{{{sel}}}[{window}]))",
            "body_max": f"max(max_over_time(scrape_body_size_bytes{{{sel}}}[{window}]))",
            "series_total": f'count({{{sel}, __name__!~"up|scrape_.*"}})',
        }
        figures[job] = {name: await fleet.value(expr, math.nan) for name, expr in exprs.items()}
    figures["all"] = {
        "head_series": await fleet.value('count({__name__=~".+"})', math.nan),
        "recorded_series": await fleet.value('count({__name__=~".+:.+"})', math.nan),
    }
    return figures


@dataclass
class QueryResult:
    """One dashboard query, run several times."""

    query: Query
    series: int = 0
    values: list[float] = field(default_factory=list)
    instant_s: float = math.nan  # median wall time of the instant query
    exec_s: float = math.nan  # median of Prometheus's own execTotalTime
    samples: int = 0  # totalQueryableSamples of the instant query
    range_s: float = math.nan  # median wall time of the range query over the dashboard's range
    range_samples: int = 0
    range_peak: int = 0  # peakSamples of the range query (Prometheus refuses above --query.max-samples)
    error: str = ""
    reason: str = ""  # why it returned nothing

    @property
    def ok(self) -> bool:
        """Returned at least one sample that is a number."""
        return not self.error and any(not math.isnan(v) for v in self.values)


async def run_dashboard_queries(fleet: Fleet, reps: int = 5) -> list[QueryResult]:
    """Every panel query of deploy/grafana/*.json: instant and range timings, data or the reason."""
    results = []
    for query in dashboard_queries():
        result = QueryResult(query)
        try:
            await _instant(fleet, result, reps)
            await _range(fleet, result, max(2, reps // 2))
        except RuntimeError as err:
            result.error = str(err)[:300]
        if not result.ok:
            result.reason = result.error or await _why_empty(fleet, result)
        results.append(result)
    return results


async def _instant(fleet: Fleet, result: QueryResult, reps: int) -> None:
    walls, execs = [], []
    for _ in range(reps):
        started = time.perf_counter()
        body = await fleet.api("query", query=result.query.resolved, stats="all")
        walls.append(time.perf_counter() - started)
        stats = body["data"].get("stats", {})
        execs.append(float(stats.get("timings", {}).get("execTotalTime", math.nan)))
        result.samples = int(stats.get("samples", {}).get("totalQueryableSamples", 0))
        data = body["data"]["result"]
        if body["data"]["resultType"] == "scalar":
            data = [{"value": data}]
        result.series = len(data)
        result.values = [float(s["value"][1]) for s in data if "value" in s]
    result.instant_s, result.exec_s = statistics.median(walls), statistics.median(execs)


async def _range(fleet: Fleet, result: QueryResult, reps: int) -> None:
    """The range query Grafana sends for a ~1,000-point-wide panel over the dashboard's range."""
    end = time.time()
    start = end - result.query.range_seconds
    resolution = max(fleet.profile.interval, result.query.range_seconds / 1000)
    walls = []
    for _ in range(reps):
        started = time.perf_counter()
        body = await fleet.api("query_range", query=result.query.resolved, start=str(start), end=str(end),
                               step=step(resolution), stats="all")
        walls.append(time.perf_counter() - started)
        samples = body["data"].get("stats", {}).get("samples", {})
        result.range_samples = int(samples.get("totalQueryableSamples", 0))
        result.range_peak = int(samples.get("peakSamples", 0))
    result.range_s = statistics.median(walls)


async def _why_empty(fleet: Fleet, result: QueryResult) -> str:
    names = sorted(names_in_expr(result.query.resolved))
    absent = [n for n in names if not await fleet.query(f'count({{__name__="{n}"}})')]
    if absent:
        return f"no series of {', '.join(absent)} in this run"
    if result.series:
        return "only NaN: a ratio or histogram quantile with no observations in the window"
    return f"{', '.join(names) or 'its series'} exist, but the expression selects none of them now"
