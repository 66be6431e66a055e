"""The gateway's own /metrics, rendered the way the real gateway's exporter renders them.

Which metrics, of which type and labels: the table of monitor/gateway_metric_catalog.py. Deliberately
not prometheus_client: the real exposition has no `# HELP` lines, and a labelled series exists
only from its first increment, which is what alerts must cope with.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from monitor.gateway_metric_catalog import CONNECTIONS_ACTIVE, COUNTER, GATEWAY_METRICS, HISTOGRAM
from monitor.gateway_metric_catalog import SLOW_CONSUMER as SLOW_CONSUMER  # the simulator's server counts it

BUCKETS: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)

LabelKey = tuple[tuple[str, str], ...]


@dataclass
class _Histogram:
    counts: list[int] = field(default_factory=lambda: [0] * len(BUCKETS))
    total: float = 0.0
    samples: int = 0

    def observe(self, value: float) -> None:
        for i, bound in enumerate(BUCKETS):
            if value <= bound:
                self.counts[i] += 1
        self.total += value
        self.samples += 1


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _labels(key: LabelKey, extra: tuple[tuple[str, str], ...] = ()) -> str:
    pairs = (*key, *extra)
    if not pairs:
        return ""
    return "{" + ",".join(f'{name}="{_escape(value)}"' for name, value in pairs) + "}"


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else repr(float(value))


class GatewayMetrics:
    """Counters, gauges and histograms keyed by name and label set."""

    def __init__(self, connections_active: Callable[[], int]) -> None:
        self._connections_active = connections_active
        self._values: dict[str, dict[LabelKey, float]] = {}
        self._histograms: dict[str, dict[LabelKey, _Histogram]] = {}

    def inc(self, name: str, labels: dict[str, str] | None = None, value: float = 1) -> None:
        """Add `value` to a counter (or observe it, for a histogram); creates the series."""
        known = GATEWAY_METRICS.get(name)
        kind, label_names = (known.kind, known.labels) if known else (COUNTER, tuple(sorted(labels or {})))
        if name == CONNECTIONS_ACTIVE:
            raise ValueError(f"{name} follows the connected clients; it cannot be set")
        if set(labels or {}) != set(label_names):
            raise ValueError(f"{name} takes labels {list(label_names)}, got {sorted(labels or {})}")
        key: LabelKey = tuple((n, (labels or {})[n]) for n in label_names)
        if kind == HISTOGRAM:
            self._histograms.setdefault(name, {}).setdefault(key, _Histogram()).observe(value)
            return
        series = self._values.setdefault(name, {})
        series[key] = series.get(key, 0.0) + value

    def value(self, name: str, labels: dict[str, str] | None = None) -> float | None:
        """Return a counter's current value, or None while the series does not exist."""
        if name == CONNECTIONS_ACTIVE:
            return float(self._connections_active())
        labels = labels or {}
        for key, current in self._values.get(name, {}).items():
            if dict(key) == labels:
                return current
        return None

    def render(self) -> str:
        """Render the Prometheus text exposition (TYPE lines, no HELP lines)."""
        lines = [
            f"# TYPE {CONNECTIONS_ACTIVE} gauge",
            f"{CONNECTIONS_ACTIVE} {self._connections_active()}",
        ]
        for name in sorted(self._values):
            kind = GATEWAY_METRICS[name].kind if name in GATEWAY_METRICS else COUNTER
            lines.append(f"# TYPE {name} {kind}")
            for key, current in sorted(self._values[name].items()):
                lines.append(f"{name}{_labels(key)} {_number(current)}")
        for name in sorted(self._histograms):
            lines.append(f"# TYPE {name} histogram")
            for key, hist in sorted(self._histograms[name].items(), key=lambda kv: kv[0]):
                lines.extend(self._render_histogram(name, key, hist))
        return "\n".join(lines) + "\n"

    @staticmethod
    def _render_histogram(name: str, key: LabelKey, hist: _Histogram) -> list[str]:
        lines = [
            f"{name}_bucket{_labels(key, (('le', repr(bound)),))} {count}"
            for bound, count in zip(BUCKETS, hist.counts, strict=True)
        ]
        lines.append(f"{name}_bucket{_labels(key, (('le', '+Inf'),))} {hist.samples}")
        lines.append(f"{name}_sum{_labels(key)} {_number(hist.total)}")
        lines.append(f"{name}_count{_labels(key)} {hist.samples}")
        return lines
