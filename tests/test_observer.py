"""The monitor against a real simulated gateway over loopback sockets."""

from __future__ import annotations

import asyncio
from pathlib import Path

import orjson
from structlog.testing import capture_logs
from support import sample, scrape, wait_for

from monitor.simulator import SCENARIOS

KEY = "secret-key-" + "x" * 30
OTHER_KEY = "rotated-key-" + "y" * 30


def connected(mon) -> bool:
    return sample(mon, "gateway_monitor_ws_connected") == 1


async def test_connected_on_upgrade_without_a_connected_frame(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: connected(mon), what="ws_connected == 1")
    result = await scrape(mon)
    assert result.value("gateway_monitor_ws_connects_total") == 1
    assert result.value("gateway_monitor_frames_total", type="connection") == 0


async def test_sends_the_key_as_bearer_header(simulator, monitor) -> None:
    sim = await simulator(api_key=KEY)
    mon = await monitor(sim.url, env={"GATEWAY_API_KEY": KEY})
    await wait_for(lambda: connected(mon), what="authenticated connection")
    assert sim.unauthorized_attempts == 0


async def test_reconnects_with_backoff_after_the_gateway_closes(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: connected(mon))
    await sim.close_clients(code=1000)
    await wait_for(lambda: sample(mon, "gateway_monitor_ws_connects_total") == 2, what="reconnect")
    assert sample(mon, "gateway_monitor_ws_disconnects_total", reason="closed_by_gateway") == 1


async def test_refused_connections_back_off_then_recover(simulator, monitor) -> None:
    sim = await simulator()
    await sim.go_down()
    mon = await monitor(sim.url)
    await wait_for(lambda: (sample(mon, "gateway_monitor_ws_connect_failures_total", reason="refused")
                            or 0) >= 3, what="refused attempts")
    # reconnect_max_seconds=0.2: attempts are spaced by full-jitter waits, never a tight loop.
    failures_before = sample(mon, "gateway_monitor_ws_connect_failures_total", reason="refused")
    assert sample(mon, "gateway_monitor_ws_consecutive_connect_failures") >= 3
    await sim.come_up()
    took = await wait_for(lambda: connected(mon), what="recovery")
    assert took < 0.5  # within one maximum backoff interval (0.2 s) plus connect time
    assert sample(mon, "gateway_monitor_ws_consecutive_connect_failures") == 0
    assert failures_before < 60


async def test_unauthorized_no_tight_loop_then_key_file_rotation(simulator, monitor, tmp_path: Path) -> None:
    sim = await simulator(api_key=OTHER_KEY)
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")
    with capture_logs() as logs:
        mon = await monitor(sim.url, api_key_file=str(key_file), unauthorized_retry_seconds=30.0)
        await wait_for(lambda: sample(mon, "gateway_monitor_ws_unauthorized") == 1, what="unauthorized")
        await asyncio.sleep(1.5)
        assert sim.unauthorized_attempts == 1  # retry is 30 s away: no loop
        key_file.write_text(OTHER_KEY + "\n")
        took = await wait_for(lambda: connected(mon), timeout=3.0, what="recovery after rotation")
    assert took < 1.5  # the key file is polled every second
    assert sample(mon, "gateway_monitor_ws_unauthorized") == 0
    assert sample(mon, "gateway_monitor_ws_connect_failures_total", reason="unauthorized") == 1
    assert [e["event"] for e in logs if e["event"].startswith("monitor.ws.")].count(
        "monitor.ws.unauthorized") == 1
    for entry in logs:
        assert KEY not in repr(entry) and OTHER_KEY not in repr(entry)


async def test_graceful_shutdown_is_recorded_as_such(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url)
    await wait_for(lambda: connected(mon))
    await sim.graceful_shutdown(down_seconds=0.5)
    await wait_for(lambda: sample(mon, "gateway_monitor_ws_disconnects_total",
                                  reason="gateway_shutdown") == 1, what="graceful disconnect")
    await wait_for(lambda: sample(mon, "gateway_monitor_probe_success", endpoint="readyz") == 0,
                   what="readyz probe failing while down")
    await wait_for(lambda: connected(mon), timeout=5, what="reconnect after restart")
    await wait_for(lambda: sample(mon, "gateway_monitor_probe_success", endpoint="readyz") == 1)
    assert sample(mon, "gateway_monitor_connection_events_total", event="DISCONNECTING", broker="none") == 1


async def test_half_open_socket_detected_by_heartbeat(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url, heartbeat_seconds=0.3)
    await wait_for(lambda: connected(mon))
    sim.black_hole(True)
    took = await wait_for(lambda: not connected(mon), timeout=3, what="heartbeat timeout")
    assert took <= 0.3 * 1.5 + 0.3  # the documented bound, plus scheduling slack
    assert sample(mon, "gateway_monitor_ws_disconnects_total", reason="heartbeat_timeout") == 1
    sim.black_hole(False)
    await wait_for(lambda: connected(mon), what="reconnect after black hole")


async def test_json_ping_gets_a_pong_and_nothing_else_is_ever_sent(simulator, monitor) -> None:
    sim = await simulator(backtest=True)
    mon = await monitor(sim.url)
    await wait_for(lambda: connected(mon))
    await sim.broadcast({"type": "ping", "timestamp": "2025-01-01T00:00:00Z"})
    for name in ("orders", "position_unprotected", "broker_outage"):
        await SCENARIOS[name](sim, 0.01)
    await wait_for(lambda: sim.received, what="pong")
    await wait_for(lambda: sample(mon, "gateway_monitor_error_events_total",
                                  code="POSITION_UNPROTECTED") == 1)
    assert [orjson.loads(m) for m in sim.received] == [{"type": "pong"}]


async def test_binary_and_oversized_frames_do_not_cost_the_connection(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url, max_frame_bytes=4096)
    await wait_for(lambda: connected(mon))
    await sim.broadcast(b"\x00\x01binary", binary=True)
    await sim.broadcast(orjson.dumps({"type": "error", "code": "LIQUIDATION", "pad": "x" * 10_000}))
    await sim.broadcast(b"{not json")
    await sim.broadcast({"type": "error", "code": "LIQUIDATION", "message": "after the junk"})
    await wait_for(lambda: sample(mon, "gateway_monitor_error_events_total", code="LIQUIDATION") == 1)
    assert sample(mon, "gateway_monitor_invalid_frames_total", reason="binary") == 1
    assert sample(mon, "gateway_monitor_invalid_frames_total", reason="too_large") == 1
    assert sample(mon, "gateway_monitor_invalid_frames_total", reason="invalid_json") == 1
    assert sample(mon, "gateway_monitor_ws_connects_total") == 1


async def test_frame_beyond_the_transport_limit_drops_only_the_connection(simulator, monitor) -> None:
    sim = await simulator()
    mon = await monitor(sim.url, max_frame_bytes=1024)
    await wait_for(lambda: connected(mon))
    await sim.broadcast(b'{"type":"quote","pad":"' + b"x" * 20_000 + b'"}')
    await wait_for(lambda: sample(mon, "gateway_monitor_ws_disconnects_total",
                                  reason="frame_too_large") == 1, what="transport limit")
    await wait_for(lambda: sample(mon, "gateway_monitor_ws_connects_total") == 2, what="reconnect")
    assert sample(mon, "gateway_monitor_invalid_frames_total", reason="too_large") == 1
