"""A simulated gateway in its own process (`gateway-monitor simulate`), driven over its /_sim/ API."""

from __future__ import annotations

import asyncio
import contextlib
import io
import signal
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

import aiohttp
import orjson

from harness.net import HOST


class GatewayProcess:
    """`gateway-monitor simulate` as a child process on a fixed port, driven over /_sim/."""

    def __init__(self, port: int, *, key_file: Path | None = None, market_data_rate: float = 0.0,
                 log_path: Path | None = None) -> None:
        self.port = port
        self.url = f"http://{HOST}:{port}"
        self.key_file = key_file
        self.market_data_rate = market_data_rate
        self.log_path = log_path
        self.proc: asyncio.subprocess.Process | None = None
        # force_close: a pooled socket to a killed process would hide that it is gone.
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))

    async def start(self, timeout: float = 15.0) -> float:
        """Spawn the process and wait until it answers /livez; return the seconds that took."""
        started = time.monotonic()
        args = [sys.executable, "-m", "monitor", "simulate", "--listen", f"{HOST}:{self.port}",
                "--no-cycle", "--market-data-rate", str(self.market_data_rate)]
        if self.key_file is not None:
            args += ["--api-key-file", str(self.key_file)]
        log = self.log_path.open("ab") if self.log_path else None
        try:
            self.proc = await asyncio.create_subprocess_exec(
                *args, stdin=asyncio.subprocess.DEVNULL, stdout=log or asyncio.subprocess.DEVNULL,
                stderr=log or asyncio.subprocess.DEVNULL)
        finally:
            if log is not None:
                log.close()
        while not await self.answers("/livez"):
            if self.proc.returncode is not None or time.monotonic() - started > timeout:
                raise RuntimeError(f"simulated gateway on port {self.port} did not start")
            await asyncio.sleep(0.02)
        return time.monotonic() - started

    async def answers(self, path: str, timeout: float = 0.5) -> bool:
        """True when `path` answers 200 within `timeout`."""
        try:
            async with self._session.get(self.url + path,
                                         timeout=aiohttp.ClientTimeout(total=timeout)) as resp:
                return resp.status == 200
        except (aiohttp.ClientError, OSError, TimeoutError):
            return False

    def listening_since(self) -> float | None:
        """Unix time of the last `simulator.up` line in the process log: when its port opened."""
        if self.log_path is None or not self.log_path.exists():
            return None
        since = None
        for line in self.log_path.read_bytes().splitlines():
            if b'"simulator.up"' in line:
                with contextlib.suppress(orjson.JSONDecodeError, KeyError, ValueError):
                    since = datetime.fromisoformat(orjson.loads(line)["timestamp"]).timestamp()
        return since

    def signal(self, sig: signal.Signals) -> None:
        """Send `sig` to the process (SIGSTOP/SIGCONT for a black hole)."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.send_signal(sig)

    async def kill(self) -> None:
        """SIGKILL: the gateway dies without a close frame."""
        self.signal(signal.SIGKILL)
        await self.wait()

    async def terminate(self, timeout: float = 5.0) -> int | None:
        """SIGTERM, escalating to SIGKILL after `timeout`; return the exit code."""
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            await asyncio.wait_for(self.wait(), timeout)
        except TimeoutError:
            await self.kill()
        return self.proc.returncode if self.proc else None

    async def wait(self) -> None:
        """Wait for the process to exit."""
        if self.proc is not None:
            await self.proc.wait()

    async def close(self) -> None:
        """Stop the process if it runs and release the control session."""
        if self.proc is not None and self.proc.returncode is None:
            await self.terminate()
        await self._session.close()

    async def control(self, method: str, path: str, body: bytes = b"", **query: Any) -> Any:
        """Call the /_sim/ control API; return its JSON answer."""
        params = {k: str(v) for k, v in query.items()}
        data = io.BytesIO(body) if len(body) > 65536 else body  # aiohttp warns on large raw bytes
        async with self._session.request(method, f"{self.url}/_sim/{path}", data=data, params=params,
                                         timeout=aiohttp.ClientTimeout(total=10)) as resp:
            if resp.status >= 400:
                raise RuntimeError(f"/_sim/{path}: HTTP {resp.status} {await resp.text()}")
            return orjson.loads(await resp.read())

    async def frame(self, data: bytes | dict[str, Any], *, binary: bool = False) -> int:
        """Broadcast one frame (raw bytes, or a dict serialised as JSON)."""
        payload = data if isinstance(data, bytes) else orjson.dumps(data)
        answer = await self.control("POST", "frame", payload, binary=int(binary))
        return int(answer["queued"])

    async def state(self) -> dict[str, int]:
        """clients, upgrade_attempts and unauthorized_attempts of the simulator."""
        return dict(await self.control("GET", "state"))
