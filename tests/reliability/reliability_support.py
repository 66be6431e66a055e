"""Helpers of the reliability suite: a monitor process, a counter watcher and the figures file."""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

import aiohttp
from harness.net import HOST, free_port
from prometheus_client.parser import text_string_to_metric_families
from support import Scrape

# The in-process `monitor` fixture uses support.FAST; processes get the same timings as flags.
PROCESS_SETTINGS: dict[str, Any] = {
    "heartbeat_seconds": 0.5,
    "connect_timeout_seconds": 2.0,
    "reconnect_initial_seconds": 0.05,
    "reconnect_max_seconds": 0.2,
    "reconnect_reset_after_seconds": 1.0,
    "probe_interval_seconds": 0.2,
    "probe_timeout_seconds": 0.2,
}
MAX_BACKOFF = 0.2
"""support.FAST's reconnect_max_seconds: no reconnect waits longer than this."""
SLACK = 0.4
"""Connect time plus scheduling on a loaded CI machine."""


class MonitorProcess:
    """`python -m monitor` as a child process with JSON logs at debug level, on a free port."""

    def __init__(self, workdir: Path, name: str = "monitor") -> None:
        self.port = free_port()
        self.url = f"http://{HOST}:{self.port}"
        self.stderr_path = workdir / f"{name}.stderr"
        self.stdout_path = workdir / f"{name}.stdout"
        self.proc: asyncio.subprocess.Process | None = None
        self._session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(force_close=True))

    async def start(self, gateway_url: str, env: dict[str, str] | None = None, **settings: Any) -> None:
        """Start and wait until /-/healthy answers."""
        flags = [f"--{name.replace('_', '-')}={value}"
                 for name, value in {**PROCESS_SETTINGS, **settings}.items()]
        with self.stdout_path.open("wb") as out, self.stderr_path.open("wb") as err:
            self.proc = await asyncio.create_subprocess_exec(
                sys.executable, "-m", "monitor", "--gateway-url", gateway_url,
                "--listen", f"{HOST}:{self.port}", *flags,
                env={"PATH": "/usr/bin:/bin", "LOG_FORMAT": "json", "LOG_LEVEL": "debug", **(env or {})},
                stdin=asyncio.subprocess.DEVNULL, stdout=out, stderr=err)
        deadline = time.monotonic() + 15
        while await self.get("/-/healthy") is None:
            if self.proc.returncode is not None or time.monotonic() > deadline:
                raise AssertionError(f"monitor did not start: {self.stderr_path.read_text()[-2000:]}")
            await asyncio.sleep(0.02)

    async def get(self, path: str, **kwargs: Any) -> tuple[int, str] | None:
        """(status, body) of a GET to the monitor, None when it does not answer."""
        try:
            async with self._session.get(self.url + path, timeout=aiohttp.ClientTimeout(total=2),
                                         **kwargs) as resp:
                return resp.status, await resp.text()
        except (aiohttp.ClientError, OSError, TimeoutError):
            return None

    async def scrape(self) -> Scrape | None:
        """One parsed scrape of /metrics."""
        answer = await self.get("/metrics")
        return Scrape(answer[1]) if answer is not None and answer[0] == 200 else None

    async def value(self, name: str, **labels: str) -> float | None:
        """One sample from a fresh scrape."""
        result = await self.scrape()
        return None if result is None else result.value(name, **labels)

    async def until(self, name: str, check: Any, timeout: float = 10.0, **labels: str) -> float:
        """Scrape until `check(value)` (or value == check); return the seconds it took."""
        started = time.monotonic()
        test = check if callable(check) else (lambda v: v == check)
        while True:
            value = await self.value(name, **labels)
            if value is not None and test(value):
                return time.monotonic() - started
            if time.monotonic() - started > timeout:
                raise AssertionError(f"{name}{labels} is {value}, still not {check} after {timeout}s")
            await asyncio.sleep(0.02)

    async def sigterm(self, timeout: float = 5.0) -> tuple[int | None, float]:
        """SIGTERM; return (exit code, seconds until it exited)."""
        assert self.proc is not None
        sent = time.monotonic()
        self.proc.send_signal(signal.SIGTERM)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self.proc.wait(), timeout)
        return self.proc.returncode, time.monotonic() - sent

    def log_lines(self) -> list[dict[str, Any]]:
        """Every JSON log line written so far."""
        return [json.loads(line) for line in self.stderr_path.read_text().splitlines() if line.strip()]

    def events(self) -> list[str]:
        """The `event` name of every log line."""
        return [line["event"] for line in self.log_lines()]

    async def close(self) -> None:
        """Kill the process if it still runs; release the session."""
        if self.proc is not None and self.proc.returncode is None:
            self.proc.kill()
            await self.proc.wait()
        await self._session.close()


class CounterWatch:
    """Scrapes a monitor's /metrics in the background; notes every counter that went backwards."""

    def __init__(self, metrics_url: str, interval: float = 0.025) -> None:
        self._url = metrics_url
        self._interval = interval
        self._last: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.went_back: list[str] = []
        self.scrapes = 0
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> CounterWatch:
        self._task = asyncio.create_task(self._run())
        return self

    async def __aexit__(self, *_exc: object) -> None:
        assert self._task is not None
        self._task.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._task

    async def _run(self) -> None:
        async with aiohttp.ClientSession() as session:
            while True:
                with contextlib.suppress(aiohttp.ClientError, OSError):
                    async with session.get(self._url) as resp:
                        self._check(await resp.text())
                await asyncio.sleep(self._interval)

    def _check(self, text: str) -> None:
        self.scrapes += 1
        for family in text_string_to_metric_families(text):
            if family.type not in ("counter", "histogram"):
                continue
            for s in family.samples:
                key = (s.name, tuple(sorted(s.labels.items())))
                if s.value < self._last.get(key, 0.0):
                    self.went_back.append(f"{s.name}{s.labels}: {self._last[key]} -> {s.value}")
                self._last[key] = s.value


class Figures:
    """Measured figures of the suite, written as JSON for tests/reliability/render_report.py."""

    def __init__(self) -> None:
        self.rows: list[dict[str, Any]] = []

    def fault(self, name: str, *, survived: bool, reason: str, recovery: float | None,
              bound: float | None, detail: str = "") -> None:
        """One injected fault: did the monitor survive it, and how fast did it recover."""
        self.rows.append({"kind": "fault", "name": name, "survived": survived, "reason": reason,
                          "recovery_seconds": _round(recovery), "bound_seconds": _round(bound),
                          "detail": detail})

    def inputs(self, name: str, *, tried: int, outcome: str) -> None:
        """One class of hostile input, how many were tried, and what happened."""
        self.rows.append({"kind": "input", "name": name, "tried": tried, "outcome": outcome})

    def events(self, name: str, *, injected: int, counted: int) -> None:
        """Critical events injected into the socket versus counted by the monitor."""
        self.rows.append({"kind": "events", "name": name, "injected": injected, "counted": counted})

    def soak(self, report: dict[str, Any]) -> None:
        """A soak run's per-cycle figures."""
        self.rows.append({"kind": "soak", **report})

    def write(self, path: Path) -> None:
        """Write every row recorded so far."""
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps({"generated": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                                    "python": sys.version.split()[0], "rows": self.rows}, indent=2))


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 3)
