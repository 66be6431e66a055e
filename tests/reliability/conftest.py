"""Fixtures of the reliability suite: gateway and monitor processes, and the figures file.

The figures every test measures are written to $RELIABILITY_FIGURES (default:
<pytest basetemp>/reliability-figures.json); tests/reliability/render_report.py turns them
into the tables of docs/reliability.md.
"""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from harness.gateway_process import GatewayProcess
from harness.net import free_port
from reliability_support import Figures, MonitorProcess

_FIGURES = Figures()
_FIGURES_PATH: list[Path] = []


@pytest.fixture(scope="session")
def figures(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Figures]:
    """The session's figures, written at the end of the session."""
    path = Path(os.environ.get("RELIABILITY_FIGURES") or
                tmp_path_factory.getbasetemp() / "reliability-figures.json")
    _FIGURES_PATH.append(path)
    yield _FIGURES
    _FIGURES.write(path)


def pytest_terminal_summary(terminalreporter: Any) -> None:
    if _FIGURES_PATH and _FIGURES.rows:
        terminalreporter.write_line(f"reliability figures: {_FIGURES_PATH[0]} "
                                    f"(render: python tests/reliability/render_report.py FILE)")


@pytest.fixture
async def gateway_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[GatewayProcess]]]:
    """Factory of started `gateway-monitor simulate` processes, all stopped at teardown."""
    started: list[GatewayProcess] = []

    async def make(port: int | None = None, **kwargs: Any) -> GatewayProcess:
        gateway = GatewayProcess(port or free_port(), log_path=tmp_path / f"gateway-{len(started)}.log",
                                 **kwargs)
        started.append(gateway)
        await gateway.start()
        return gateway

    yield make
    for gateway in started:
        await gateway.close()


@pytest.fixture
async def monitor_process(tmp_path: Path) -> AsyncIterator[Callable[..., Awaitable[MonitorProcess]]]:
    """Factory of started monitor processes, all killed at teardown if still running."""
    started: list[MonitorProcess] = []

    async def make(gateway_url: str, env: dict[str, str] | None = None, **settings: Any) -> MonitorProcess:
        proc = MonitorProcess(tmp_path, f"monitor-{len(started)}")
        started.append(proc)
        await proc.start(gateway_url, env, **settings)
        return proc

    yield make
    for proc in started:
        await proc.close()
