"""Hostile frames over a real socket, and hostile label values through to a real scrape."""

from __future__ import annotations

import asyncio
import random
import shutil
from asyncio.subprocess import PIPE, STDOUT

import aiohttp
import orjson
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families as parse_openmetrics
from support import sample, scrape, wait_for

from monitor import protocol
from monitor.gateway_state import SYMBOL_LABEL_MAX

MAX_FRAME = 4096
BROKER = "alpaca-paper"
DISCONNECT_REASONS = ("closed_by_gateway", "connection_lost", "protocol_error", "error", "frame_too_large")
CRITICAL = [  # (frame, metric, labels): each counted exactly once
    ({"type": "error", "code": "POSITION_UNPROTECTED", "message": "m"},
     "gateway_monitor_error_events_total", {"code": "POSITION_UNPROTECTED"}),
    ({"details": {"leg": "sl"}, "code": "LIQUIDATION", "type": "error", "event_id": "evt_9"},  # type last
     "gateway_monitor_error_events_total", {"code": "LIQUIDATION"}),
    ({"type": "error", "code": "OCO_DOUBLE_EXIT", "message": "ünïcødé ✓", "new_field": [1, 2]},
     "gateway_monitor_error_events_total", {"code": "OCO_DOUBLE_EXIT"}),
    ({"type": "account", "event": "MARGIN_CALL", "account": {"balance": "1e400"}},
     "gateway_monitor_account_events_total", {"event": "MARGIN_CALL"}),
    ({"type": "connection", "event": "BROKER_CONNECTION_FAILED", "broker": "Alpaca_Paper", "error": "e" * 99},
     "gateway_monitor_connection_events_total", {"event": "BROKER_CONNECTION_FAILED", "broker": BROKER}),
]


def invalid_frames(rng: random.Random) -> dict[str, list[tuple[bytes, bool]]]:
    """Frames of every invalid reason: (payload, binary)."""
    liquidation = orjson.dumps({"type": "error", "code": "LIQUIDATION", "message": "m"})
    return {
        "binary": [(rng.randbytes(rng.randint(0, 300)), True), (liquidation, True)],
        "too_large": [(b'{"type":"error","code":"LIQUIDATION","pad":"' + b"x" * MAX_FRAME + b'"}', False),
                      (b'{"type":"quote","pad":"' + b"y" * rng.randint(MAX_FRAME, 15 * MAX_FRAME) + b'"}',
                       False)],
        "invalid_json": [(liquidation[:-1], False), (b'{"type":"error","message":"\xff\xfe"}', False),
                         (b'{"type":"error","code":"LIQUIDATION","n":NaN}', False),
                         (b'{"type":"error","n":1e999}', False), (b"[" * 2000 + b"]" * 2000, False),
                         (bytes(rng.randbytes(50)).replace(b"{", b"("), False), (b"", False)],
        "not_object": [(b"[1,2,3]", False), (b'"POSITION_UNPROTECTED"', False), (b"null", False),
                       (b"123456789012345678901234567890", False)],
        "missing_type": [(b'{"code":"LIQUIDATION"}', False), (b'{"type":null}', False),
                         (b'{"type":["error"]}', False), (b"{}", False)],
        "wrong_shape": [(b'{"type":"connection","event":{"BROKER_CONNECTION_FAILED":1}}', False),
                        (b'{"type":"data_staleness","event":"STALE","symbols":[1,2]}', False),
                        (b'{"type":"rate_limit","event":null}', False)],
    }


