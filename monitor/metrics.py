"""Every metric the monitor exports, built against a registry that is passed in.

Series that alerts test with increase() are created at 0 at start-up: an alert written
as `increase(x[5m]) > 0` never fires for a series whose first sample is already 1.
"""

from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, disable_created_metrics
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import choose_encoder
from prometheus_client.registry import Collector
from prometheus_client.utils import floatToGoString

from . import __version__, protocol

# `_created` series double the exposition and no alert or panel here uses them.
disable_created_metrics()  # type: ignore[no-untyped-call]

PREFIX = "gateway_monitor_"
DISCONNECT_REASONS = (
    "closed_by_gateway",
    "gateway_shutdown",
    "connection_lost",
    "heartbeat_timeout",
    "frame_too_large",
    "protocol_error",
    "error",
)
CONNECT_FAILURE_REASONS = (
    "refused",
    "timeout",
    "dns",
    "tls",
    "unauthorized",
    "http_error",
    "key_unavailable",
    "error",
)
INVALID_REASONS = (
    "binary",
    "too_large",
    "invalid_json",
    "not_object",
    "missing_type",
    "wrong_shape",
)
PROBE_ENDPOINTS = ("readyz", "livez", "health")
QUOTE_TIMESTAMP_PROBLEMS = ("missing", "unparseable", "future", "too_old")
# Outages and staleness episodes run from a second to hours.
DURATION_BUCKETS = (0.5, 1, 2, 5, 10, 30, 60, 120, 300, 600, 1800, 3600, 7200)
# Quote ages: milliseconds on a healthy feed; the late-quote alert reads the median around 2 s.
QUOTE_AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 1.5, 2, 3, 5, 10, 30, 60, 300)


class StreamStats:
    """Plain-int counters for the per-frame hot path, exported at scrape time.

    A labelled prometheus_client `.inc()` costs ~5x a dict increment; every frame
    passes through here, so these stay plain Python objects.
    """

    def __init__(self) -> None:
        self.frames: dict[str, int] = dict.fromkeys((*protocol.FRAME_TYPES, protocol.OTHER), 0)
        self.invalid: dict[str, int] = dict.fromkeys(INVALID_REASONS, 0)
        self.last_frame_time = 0.0

    def total_frames(self) -> int:
        return sum(self.frames.values())


class StreamStatsCollector(Collector):
    """Exports StreamStats as regular counter and gauge families."""

    def __init__(self, stats: StreamStats) -> None:
        self._stats = stats

    def describe(self) -> Iterator[Metric]:
        # Lets the registry index these names, which `/metrics?name[]=` filtering needs.
        return self.collect()

    def collect(self) -> Iterator[Metric]:
        frames = CounterMetricFamily(
            PREFIX + "frames_total", "Frames received from the gateway, by type.", labels=["type"]
        )
        for kind, count in self._stats.frames.items():
            frames.add_metric([kind], count)
        yield frames
        invalid = CounterMetricFamily(
            PREFIX + "invalid_frames_total",
            "Frames that could not be used (binary, too large, bad JSON, wrong shape), by reason.",
            labels=["reason"],
        )
        for reason, count in self._stats.invalid.items():
            invalid.add_metric([reason], count)
        yield invalid
        yield GaugeMetricFamily(
            PREFIX + "ws_last_frame_timestamp_seconds",
            "Unix time of the last frame received from the gateway (0 before the first).",
            value=self._stats.last_frame_time,
        )


class Children:
    """`metric.labels(*values)`, remembered: a look-up costs ~0.1 µs instead of ~1 µs.

    For the event path, whose label values are bounded (folded events and codes,
    normalised brokers). A series is removed through `remove`, never behind its back.
    """

    def __init__(self, metric: Any) -> None:
        self._metric = metric
        self._labels = metric.labels
        self._children: dict[tuple[str, ...], Any] = {}

    def __call__(self, *values: str) -> Any:
        child = self._children.get(values)
        if child is None:
            child = self._children[values] = self._labels(*values)
        return child

    def remove(self, *values: str) -> None:
        """Drop the series (a later call creates it anew, at zero)."""
        if self._children.pop(values, None) is not None:
            self._metric.remove(*values)


def _label_value(value: str) -> str:
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r'\"')


