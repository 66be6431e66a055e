"""Prototypes of cheaper logging set-ups, to measure the proposals in the report.

NOT used by the monitor: monitor/logs.py is the only place logging is configured. These
functions stand in for it in tests/bench/hotpath.py (`--log-variant`), so the figures of
each proposal come from the same harness as the rest:

  current  monitor.logs.configure as it is
  filter   + level filtering before the processors (structlog's filtering bound logger):
           a debug call at level info costs a method call instead of the whole chain
  direct   + structlog's own events rendered by structlog straight to the stream (orjson,
           one write per line), without a stdlib LogRecord; stdlib/aiohttp records keep the
           ProcessorFormatter path, so every line keeps one shape
  sample   + repeats of one warning/info event beyond BURST a second are counted, not written;
           the next line written for that event carries `suppressed=N`. error and above
           (the critical events) are never sampled.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import MutableMapping
from typing import Any

import orjson
import structlog

from monitor import logs

BURST = 20
WINDOW_SECONDS = 1.0
NEVER_SAMPLED = frozenset({"error", "critical", "exception"})


class LineWriter:
    """A structlog logger that writes pre-rendered bytes lines; carries a name for add_logger_name."""

    def __init__(self, name: str, stream: Any) -> None:
        self.name = name
        self._stream = stream

    def msg(self, line: bytes) -> None:
        self._stream.write(line + b"\n")
        self._stream.flush()

    debug = info = warning = warn = error = critical = exception = fatal = log = msg


class LineWriterFactory:
    def __init__(self, stream: Any) -> None:
        self._stream = stream

    def __call__(self, *args: Any) -> LineWriter:
        return LineWriter(str(args[0]) if args else "", self._stream)


class SampleRepeats:
    """structlog processor: at most BURST lines per event name per WINDOW, errors always kept."""

    def __init__(self, burst: int = BURST, window: float = WINDOW_SECONDS) -> None:
        self._burst, self._window = burst, window
        self._seen: dict[str, list[float]] = {}  # event -> [window start, written, suppressed]
        self.suppressed_total = 0

    def __call__(self, _logger: Any, method: str, event_dict: MutableMapping[str, Any]
                 ) -> MutableMapping[str, Any]:
        if method in NEVER_SAMPLED:
            return event_dict
        name = str(event_dict.get("event"))
        now = time.monotonic()
        state = self._seen.get(name)
        if state is None or now - state[0] >= self._window:
            if state is not None and state[2]:
                event_dict["suppressed"] = int(state[2])
            self._seen[name] = [now, 1, 0]
            return event_dict
        if state[1] < self._burst:
            state[1] += 1
            return event_dict
        state[2] += 1
        self.suppressed_total += 1
        raise structlog.DropEvent


def configure(variant: str, level: str, stream: Any) -> None:
    """Configure logging as `variant` (see the module docstring), writing to `stream`."""
    logs.configure(level, "json", stream=stream)
    if variant == "current":
        return
    level_no = logging.getLevelName(level.upper())
    config = structlog.get_config()
    if variant == "filter":
        structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(level_no))
        return
    binary = getattr(stream, "buffer", None) or sys.stderr.buffer
    processors: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        logs.redact_secrets,
        structlog.processors.JSONRenderer(serializer=orjson.dumps),
    ]
    if variant == "sample":
        processors.insert(0, SampleRepeats())
    elif variant != "direct":
        raise ValueError(variant)
    structlog.configure(
        processors=processors,
        wrapper_class=structlog.make_filtering_bound_logger(level_no),
        logger_factory=LineWriterFactory(binary),
        cache_logger_on_first_use=config["cache_logger_on_first_use"],
    )
