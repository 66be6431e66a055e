"""Log rendering: one JSON shape for structlog and stdlib records, secrets redacted everywhere."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator

import pytest
import structlog

from monitor import logs, redaction

SECRET = "log-test-secret-" + "w" * 30


@pytest.fixture
def stream() -> Iterator[io.StringIO]:
    out = io.StringIO()
    logs.configure("debug", "json", stream=out)
    redaction.register(SECRET)
    yield out
    structlog.reset_defaults()
    logging.getLogger().handlers.clear()


def lines(out: io.StringIO) -> list[dict[str, object]]:
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_structlog_and_stdlib_lines_share_one_shape(stream: io.StringIO) -> None:
    structlog.get_logger("monitor.test").warning("gateway.error.liquidation", code="LIQUIDATION")
    logging.getLogger("aiohttp.client").error("connection to %s failed", "gw")
    first, second = lines(stream)
    assert first["event"] == "gateway.error.liquidation" and first["level"] == "warning"
    assert first["logger"] == "monitor.test" and first["code"] == "LIQUIDATION"
    assert second["event"] == "connection to gw failed" and second["level"] == "error"
    assert second["logger"] == "aiohttp.client"
    assert {"timestamp", "level", "event", "logger"} <= first.keys() & second.keys()


def test_secret_is_redacted_from_values_nested_values_and_exceptions(stream: io.StringIO) -> None:
    log = structlog.get_logger("monitor.test")
    log.info("x", message=f"key={SECRET}", details={"headers": [f"Bearer {SECRET}"]})
    logging.getLogger("aiohttp").warning("upgrade with %s", SECRET)
    try:
        raise RuntimeError(f"boom {SECRET}")
    except RuntimeError:
        log.exception("monitor.ws.unexpected_error")
    text = stream.getvalue()
    assert SECRET not in text
    assert text.count("<redacted>") >= 4


def test_level_filter(stream: io.StringIO) -> None:
    logs.configure("warning", "json", stream=stream)
    structlog.get_logger("m").info("quiet")
    structlog.get_logger("m").error("loud")
    assert [line["event"] for line in lines(stream)] == ["loud"]