class SeriesBlock:
    """A gauge family kept out of the registry, each line formatted once and the block once per change.

    For the per-symbol and per-instrument families: up to MONITOR_MAX_SYMBOL_SERIES samples
    each, where prometheus_client would format every sample on every scrape (~6 µs each, 60 ms
    for 10,000), blocking the event loop. Here a series' label text is formatted when it is
    first set, and the block is joined on the first scrape after a change. The lines are
    valid in both the text format and OpenMetrics.
    """

    def __init__(self, name: str, documentation: str, labelnames: tuple[str, ...]) -> None:
        self.name = PREFIX + name
        self.documentation = documentation
        self._labelnames = labelnames
        self._samples: dict[tuple[str, ...], tuple[float, str]] = {}
        self._block: bytes | None = None

    def set(self, labels: tuple[str, ...], value: float) -> None:
        """Set the series of these label values (in the order of `labelnames`)."""
        sample = self._samples.get(labels)
        if sample is not None:
            if sample[0] == value:
                return
            head = sample[1]
        else:
            named = zip(self._labelnames, labels, strict=True)
            pairs = ",".join(f'{name}="{_label_value(text)}"' for name, text in named)
            head = f"{self.name}{{{pairs}}} "
        self._samples[labels] = (value, head)
        self._block = None

    def remove(self, labels: tuple[str, ...]) -> None:
        """Drop the series (absent ones are ignored)."""
        if self._samples.pop(labels, None) is not None:
            self._block = None

    def get(self, labels: tuple[str, ...]) -> float | None:
        """The value of a series, None when absent."""
        sample = self._samples.get(labels)
        return None if sample is None else sample[0]

    def __len__(self) -> int:
        return len(self._samples)

    def exposition(self) -> bytes:
        """The metric family as exposition text: HELP, TYPE and one line per series."""
        if self._block is None:
            header = f"# HELP {self.name} {self.documentation}\n# TYPE {self.name} gauge\n"
            lines = "".join(f"{head}{_number(value)}\n" for value, head in self._samples.values())
            self._block = (header + lines).encode()
        return self._block


def _number(value: float) -> str:
    return repr(value) if math.isfinite(value) else floatToGoString(value)  # type: ignore[no-untyped-call]


OPENMETRICS_EOF = b"# EOF\n"


