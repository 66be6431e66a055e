"""What the simulated broker's feed does right now: the switches of the feed-health scenarios.

The real gateway shows none of this on its health surface: a muted instrument, a frozen feed,
late quotes and a closed market all leave /health green and send no frame. Only the quotes
themselves change, which is what the monitor's feed health reads.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Market:
    """Muted instruments, how late quotes are, whether the market is closed."""

    muted: set[str] = field(default_factory=set)
    late_seconds: float = 0.0
    closed: bool = False

    def ticking(self, symbol: str) -> bool:
        """Whether `symbol` sends market data now."""
        return not self.closed and symbol not in self.muted
