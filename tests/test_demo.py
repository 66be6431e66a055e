"""`gateway-monitor demo`, as a new user runs it: metrics move within one scenario cycle."""

from __future__ import annotations

import asyncio
import signal
import sys
import time
from pathlib import Path

from harness.net import free_port
from support import get_metrics


async def test_demo_shows_every_kind_of_event_within_one_cycle(tmp_path: Path) -> None:
    port, gateway_port = free_port(), free_port()
    log = tmp_path / "demo.log"
    with log.open("wb") as out:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "monitor", "demo", "--listen", f"127.0.0.1:{port}",
            "--gateway-listen", f"127.0.0.1:{gateway_port}", "--pause", "0.1",
            stdout=out, stderr=asyncio.subprocess.STDOUT, env={"PATH": "/usr/bin:/bin"},
        )
    wanted = {
        ("gateway_monitor_ws_connected", ()): 1,
        ("gateway_monitor_connection_events_total",
         (("broker", "alpaca-paper"), ("event", "BROKER_CONNECTION_FAILED"))): 1,
        ("gateway_monitor_stale_duration_seconds_count", (("broker", "alpaca-paper"),)): 1,
        ("gateway_monitor_rate_limit_events_total", (("event", "RATE_LIMIT_HIT"),)): 1,
        ("gateway_monitor_error_events_total", (("code", "POSITION_UNPROTECTED"),)): 1,
        ("gateway_monitor_frames_total", (("type", "quote"),)): 1,
        ("gateway_monitor_probe_success", (("endpoint", "readyz"),)): 1,
    }
    missing = dict(wanted)
    try:
        deadline = time.monotonic() + 30
        while missing and time.monotonic() < deadline:
            result = await get_metrics(port)
            if result is not None:
                missing = {key: least for key, least in missing.items()
                           if (result.samples.get(key) or 0) < least}
            await asyncio.sleep(0.2)
        proc.send_signal(signal.SIGINT)
        await asyncio.wait_for(proc.wait(), timeout=10)
    finally:
        if proc.returncode is None:
            proc.kill()
            await proc.wait()
    assert missing == {}, log.read_text()[-3000:]
    assert proc.returncode == 0
    text = log.read_text()
    assert f"http://127.0.0.1:{port}/metrics" in text  # tells the user where to look