async def test_flood_of_invalid_frames_between_critical_frames(simulator, monitor, figures) -> None:
    rng = random.Random(20261121)
    sim = await simulator(queue_size=100_000)  # the test floods faster than any consumer: no drops
    mon = await monitor(sim.url, max_frame_bytes=MAX_FRAME)
    await wait_for(lambda: sample(mon, "gateway_monitor_ws_connected") == 1, what="connection")
    plan: list[tuple[str, bytes, bool]] = []
    critical = [CRITICAL[i % len(CRITICAL)] for i in range(500)]
    plan += [("critical", orjson.dumps(frame), False) for frame, _, _ in critical]
    invalid_sent: dict[str, int] = dict.fromkeys(invalid_frames(rng), 0)
    for _ in range(150):
        for reason, frames in invalid_frames(rng).items():
            payload, binary = rng.choice(frames)
            plan.append((reason, payload, binary))
            invalid_sent[reason] += 1
    plan += [("ping", b'{"type":"ping","timestamp":"2026-01-01T00:00:00Z"}', False)] * 40
    plan += [("quote", b'{"type":"quote","quote":{"symbol":"AAPL"}}', False)] * 1000
    plan += [("other", b'{"type":"galaxy","event":"BIG_BANG"}', False)] * 100
    rng.shuffle(plan)
    for _, payload, binary in plan:
        await sim.broadcast(payload, binary=binary)
    after = [CRITICAL[i % len(CRITICAL)] for i in range(25)]  # nothing later is lost
    for frame, _, _ in after:
        await sim.broadcast(frame)
    expected: dict[tuple[str, tuple[tuple[str, str], ...]], int] = {}
    for _, metric, labels in critical + after:
        key = (metric, tuple(sorted(labels.items())))
        expected[key] = expected.get(key, 0) + 1
    await wait_for(lambda: all(sample(mon, m, **dict(lb)) == n for (m, lb), n in expected.items()),
                   timeout=20, what="every critical frame counted")
    for reason, sent in invalid_sent.items():
        assert sample(mon, "gateway_monitor_invalid_frames_total", reason=reason) == sent, reason
    assert sample(mon, "gateway_monitor_frames_total", type="quote") == 1000
    assert sample(mon, "gateway_monitor_frames_total", type="other") == 100
    await wait_for(lambda: len(sim.received) == 40, what="one pong per JSON ping")
    assert set(sim.received) == {'{"type":"pong"}'}
    assert sample(mon, "gateway_monitor_ws_connects_total") == 1
    assert not any(sample(mon, "gateway_monitor_ws_disconnects_total", reason=r) for r in DISCONNECT_REASONS)
    counted = sum(int(sample(mon, m, **dict(lb))) for m, lb in expected)
    figures.events("critical frames among a shuffled flood of invalid frames (one connection)",
                   injected=sum(expected.values()), counted=counted)
    for reason, sent in invalid_sent.items():
        figures.inputs(f"frame: {reason}", tried=sent, outcome=f"counted as invalid ({reason}), skipped; "
                       "connection kept")


def hostile_strings() -> list[str]:
    return ['quo"te', "back\\slash", "new\nline", "tab\tand\rreturn", "nul\x00byte", "🚀 emoji",
            "x" * 10_000, "\u2028line separator", '} evil="1"', '\\"}\n# HELP fake', "a" * 127 + '"',
            "<script>alert(1)</script>", "", " "]


async def promtool_check(exposition: str) -> tuple[int | None, str]:
    """`promtool check metrics` on a scraped exposition: (exit code, its output)."""
    proc = await asyncio.create_subprocess_exec(promtool(), "check", "metrics", stdin=PIPE, stdout=PIPE,
                                                stderr=STDOUT)
    output, _ = await asyncio.wait_for(proc.communicate(exposition.encode()), 60)
    return proc.returncode, output.decode()


def promtool() -> str:
    path = shutil.which("promtool") or shutil.which("promtool", path="/usr/bin")
    if path is None:
        pytest.fail("promtool not found: run alerts/install-tools.sh (Debian package prometheus)",
                    pytrace=False)
    return path


