"""Prometheus and Alertmanager durations ("1m30s", "500ms") as the harnesses read and write them."""

from __future__ import annotations

import re

DURATION = re.compile(r"^(?:\d+(?:ms|s|m|h|d|w|y))+$")
_PART = re.compile(r"(\d+)(ms|s|m|h|d|w|y)")
_UNIT = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}


def seconds(duration: str) -> float:
    """A Prometheus/Alertmanager duration ("1m30s") in seconds."""
    if not DURATION.match(duration):
        raise ValueError(f"{duration!r} is not a duration such as 30s or 5m")
    return sum(int(n) * _UNIT[unit] for n, unit in _PART.findall(duration))


def duration(value: float) -> str:
    """Seconds as a duration both Prometheus and Alertmanager parse (whole ms)."""
    ms = round(value * 1000)
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"
