"""What TLS and basic auth cost a /metrics scrape: p50 / p99 per mode, one table.

    .venv/bin/python tests/bench/scrape_tls.py              500 scrapes per mode
    .venv/bin/python tests/bench/scrape_tls.py --requests 50 --json out.json

The monitor is its own process (`python -m monitor`, pointed at a closed port, so /metrics
is its ordinary start-up exposition, ~14 KB), on 127.0.0.1. The client scrapes one at a time
over one keep-alive connection, as Prometheus does, and times request to last body byte.
Modes: plain HTTP; TLS; TLS + basic auth with the cache warm (every scrape after the
first); TLS + basic auth with the cache disabled in the monitor process (every scrape pays
bcrypt, cost 10: what a first scrape, or one after the cache entry expired, costs); and TLS
with a new connection per scrape (full handshake), for reference. Numbers are printed, never
asserted: the machine's load moves them.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import ssl
import statistics
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import aiohttp
import bcrypt
import yaml

ROOT = Path(__file__).resolve().parents[2]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from harness.net import HOST, free_port  # noqa: E402
from tls_support import TestCA  # noqa: E402 - after the path set-up

PASSWORD = "bench-password-" + "x" * 16
AUTH = "Basic " + base64.b64encode(f"prometheus:{PASSWORD}".encode()).decode()
# In the monitor process of the "uncached" mode: no cached outcome is ever found.
NO_CACHE = "import monitor.webauth as w; w.BasicAuth._cached = lambda self, key: None; "


@asynccontextmanager
async def monitor_process(web_config: Path | None, no_cache: bool = False) -> AsyncIterator[int]:
    """A monitor process on a free port; yields the port once it listens."""
    port = free_port()
    args = ["--gateway-url", "http://127.0.0.1:9", "--listen", f"{HOST}:{port}", "--log-level", "error"]
    if web_config:
        args += ["--web.config.file", str(web_config)]
    code = f"{NO_CACHE if no_cache else ''}from monitor.cli import main; raise SystemExit(main({args!r}))"
    proc = await asyncio.create_subprocess_exec(sys.executable, "-c", code, cwd=ROOT,
                                                stdout=asyncio.subprocess.DEVNULL)
    try:
        for _ in range(200):
            try:
                _reader, writer = await asyncio.open_connection(HOST, port)
                writer.close()
                break
            except OSError:
                await asyncio.sleep(0.05)
        yield port
    finally:
        proc.terminate()
        await proc.wait()


async def timings(url: str, count: int, context: ssl.SSLContext | None, auth: bool,
                  keep_alive: bool = True) -> list[float]:
    """Milliseconds per scrape, one scrape at a time; the first (connection set-up) not counted."""
    headers = {"Authorization": AUTH} if auth else {}
    connector = aiohttp.TCPConnector(limit=1, force_close=not keep_alive)
    out: list[float] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        for n in range(count + 1):
            started = time.perf_counter()
            async with session.get(url, headers=headers, ssl=context if context else False) as resp:
                body = await resp.read()
            assert resp.status == 200 and b"gateway_monitor_build_info" in body, resp.status
            if n:
                out.append((time.perf_counter() - started) * 1000)
    return out


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


async def run(requests: int) -> list[dict[str, Any]]:
    with tempfile.TemporaryDirectory() as tmp:
        ca = TestCA(Path(tmp))
        chain, key, _cert = ca.issue("tls")
        tls_only, with_auth = Path(tmp) / "tls.yml", Path(tmp) / "auth.yml"
        tls = {"tls_server_config": {"cert_file": str(chain), "key_file": str(key)}}
        tls_only.write_text(yaml.safe_dump(tls))
        hashed = bcrypt.hashpw(PASSWORD.encode(), bcrypt.gensalt(rounds=10)).decode()
        with_auth.write_text(yaml.safe_dump({**tls, "basic_auth_users": {"prometheus": hashed}}))
        context = ssl.create_default_context(cafile=ca.ca_file)
        modes = [
            ("plain HTTP", None, False, False, requests, True),
            ("TLS", tls_only, False, False, requests, True),
            ("TLS + basic auth, cached", with_auth, False, True, requests, True),
            ("TLS + basic auth, uncached (bcrypt cost 10 each)", with_auth, True, True,
             max(10, requests // 10), True),
            ("TLS, new connection per scrape", tls_only, False, False, max(10, requests // 5), False),
        ]
        rows = []
        for name, web, no_cache, auth, count, keep_alive in modes:
            async with monitor_process(web, no_cache) as port:
                url = f"{'https' if web else 'http'}://{HOST}:{port}/metrics"
                ms = await timings(url, count, context if web else None, auth, keep_alive)
            rows.append({"mode": name, "requests": count, "p50_ms": statistics.median(ms),
                         "p99_ms": percentile(ms, 0.99), "max_ms": max(ms)})
        return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--json", type=Path, help="also write the rows here")
    args = parser.parse_args()
    rows = asyncio.run(run(args.requests))
    print(f"{'mode':<52} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8}")
    for row in rows:
        print(f"{row['mode']:<52} {row['requests']:>5} {row['p50_ms']:>8.2f} {row['p99_ms']:>8.2f} "
              f"{row['max_ms']:>8.2f}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
