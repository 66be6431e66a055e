"""The status page at `/`: content, escaping, no secret, and a real headless-browser render."""

from __future__ import annotations

import asyncio
import shutil
import struct
import zlib
from pathlib import Path

import aiohttp
import pytest
from support import wait_for

from monitor.simulator import SCENARIOS
from monitor.status import Snapshot, render

KEY = "status-page-key-" + "s" * 30
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def test_every_gateway_value_is_escaped() -> None:
    html = render(Snapshot(
        gateway_url="http://gw", connected=False, unauthorized=False, since=None,
        last_change_reason="<script>alert(1)</script>",
        brokers={"<b>x</b>": ("failed", 1.0, "<i>frame</i>")},
        stale={"mock": {'"><img src=x onerror=alert(1)>': 1.0}},
        recent_critical=[{"event": "gateway.error.liquidation", "time": 1.0, "message": "<i>m</i>"}],
    ))
    assert "<script>" not in html and "<img" not in html and "<b>x</b>" not in html and "<i>frame" not in html
    assert "&lt;script&gt;" in html and "&lt;i&gt;m&lt;/i&gt;" in html


async def get_page(port: int) -> str:
    async with aiohttp.ClientSession() as session, session.get(f"http://127.0.0.1:{port}/") as resp:
        assert resp.status == 200
        assert resp.content_type == "text/html"
        return await resp.text()


async def incident_page(simulator, monitor) -> tuple[object, str]:
    sim = await simulator(api_key=KEY)
    mon = await monitor(sim.url, env={"GATEWAY_API_KEY": KEY})
    await wait_for(lambda: mon.handler is not None and sim.client_count == 1, what="connection")
    await SCENARIOS["broker_give_up"](sim, 0.01)
    await sim.broadcast({"type": "data_staleness", "event": "STALE", "symbols": ["AAPL", "EUR/USD"],
                         "broker": "alpaca-paper", "stale_since": "2026-11-21T03:00:00Z"})
    await SCENARIOS["position_unprotected"](sim, 0.01)
    await wait_for(lambda: len(mon.handler.recent_critical) >= 2, what="critical events")
    return mon, await get_page(mon.port)


async def test_page_shows_connection_brokers_stale_symbols_and_critical_events(simulator, monitor) -> None:
    _mon, html = await incident_page(simulator, monitor)
    assert "connected" in html
    assert "alpaca-paper" in html
    assert "AAPL" in html and "EUR/USD" in html and "2026-11-21 03:00:00 UTC" in html
    assert "gateway.error.position_unprotected" in html
    assert "gateway.connection.broker_connection_failed" in html
    assert '<a href="/metrics">' in html
    assert "<script" not in html and "src=" not in html  # self-contained, no assets
    assert KEY not in html


async def test_page_says_why_when_not_connected(monitor) -> None:
    mon = await monitor("http://127.0.0.1:9")
    await wait_for(lambda: mon.observer is not None and mon.observer.state.last_change_reason,
                   what="first failed attempt")
    html = await get_page(mon.port)
    assert "not connected" in html and "refused" in html


def png_is_not_blank(png: bytes) -> bool:
    """Decode enough of the PNG to tell a rendered page from an empty canvas."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat = 8, b""
    width = height = 0
    while pos < len(png):
        length, kind = struct.unpack(">I4s", png[pos:pos + 8])
        chunk = png[pos + 8:pos + 8 + length]
        if kind == b"IHDR":
            width, height = struct.unpack(">II", chunk[:8])
        elif kind == b"IDAT":
            idat += chunk
        pos += 12 + length
    raw = zlib.decompress(idat)
    assert width >= 800 and height >= 600
    return len(set(raw)) > 16  # text, badges and tables give many distinct byte values


@pytest.mark.timeout(120)
async def test_page_renders_in_headless_chromium(simulator, monitor, tmp_path: Path) -> None:
    chromium = shutil.which("chromium")
    assert chromium, "chromium is missing: run `make tools` (installs Debian's chromium)"
    mon, _html = await incident_page(simulator, monitor)
    url = f"http://127.0.0.1:{mon.port}/"
    common = [*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"]
    dom = await asyncio.create_subprocess_exec(chromium, *common, "--dump-dom", url,
                                               stdout=asyncio.subprocess.PIPE,
                                               stderr=asyncio.subprocess.DEVNULL)
    out, _ = await asyncio.wait_for(dom.communicate(), timeout=60)
    rendered = out.decode()
    assert "Stale symbols (2)" in rendered and "gateway.error.position_unprotected" in rendered
    assert KEY not in rendered
    shot = tmp_path / "status.png"
    proc = await asyncio.create_subprocess_exec(chromium, *common, f"--screenshot={shot}",
                                                "--window-size=1000,900", url,
                                                stdout=asyncio.subprocess.DEVNULL,
                                                stderr=asyncio.subprocess.DEVNULL)
    await asyncio.wait_for(proc.wait(), timeout=60)
    assert png_is_not_blank(shot.read_bytes())
    shutil.copy(shot, Path("/tmp/gateway-monitor-status.png"))
