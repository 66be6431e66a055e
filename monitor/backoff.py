"""Reconnect delays: exponential backoff with full jitter, as the connection guide recommends."""

from __future__ import annotations

import random
from collections.abc import Callable


class Backoff:
    """Delay ceiling starts at `initial`, grows by `factor` per failure up to `maximum`.

    Each wait is uniform in [0, ceiling] ("full jitter"), so a fleet of monitors
    that lost the same gateway does not reconnect in lockstep.
    """

    def __init__(
        self,
        initial: float,
        factor: float,
        maximum: float,
        uniform: Callable[[float, float], float] = random.uniform,
    ) -> None:
        self.initial = initial
        self.factor = factor
        self.maximum = maximum
        self._uniform = uniform
        self.ceiling = initial

    def next_delay(self) -> float:
        """The wait before the next attempt; raises the ceiling for the one after."""
        delay = self._uniform(0.0, self.ceiling)
        self.ceiling = min(self.ceiling * self.factor, self.maximum)
        return delay

    def reset(self) -> None:
        """Back to the initial ceiling, after a connection that stayed up."""
        self.ceiling = self.initial
