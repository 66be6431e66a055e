"""Cost of rendering /metrics with many per-symbol series, now and with a cached block (proposal).

    .venv/bin/python tests/bench/scrape_cost.py [--series 10000]

Today every scrape renders every series through prometheus_client (~6 µs a sample in the
text format, ~11 µs in OpenMetrics). The proposal measured here: keep the per-symbol
staleness series outside the registry, render their lines once per change of the stale
set (they change on STALE/FRESH frames, not per scrape), and append that cached block to
the registry's exposition. This is a prototype for the figures only; the monitor does
not use it.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.openmetrics.exposition import generate_latest as generate_openmetrics

from monitor.metrics import PREFIX, Metrics

NAME = PREFIX + "symbol_stale_since_timestamp_seconds"


def median_ms(fn: Callable[[], object], reps: int = 15) -> float:
    times = []
    for _ in range(reps):
        started = time.perf_counter()
        fn()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def escape(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def block(stale: dict[tuple[str, str], float]) -> bytes:
    """The family's lines; a gauge's lines read the same in both formats (OpenMetrics: insert
    the block before the final `# EOF`)."""
    head = (f"# HELP {NAME} When the symbol went stale; present only while it is stale.\n"
            f"# TYPE {NAME} gauge\n")
    lines = [f'{NAME}{{broker="{escape(b)}",symbol="{escape(s)}"}} {v!r}\n' for (b, s), v in stale.items()]
    return (head + "".join(lines)).encode()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--series", type=int, default=10_000)
    args = parser.parse_args()
    full = Metrics(CollectorRegistry(auto_describe=True))
    stale = {("alpaca-paper", f"SERIES{i:07d}"): 1.77e9 + i for i in range(args.series)}
    for (broker, symbol), since in stale.items():
        full.symbol_stale_since.labels(broker, symbol).set(since)
    rest = Metrics(CollectorRegistry(auto_describe=True))  # everything but the symbol series
    text_now = median_ms(lambda: generate_latest(full.registry))
    om_now = median_ms(lambda: generate_openmetrics(full.registry))
    rest_text = median_ms(lambda: generate_latest(rest.registry))
    rest_om = median_ms(lambda: generate_openmetrics(rest.registry))
    cached = block(stale)
    rebuild = median_ms(lambda: block(stale))
    splice = median_ms(lambda: generate_latest(rest.registry) + cached)
    print(f"{args.series:,} symbol series")
    print(f"  now:      text {text_now:.1f} ms, OpenMetrics {om_now:.1f} ms per scrape")
    print(f"  proposal: text {splice:.1f} ms per scrape (registry {rest_text:.1f} ms + cached block); "
          f"OpenMetrics registry {rest_om:.1f} ms + cached block; "
          f"re-rendering the block after a change {rebuild:.1f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
