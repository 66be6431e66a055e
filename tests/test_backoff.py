"""Reconnect delays follow the guide: full jitter, initial 1 s, factor 2, max 30 s."""

from __future__ import annotations

from monitor.backoff import Backoff


def ceilings(uniform_calls: list[tuple[float, float]]) -> list[float]:
    return [high for _low, high in uniform_calls]


def test_ceiling_doubles_up_to_the_maximum() -> None:
    calls: list[tuple[float, float]] = []
    backoff = Backoff(1.0, 2.0, 30.0, uniform=lambda lo, hi: calls.append((lo, hi)) or hi)
    delays = [backoff.next_delay() for _ in range(7)]
    assert ceilings(calls) == [1, 2, 4, 8, 16, 30, 30]
    assert delays == [1, 2, 4, 8, 16, 30, 30]
    assert all(low == 0.0 for low, _ in calls)


def test_full_jitter_draws_between_zero_and_the_ceiling() -> None:
    backoff = Backoff(1.0, 2.0, 30.0)
    for _ in range(6):
        backoff.next_delay()
    draws = [backoff.next_delay() for _ in range(500)]
    assert all(0.0 <= d <= 30.0 for d in draws)
    assert min(draws) < 5 and max(draws) > 25  # spread over the whole range, not clustered


def test_reset_returns_to_the_initial_ceiling() -> None:
    backoff = Backoff(1.0, 2.0, 30.0, uniform=lambda lo, hi: hi)
    for _ in range(4):
        backoff.next_delay()
    backoff.reset()
    assert backoff.next_delay() == 1.0