class Metrics:
    """The monitor's metric objects: a registry, and the per-symbol and per-instrument blocks."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.stream = StreamStats()
        registry.register(StreamStatsCollector(self.stream))

        def counter(name: str, doc: str, labels: tuple[str, ...] = ()) -> Counter:
            return Counter(PREFIX + name, doc, labels, registry=registry)

        def gauge(name: str, doc: str, labels: tuple[str, ...] = ()) -> Gauge:
            return Gauge(PREFIX + name, doc, labels, registry=registry)

        def histogram(name: str, doc: str, labels: tuple[str, ...]) -> Histogram:
            return Histogram(PREFIX + name, doc, labels, registry=registry, buckets=DURATION_BUCKETS)

        self.ws_connected = gauge("ws_connected", "1 while the WebSocket to the gateway is open.")
        self.ws_connects = counter("ws_connects", "Successful WebSocket upgrades.")
        self.ws_disconnects = counter(
            "ws_disconnects", "WebSocket connections that ended, by reason.", ("reason",)
        )
        self.ws_connect_failures = counter(
            "ws_connect_failures", "Failed connection attempts, by reason.", ("reason",)
        )
        self.ws_unauthorized = gauge(
            "ws_unauthorized", "1 while the gateway rejects the monitor's API key."
        )
        self.ws_consecutive_failures = gauge(
            "ws_consecutive_connect_failures", "Connection attempts failed since the last success."
        )
        self.ws_waiting_for_client = gauge(
            "ws_waiting_for_client",
            "1 while the monitor defers its connection until another client is connected "
            "(MONITOR_WAIT_FOR_CLIENT).",
        )
        self.connection_events = counter(
            "connection_events", "connection frames, by event and broker.", ("event", "broker")
        )
        self.broker_up = gauge(
            "broker_up", "1 while the broker is seen connected, 0 after it dropped.", ("broker",)
        )
        self.broker_connection_failed = gauge(
            "broker_connection_failed",
            "1 after BROKER_CONNECTION_FAILED until the broker is seen up again.",
            ("broker",),
        )
        self.broker_gap = histogram(
            "broker_gap_seconds", "Broker outage length reported by BROKER_RECONNECTED.", ("broker",)
        )
        self.stale_symbols = gauge("stale_symbols", "Symbols currently stale.", ("broker",))
        self.symbol_stale_since = SeriesBlock(
            "symbol_stale_since_timestamp_seconds",
            "When the symbol went stale; present only while it is stale.", ("broker", "symbol"),
        )
        self.symbol_series_dropped = counter(
            "symbol_series_dropped",
            "Stale symbols and instruments not tracked because MONITOR_MAX_SYMBOL_SERIES was reached.",
        )
        self.stale_duration = histogram(
            "stale_duration_seconds", "Length of a staleness episode, observed on FRESH.", ("broker",)
        )
        self.rate_limit_events = counter(
            "rate_limit_events", "rate_limit frames, by event.", ("event",)
        )
        self.rate_limit_remaining = gauge(
            "rate_limit_requests_remaining", "requests_remaining of the last rate_limit frame."
        )
        self.rate_limit_reset = gauge(
            "rate_limit_reset_timestamp_seconds", "reset_at of the last rate_limit frame."
        )
        self.error_events = counter("error_events", "error frames, by code.", ("code",))
        self.last_error = gauge(
            "last_error_timestamp_seconds", "When an error frame with this code last arrived.", ("code",)
        )
        self.account_events = counter("account_events", "account frames, by event.", ("event",))
        self.order_events = counter("order_events", "order frames, by event.", ("event",))
        self.position_events = counter("position_events", "position frames, by event.", ("event",))
        self.probe_success = gauge(
            "probe_success", "1 if the last probe of the gateway endpoint succeeded.", ("endpoint",)
        )
        self.probe_duration = gauge(
            "probe_duration_seconds", "Duration of the last probe of the endpoint.", ("endpoint",)
        )
        self.probe_status = gauge(
            "probe_http_status_code", "HTTP status of the last probe, 0 on transport failure.",
            ("endpoint",),
        )
        self.gateway_degraded = gauge(
            "gateway_degraded", "1 when the gateway's /health reports anything but connected."
        )
        self.gateway_info = gauge(
            "gateway_info", "Version the gateway reports in /health (always 1).", ("version", "git_sha")
        )
        self.gateway_broker_connected = gauge(
            "gateway_broker_connected", "Broker connection state reported by /health.", ("broker",)
        )
        self.gateway_stale_instruments = gauge(
            "gateway_stale_instruments", "Stale instruments reported by /health.", ("broker",)
        )
        self.build_info = gauge("build_info", "Monitor version (always 1).", ("version",))
        # Feed health (monitor/feed.py): what the gateway cannot see about its own market data.
        self.instruments = gauge(
            "instruments", "Instruments tracked for feed health (seen ticking or expected).", ("broker",)
        )
        self.instrument_last_tick = SeriesBlock(
            "instrument_last_tick_timestamp_seconds",
            "Unix time of the instrument's last market-data frame.", ("broker", "symbol"),
        )
        self.instrument_silent_since = SeriesBlock(
            "instrument_silent_since_timestamp_seconds",
            "Present only while the instrument is silent: when its silence began (its last tick, "
            "or the moment from which the monitor would have seen every tick).",
            ("broker", "symbol", "severity"),
        )
        self.silent_instruments = gauge("silent_instruments", "Instruments silent now.", ("broker",))
        self.feed_frozen = gauge(
            "feed_frozen", "1 while every instrument of the broker is silent and the broker is up.",
            ("broker",),
        )
        self.silence_duration = histogram(
            "silence_duration_seconds", "Length of an instrument's silence, observed when it ticks again.",
            ("broker",),
        )
        self.quote_age = Histogram(
            PREFIX + "quote_age_seconds",
            "Age of sampled quotes at arrival: arrival time minus quote.timestamp.", ("broker",),
            registry=registry, buckets=QUOTE_AGE_BUCKETS,
        )
        self.feed_frames_unread = counter(
            "feed_frames_unread",
            "Frames not read for their instrument: past 20,000 in a second feed health samples.",
        )
        self.quote_timestamps_invalid = counter(
            "quote_timestamps_invalid", "Sampled quotes whose timestamp was unusable, by reason.",
            ("reason",),
        )
        self.blocks = [self.symbol_stale_since, self.instrument_last_tick, self.instrument_silent_since]
        self._initialise()

    def expose(self, accept: str = "", names: Sequence[str] = ()) -> tuple[bytes, str]:
        """The /metrics body in the format the Accept header asks for, and its content type.

        `names` restricts the output to those metric names, like prometheus_client's `name[]`.
        """
        encoder, content_type = choose_encoder(accept)
        body = encoder(self.registry.restricted_registry(names) if names else self.registry)
        blocks = b"".join(block.exposition() for block in self.blocks if not names or block.name in names)
        if body.endswith(OPENMETRICS_EOF):
            return body[: -len(OPENMETRICS_EOF)] + blocks + OPENMETRICS_EOF, content_type
        return body + blocks, content_type

    def _initialise(self) -> None:
        for reason in DISCONNECT_REASONS:
            self.ws_disconnects.labels(reason)
        for reason in CONNECT_FAILURE_REASONS:
            self.ws_connect_failures.labels(reason)
        for counter, names in (
            (self.rate_limit_events, protocol.RATE_LIMIT_EVENTS),
            (self.error_events, protocol.ERROR_CODES),
            (self.account_events, protocol.ACCOUNT_EVENTS),
            (self.order_events, protocol.ORDER_EVENTS),
            (self.position_events, protocol.POSITION_EVENTS),
        ):
            for name in (*names, protocol.OTHER):
                counter.labels(name)
        for reason in QUOTE_TIMESTAMP_PROBLEMS:
            self.quote_timestamps_invalid.labels(reason)
        for endpoint in PROBE_ENDPOINTS:
            self.probe_success.labels(endpoint)
            self.probe_duration.labels(endpoint)
            self.probe_status.labels(endpoint)
        self.build_info.labels(__version__).set(1)
