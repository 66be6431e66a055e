"""In-process cost of the per-frame path alone (FrameProcessor.text), with an optional profile.

    .venv/bin/python tests/bench/hotpath.py [--frames N] [--log-level info] [--profile]

No socket, no event loop: this isolates decoding, counting, event handling and logging
from aiohttp, to tell which part a change moved. The end-to-end figures are run.py's.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import statistics
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import corpus as corpora
from prometheus_client import CollectorRegistry

from monitor import logs
from monitor.events import EventHandler
from monitor.gateway_state import GatewayState
from monitor.metrics import Metrics
from monitor.stream import FrameProcessor


def feed_health(metrics: Metrics, state: GatewayState) -> Any:
    """The monitor's feed health as the app builds it, or None for a checkout that has none
    (run with PYTHONPATH=<older checkout> to measure what it costs)."""
    import monitor

    if not (Path(monitor.__file__).parent / "feed.py").exists():
        return None  # (an editable install would otherwise find this checkout's feed.py)
    from monitor.feed import FeedHealth
    from monitor.instrument import FeedSettings

    return FeedHealth(metrics, state, FeedSettings(max_instruments=10_100), lambda: True)


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--frames", type=int, default=100_000)
    parser.add_argument("--corpus", choices=("stress", "live", "mix", "backtest"), default="stress",
                        help="a mix of corpus.py (mix = stress), or backtest (stress, sorted keys)")
    parser.add_argument("--log-level", default="info")
    parser.add_argument("--reps", type=int, default=5)
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--no-feed", action="store_true",
                        help="without feed health (monitor/feed.py), as MONITOR_FEED_HEALTH=false")
    parser.add_argument("--rate", type=int, default=1_000_000,
                        help="frames per second of the stream: feed health sweeps (and refills its "
                             "budget of frames read whole) once per this many frames")
    parser.add_argument("--batch", type=int, default=200,
                        help="frames per FrameProcessor.texts() call (the pump's batches); 1: text()")
    args = parser.parse_args()
    backtest = args.corpus == "backtest"
    c = corpora.build(args.frames, mix="stress" if backtest else args.corpus, backtest=backtest)
    with tempfile.TemporaryDirectory() as tmp, (Path(tmp) / "log").open("w") as stream:
        logs.configure(args.log_level, "json", stream=stream)
        metrics = Metrics(CollectorRegistry())
        state = GatewayState(metrics, 10_100, grace_seconds=15.0)
        health = feed_health(metrics, state) if not args.no_feed else None
        processor = FrameProcessor(metrics.stream, EventHandler(metrics, state), 1 << 20,
                                   *([health] if health is not None else []))
        payloads = c.payloads

        def feed(frames: list[bytes]) -> float:
            """Process `frames` as the pump would; return µs of CPU per frame."""
            batches = [frames[i:i + args.batch] for i in range(0, len(frames), args.batch)]
            texts, text = getattr(processor, "texts", None), processor.text
            started = time.process_time()
            if args.batch == 1 or texts is None:  # texts(): since the batching pump
                for p in frames:
                    text(p)
            else:
                seen = 0
                for batch in batches:
                    texts(batch)
                    seen += len(batch)
                    if health is not None and seen >= args.rate:  # one second of the stream
                        health.sweep()
                        seen = 0
            return (time.process_time() - started) / len(frames) * 1e6

        feed(payloads[:10_000])  # warm-up: first-use caches, dict growth
        if args.profile:
            prof = cProfile.Profile()
            prof.enable()
            feed(payloads)
            prof.disable()
            pstats.Stats(prof, stream=sys.stdout).sort_stats("tottime").print_stats(25)
        times = [feed(payloads) for _ in range(args.reps)]
        by_kind = {}
        for kind in sorted(set(c.kinds)):
            by_kind[kind] = feed([p for p, k in zip(payloads, c.kinds, strict=True) if k == kind])
    share = Counter(c.kinds)
    print(f"{args.corpus}, LOG_LEVEL={args.log_level}: "
          f"{statistics.median(times):.3f} µs/frame "
          f"(median of {args.reps}: {', '.join(f'{t:.3f}' for t in times)})")
    for kind, us in by_kind.items():
        print(f"  {kind:15s} {us:8.2f} µs/frame x {share[kind] / len(payloads):6.1%} "
              f"= {us * share[kind] / len(payloads):.3f} µs/frame of the mix")
    return 0


if __name__ == "__main__":
    sys.exit(main())
