"""The real `gateway-monitor` process: JSON logs, secrets kept, clean SIGTERM."""

from __future__ import annotations

import asyncio
import json
import signal
import sys
import time
from pathlib import Path

from harness.net import free_port
from support import get_metrics, wait_for

KEY = "process-test-key-" + "z" * 30
OLD_KEY = "process-old-key-" + "o" * 30


async def start_monitor(
    gateway_url: str, port: int, env: dict[str, str], log: Path
) -> asyncio.subprocess.Process:
    with log.with_suffix(".out").open("wb") as out, log.open("wb") as err:
        return await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "--gateway-url", gateway_url, "--listen", f"127.0.0.1:{port}",
            "--probe-interval-seconds", "0.2", "--probe-timeout-seconds", "0.2",
            "--reconnect-initial-seconds", "0.05", "--reconnect-max-seconds", "0.2",
            env={"PATH": "/usr/bin:/bin", "LOG_FORMAT": "json", "LOG_LEVEL": "debug", **env},
            stdout=out, stderr=err,
        )


async def poll_metric(port: int, name: str, expected: float, timeout: float = 10.0, **labels: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = await get_metrics(port)
        if result is not None and result.value(name, **labels) == expected:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{name}{labels} never became {expected}")


async def test_json_logs_secret_kept_and_clean_sigterm(simulator, tmp_path: Path) -> None:
    sim = await simulator(api_key=KEY)
    key_file = tmp_path / "key"
    key_file.write_text(OLD_KEY)
    port = free_port()
    log = tmp_path / "monitor.log"
    proc = await start_monitor(sim.url, port, {"GATEWAY_API_KEY_FILE": str(key_file),
                                               "MONITOR_UNAUTHORIZED_RETRY_SECONDS": "30"}, log)
    try:
        await poll_metric(port, "gateway_monitor_ws_unauthorized", 1)
        key_file.write_text(KEY + "\n")  # the Secret is rotated to the key the gateway accepts
        await poll_metric(port, "gateway_monitor_ws_connected", 1)
        await sim.broadcast(b"{broken " + KEY.encode())  # a frame that echoes the key back
        await sim.broadcast({"type": "error", "code": "UNAUTHORIZED", "message": f"bad key {KEY}"})
        await poll_metric(port, "gateway_monitor_error_events_total", 1, code="UNAUTHORIZED")
        metrics_text = (await get_metrics(port)).text
        sent_at = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        await asyncio.wait_for(proc.wait(), timeout=5)
        stopped_in = time.monotonic() - sent_at
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert proc.returncode == 0
    assert stopped_in < 2.0
    stdout, stderr = log.with_suffix(".out").read_text(), log.read_text()
    lines = [json.loads(line) for line in stderr.splitlines() if line.strip()]
    events = [line["event"] for line in lines]
    for expected in ("monitor.started", "monitor.ws.unauthorized", "monitor.ws.connected",
                     "monitor.frame.invalid", "gateway.error.unauthorized"):
        assert expected in events
    assert lines[-1]["event"] == "monitor.stopped" and lines[-1]["reason"] == "received SIGTERM"
    assert all({"timestamp", "level", "event"} <= line.keys() for line in lines)
    for channel in (stdout, stderr, metrics_text):
        assert KEY not in channel
        assert OLD_KEY not in channel
    assert "<redacted>" in stderr
    await wait_for(lambda: sim.client_count == 0, what="monitor's socket closed at the simulator")
