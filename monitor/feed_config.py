"""The feed-health settings that are lists: silence overrides and the gateway's SUBSCRIPTIONS.

Both arrive as YAML (a list in the config file) or as JSON text (an environment variable or a
flag). Every problem is reported with the others, written for an operator.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import yaml

from . import protocol

SEVERITIES = ("warning", "critical")
_OVERRIDE_NUMBERS = ("floor_seconds", "multiple", "threshold_seconds")
_OVERRIDE_KEYS = frozenset({"broker", "instrument", "severity", "enabled", *_OVERRIDE_NUMBERS})
_TIMEFRAME_SECONDS = {"1m": 60, "2m": 120, "5m": 300, "10m": 600, "15m": 900, "30m": 1800, "1h": 3600,
                      "2h": 7200, "4h": 14400, "12h": 43200, "1d": 86400, "1w": 604800}
# The gateway's own spellings of market-data events (its subscription filter): quotes tick at
# the market's pace, candles once per bar.
_QUOTE_EVENTS = frozenset({"*", "quote", "quotes"})
_ALL_CANDLES = frozenset({"candle_*", "bars", "bar"})
INSTRUMENT_MAX = 50
"""The gateway refuses longer instrument patterns."""


@dataclass(frozen=True)
class SilenceOverride:
    """Silence settings for a broker, or for one instrument of it; None keeps the default."""

    broker: str
    instrument: str | None = None
    floor_seconds: float | None = None
    multiple: float | None = None
    threshold_seconds: float | None = None
    severity: str | None = None
    enabled: bool | None = None


@dataclass(frozen=True)
class Subscription:
    """One entry of the gateway's SUBSCRIPTIONS that streams market data."""

    platform: str
    instrument: str
    min_interval: float
    """The longest a healthy feed may stay quiet by construction: 0 for quotes, else the bar."""


def parse_list(value: Any, source: str, problems: list[str]) -> list[Any]:
    """A YAML list as it is, or JSON/YAML text holding one."""
    if isinstance(value, str):
        try:
            value = yaml.safe_load(value) if value.strip() else []
        except yaml.YAMLError as err:
            problems.append(f"{source} is not valid JSON or YAML: {err}")
            return []
    if value is None:
        return []
    if not isinstance(value, list):
        problems.append(f"{source} must be a list (JSON in the environment), got {value!r:.200}")
        return []
    return value


def overrides(value: Any, source: str, problems: list[str]) -> tuple[SilenceOverride, ...]:
    """Validate the silence overrides (MONITOR_SILENCE_OVERRIDES)."""
    found: list[SilenceOverride] = []
    for index, entry in enumerate(parse_list(value, source, problems)):
        where = f"{source}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be a mapping such as {{broker: saxo-live, instrument: EURUSD}}")
            continue
        before = len(problems)
        unknown = sorted(set(entry) - _OVERRIDE_KEYS)
        if unknown:
            problems.append(f"{where}: unknown key(s) {unknown}; known: {sorted(_OVERRIDE_KEYS)}")
        broker = _platform(entry.get("broker"), f"{where}.broker", problems)
        instrument = entry.get("instrument")
        if instrument is not None and (not isinstance(instrument, str) or not instrument):
            problems.append(f"{where}.instrument must be a non-empty string, got {instrument!r}")
        numbers = {key: _positive(entry.get(key), f"{where}.{key}", problems) for key in _OVERRIDE_NUMBERS}
        if numbers["multiple"] is not None and numbers["multiple"] < 1:
            problems.append(f"{where}.multiple must be at least 1, got {numbers['multiple']!r}")
        severity = entry.get("severity")
        if severity is not None and severity not in SEVERITIES:
            problems.append(f"{where}.severity must be one of {', '.join(SEVERITIES)}, got {severity!r}")
        enabled = entry.get("enabled")
        if enabled is not None and not isinstance(enabled, bool):
            problems.append(f"{where}.enabled must be true or false, got {enabled!r}")
        if len(problems) == before and broker is not None:
            found.append(SilenceOverride(broker, instrument, severity=severity, enabled=enabled, **numbers))
    return tuple(found)


def subscriptions(value: Any, source: str, problems: list[str]) -> tuple[Subscription, ...]:
    """The market-data entries of the gateway's SUBSCRIPTIONS, checked as the gateway checks them.

    Unknown keys are ignored, as the gateway ignores them; an entry for every instrument
    ("*") names no instrument to expect and is skipped.
    """
    found: list[Subscription] = []
    for index, entry in enumerate(parse_list(value, source, problems)):
        where = f"{source}[{index}]"
        if not isinstance(entry, dict):
            problems.append(f"{where} must be an object with platform, instrument and events")
            continue
        platform = _platform(entry.get("platform"), f"{where}.platform", problems)
        instrument, events = entry.get("instrument"), entry.get("events")
        if not isinstance(instrument, str) or not 1 <= len(instrument) <= INSTRUMENT_MAX:
            problems.append(f"{where}.instrument must be a string of 1-{INSTRUMENT_MAX} characters, "
                            f"got {instrument!r}")
            continue
        if not isinstance(events, list) or not events or not all(isinstance(e, str) for e in events):
            problems.append(f"{where}.events must be a non-empty list of event names, got {events!r}")
            continue
        interval = min_interval(events)
        if platform is not None and instrument != "*" and interval is not None:
            found.append(Subscription(platform, instrument, interval))
    return tuple(found)


def min_interval(events: list[str]) -> float | None:
    """Seconds a healthy feed of these events may be quiet by design; None for no market data."""
    if any(event in _QUOTE_EVENTS for event in events):
        return 0.0
    bars = [_TIMEFRAME_SECONDS.get(_timeframe(event), 0) for event in events]
    if any(event in _ALL_CANDLES for event in events):
        bars.append(_TIMEFRAME_SECONDS["1m"])
    bars = [bar for bar in bars if bar]
    return float(min(bars)) if bars else None


def _timeframe(event: str) -> str:
    for prefix in ("candle_", "candles."):
        if event.startswith(prefix):
            return event[len(prefix):]
    return ""


def _platform(value: Any, where: str, problems: list[str]) -> str | None:
    platform = protocol.normalise_broker(value) if isinstance(value, str) else protocol.OTHER
    if platform in (protocol.OTHER, protocol.NO_BROKER):
        problems.append(f"{where} must be a platform id such as saxo-live or alpaca-paper, got {value!r}")
        return None
    return platform


def _positive(value: Any, where: str, problems: list[str]) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        problems.append(f"{where} must be a number above 0, got {value!r}")
        return None
    return float(value)