async def test_hostile_label_values_keep_the_exposition_valid(simulator, monitor, figures) -> None:
    cap = 1000
    sim = await simulator(queue_size=100_000)
    hostile = hostile_strings()
    sim.set_endpoint_override("/health", status=200, body=orjson.dumps(
        {"status": 'degraded"\n', "version": 'v1"\n\\' + "v" * 10_000, "git_sha": '}\n# EOF',
         "providers": [{"platform": s, "connected": True, "stale_instruments": [s]} for s in hostile]}))
    mon = await monitor(sim.url, max_symbol_series=cap)
    await wait_for(lambda: sample(mon, "gateway_monitor_ws_connected") == 1, what="connection")
    for broker in [*hostile, "alpaca-paper", None]:
        await sim.broadcast({"type": "data_staleness", "event": "STALE", "symbols": hostile,
                             "broker": broker})
        await sim.broadcast({"type": "connection", "event": "BROKER_DISCONNECTED", "broker": broker})
    distinct = 1_000_000
    batch = 10_000
    for start in range(0, distinct, batch):
        symbols = [f"S{n}" for n in range(start, start + batch)]
        await sim.broadcast({"type": "data_staleness", "event": "STALE", "symbols": symbols,
                             "broker": protocol.PLATFORMS[start // batch % len(protocol.PLATFORMS)]})
    # Truncated to SYMBOL_LABEL_MAX characters, the hostile strings are these distinct labels per broker.
    hostile_labels = {s[:SYMBOL_LABEL_MAX] for s in hostile}
    # Hostile broker names fold to `other` or `none`: three brokers hold the hostile symbols.
    offered = 3 * len(hostile_labels) + distinct
    await wait_for(lambda: sample(mon, "gateway_monitor_symbol_series_dropped_total") == offered - cap,
                   timeout=40, what="the million symbols")
    await wait_for(lambda: sample(mon, "gateway_monitor_probe_success", endpoint="health") is not None
                   and mon.prober.last_health is not None, what="hostile /health read")
    result = await scrape(mon)
    series = [dict(labels) for name, labels in result.samples
              if name == "gateway_monitor_symbol_stale_since_timestamp_seconds"]
    brokers = {dict(labels)["broker"] for name, labels in result.samples if "broker" in dict(labels)}
    dropped = result.value("gateway_monitor_symbol_series_dropped_total")
    rc, promtool_output = await promtool_check(result.text)
    async with aiohttp.ClientSession() as session:
        async with session.get(f"http://127.0.0.1:{mon.port}/metrics",
                               headers={"Accept": "application/openmetrics-text; version=1.0.0"}) as resp:
            openmetrics = await resp.text()
        async with session.get(f"http://127.0.0.1:{mon.port}/") as resp:
            page_status, page = resp.status, await resp.text()
    families = list(parse_openmetrics(openmetrics))  # raises on an invalid exposition
    figures.inputs("label values: quotes, backslashes, newlines, NUL, 10,000 characters, HTML",
                   tried=len(hostile) * (len(hostile) + 2),
                   outcome=f"promtool check metrics rc={rc}; broker label folded to {len(brokers)} values")
    figures.inputs("distinct stale symbols", tried=offered,
                   outcome=f"{len(series)} series (cap {cap}), {int(dropped or 0)} counted as dropped; "
                           f"exposition {len(result.text) // 1024} KiB")
    assert rc == 0, promtool_output
    assert families and openmetrics.rstrip().endswith("# EOF")
    assert len(series) == cap
    assert dropped == offered - cap
    assert max(len(s["symbol"]) for s in series) <= SYMBOL_LABEL_MAX
    assert brokers <= {*protocol.PLATFORMS, protocol.NO_BROKER, protocol.OTHER}
    assert len(result.text) < 2 * 1024 * 1024  # bounded whatever was offered
    assert page_status == 200 and "<script>alert" not in page
    assert sample(mon, "gateway_monitor_ws_connects_total") == 1


def deep_critical_frame(depth: int = 1000) -> bytes:
    """A LIQUIDATION error whose details nest `depth` levels: under orjson's limit of 1024."""
    return (b'{"type":"error","code":"LIQUIDATION","message":"deep","details":' + b'{"a":' * depth + b"1"
            + b"}" * depth + b"}")


async def deep_frame_run(gateway_process, monitor_process) -> tuple[object, list[str]]:
    gateway = await gateway_process()
    mon = await monitor_process(gateway.url)
    await mon.until("gateway_monitor_ws_connected", 1)
    await gateway.frame(deep_critical_frame())
    await gateway.frame({"type": "error", "code": "LIQUIDATION", "message": "after the deep one"})
    await mon.until("gateway_monitor_error_events_total", 2, code="LIQUIDATION")
    return mon, mon.events()


async def test_a_deeply_nested_critical_frame_is_counted_and_costs_nothing_later(gateway_process,
                                                                              monitor_process) -> None:
    mon, _events = await deep_frame_run(gateway_process, monitor_process)
    assert await mon.value("gateway_monitor_ws_connects_total") == 1
    assert await mon.value("gateway_monitor_invalid_frames_total", reason="invalid_json") == 0


async def test_a_deeply_nested_critical_frame_keeps_its_log_line(gateway_process, monitor_process) -> None:
    _mon, events = await deep_frame_run(gateway_process, monitor_process)
    assert "monitor.frame.handler_failed" not in events
    assert events.count("gateway.error.liquidation") == 2
