"""Log rendering: one JSON shape for structlog and stdlib records, secrets redacted everywhere."""

from __future__ import annotations

import asyncio
import io
import json
import logging
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

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


def test_secret_is_redacted_as_json_escapes_it_and_from_keys() -> None:
    odd = 'odd"secret\\with-escapes-' + "q" * 20
    out = io.StringIO()
    logs.configure("info", "json", stream=out)
    redaction.register(odd)
    try:
        structlog.get_logger("m").info("x", message=odd, details={odd: 1})
        logging.getLogger("aiohttp").warning("upgrade with %s", odd)
    finally:
        structlog.reset_defaults()
        logging.getLogger().handlers.clear()
    text = out.getvalue()
    assert "odd" not in text
    assert [json.loads(line)["event"] for line in text.splitlines()] == ["x", "upgrade with <redacted>"]


def test_lines_keep_their_order_on_a_real_file_stream(tmp_path: Path) -> None:
    # structlog's lines go to the file's binary layer, stdlib records through its text layer.
    with (tmp_path / "log").open("w") as stream:
        logs.configure("info", "json", stream=stream)
        try:
            for i in range(50):
                structlog.get_logger("ours").info("ours", i=i)
                logging.getLogger("theirs").warning("theirs %d", i)
        finally:
            structlog.reset_defaults()
            logging.getLogger().handlers.clear()
    parsed = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert [(p["logger"], p["event"]) for p in parsed] == [
        pair for i in range(50) for pair in (("ours", "ours"), ("theirs", f"theirs {i}"))]


def test_timestamp_is_iso_utc_with_microseconds_and_current() -> None:
    stamp = logs.UTCTimestamp()
    for _ in range(3):  # the first call formats the second, the next ones reuse it
        before = time.time()
        text = stamp(None, "info", {})["timestamp"]
        after = time.time()
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", text), text
        moment = datetime.strptime(text, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC).timestamp()
        assert before - 1e-6 <= moment <= after + 1e-6


async def test_routine_lines_are_flushed_after_the_callback_and_critical_ones_at_once(tmp_path: Path) -> None:
    path = tmp_path / "log"
    with path.open("w") as stream:
        logs.configure("info", "json", stream=stream)
        try:
            log = structlog.get_logger("monitor.events")
            log.info("routine.one")
            log.warning("routine.two")
            assert path.read_text() == ""  # one write for the burst, when this callback yields
            await asyncio.sleep(0)
            assert [json.loads(line)["event"] for line in path.read_text().splitlines()] == [
                "routine.one", "routine.two"]
            log.info("routine.three")
            log.error("gateway.error.liquidation")  # written out with what came before it
            assert [json.loads(line)["event"] for line in path.read_text().splitlines()][2:] == [
                "routine.three", "gateway.error.liquidation"]
        finally:
            structlog.reset_defaults()
            logging.getLogger().handlers.clear()


def test_a_loop_that_closed_before_its_flush_does_not_hold_back_later_lines(tmp_path: Path) -> None:
    path = tmp_path / "log"

    def events() -> list[str]:
        return [json.loads(line)["event"] for line in path.read_text().splitlines()]

    with path.open("w") as stream:
        logs.configure("info", "json", stream=stream)
        try:
            log = structlog.get_logger("monitor.events")

            async def log_and_stop() -> None:
                log.info("first")
                asyncio.get_running_loop().stop()  # the flush queued for "first" never runs

            loop = asyncio.new_event_loop()
            task = loop.create_task(log_and_stop())
            loop.run_forever()
            assert task.done()
            loop.close()
            assert events() == []

            async def next_loop() -> None:
                log.info("second")
                await asyncio.sleep(0)
                assert events() == ["first", "second"]

            asyncio.run(next_loop())
        finally:
            structlog.reset_defaults()
            logging.getLogger().handlers.clear()
