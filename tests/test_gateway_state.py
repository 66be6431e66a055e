"""What the monitor believes about brokers and stale symbols: frames, /health, reconnects, in time."""

from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs
from support import Scrape

from monitor.gateway_state import GatewayState, ProviderHealth
from monitor.metrics import Metrics

GRACE = 15.0
SAXO = "saxo-sim"
SYMBOLS = ("EURUSD:FxSpot", "GBPUSD:FxSpot")


class Rig:
    """A GatewayState on a clock the test moves; values read back from the exposition."""

    def __init__(self) -> None:
        self.now = 100.0
        self.metrics = Metrics(CollectorRegistry())
        self.state = GatewayState(self.metrics, 1000, GRACE, clock=lambda: self.now,
                                  wall=lambda: 1_700_000_000.0 + self.now)

    def tick(self, seconds: float = 0.1) -> float:
        self.now += seconds
        return self.now

    def health(self, connected: bool, stale: tuple[str, ...] = (), broker: str = SAXO) -> None:
        """One /health answer, asked just now and answered a moment later."""
        asked = self.tick()
        self.tick()
        self.state.health([ProviderHealth(broker, connected, stale)], asked)

    def value(self, name: str, **labels: str) -> float | None:
        return Scrape(self.metrics.expose()[0].decode()).value("gateway_monitor_" + name, **labels)

    def broker(self, broker: str = SAXO) -> tuple[float | None, float | None, float | None]:
        return (self.value("broker_up", broker=broker), self.value("broker_connection_failed", broker=broker),
                self.value("stale_symbols", broker=broker))

    def stale_series(self, broker: str = SAXO) -> list[str]:
        return [symbol for symbol in SYMBOLS
                if self.value("symbol_stale_since_timestamp_seconds", broker=broker, symbol=symbol)]

    def give_up(self) -> None:
        """What the real gateway sends when its Saxo adapter gives up (recorded from v0.2.0)."""
        self.state.broker_event("BROKER_DISCONNECTED", SAXO)
        self.state.went_stale(SAXO, SYMBOLS, 1_700_000_000.0)
        self.tick(6)
        self.state.broker_event("BROKER_CONNECTION_FAILED", SAXO)


@pytest.fixture
def rig() -> Rig:
    rig = Rig()
    rig.state.connection_opened()
    rig.health(connected=True)
    return rig


def test_health_alone_makes_a_broker_known_and_up() -> None:
    rig = Rig()
    rig.health(connected=True)
    assert rig.broker() == (1, 0, 0)
    assert rig.state.brokers[SAXO].source == "/health"


def test_a_frame_shows_at_once_even_while_health_still_says_connected(rig: Rig) -> None:
    rig.state.broker_event("BROKER_DISCONNECTED", SAXO)
    assert rig.broker()[0] == 0
    rig.tick()
    rig.state.health([ProviderHealth(SAXO, True, ())], requested_at=rig.now - 1)  # asked before the frame
    rig.health(connected=True)  # asked after it: a disagreement, not yet longer than the grace
    assert rig.broker()[0] == 0
    assert rig.state.brokers[SAXO].source == "frame"


def test_health_wins_once_it_has_disagreed_for_longer_than_the_grace(rig: Rig) -> None:
    rig.state.broker_event("BROKER_DISCONNECTED", SAXO)
    rig.state.went_stale(SAXO, SYMBOLS, 1_700_000_000.0)
    rig.tick(1)
    rig.health(connected=True)  # the BROKER_RECONNECTED and FRESH frames were lost
    rig.tick(GRACE - 1)
    rig.health(connected=True)
    assert rig.broker() == (0, 0, 2)
    rig.tick(1)
    with capture_logs() as logs:
        rig.health(connected=True)
    assert rig.broker() == (1, 0, 0)
    assert rig.stale_series() == []
    assert [(e["event"], e["reason"], e["state_was"], e["state"]) for e in logs] == [
        ("monitor.state.reconciled", "disagreed_with_health", "disconnected", "up")]


def test_a_frame_during_the_disagreement_starts_the_grace_again(rig: Rig) -> None:
    rig.state.broker_event("BROKER_DISCONNECTED", SAXO)
    rig.tick(1)
    rig.health(connected=True)
    rig.tick(GRACE - 2)
    rig.state.broker_event("BROKER_DISCONNECTED", SAXO)  # the stream insists
    rig.tick(3)
    rig.health(connected=True)
    assert rig.broker()[0] == 0


def test_health_agreeing_again_ends_the_disagreement(rig: Rig) -> None:
    rig.state.broker_event("BROKER_DISCONNECTED", SAXO)
    rig.tick(1)
    rig.health(connected=True)
    rig.tick(GRACE - 2)
    rig.health(connected=False)  # agrees
    rig.tick(3)
    rig.health(connected=True)  # a new disagreement, its grace just started
    assert rig.broker()[0] == 0


def test_a_new_connection_discards_the_staleness_of_the_previous_one(rig: Rig) -> None:
    rig.state.went_stale(SAXO, SYMBOLS, 1_700_000_000.0)
    assert rig.stale_series() == list(SYMBOLS)
    rig.tick(5)
    rig.state.connection_opened()  # no STALE snapshot follows: nothing is stale now
    assert rig.stale_series() == []
    assert rig.value("stale_symbols", broker=SAXO) == 0
    assert rig.value("stale_duration_seconds_count", broker=SAXO) is None  # no episode ended


def test_the_stale_snapshot_of_a_new_connection_re_establishes_staleness(rig: Rig) -> None:
    rig.state.went_stale(SAXO, SYMBOLS, 1_700_000_000.0)
    rig.state.connection_opened()
    rig.state.went_stale(SAXO, SYMBOLS[:1], 1_700_000_050.0)
    assert rig.stale_series() == [SYMBOLS[0]]
    assert rig.value("symbol_stale_since_timestamp_seconds", broker=SAXO,
                     symbol=SYMBOLS[0]) == 1_700_000_050.0


def test_a_give_up_survives_a_reconnect_of_the_monitor_while_health_says_not_connected(rig: Rig) -> None:
    rig.give_up()
    rig.tick(10)
    rig.state.connection_opened()
    rig.state.went_stale(SAXO, SYMBOLS, 1_700_000_000.0)  # the snapshot
    rig.health(connected=False, stale=SYMBOLS)
    assert rig.broker() == (0, 1, 2)
    rig.tick(GRACE * 4)
    rig.health(connected=False, stale=SYMBOLS)
    assert rig.broker() == (0, 1, 2)
    assert rig.state.brokers[SAXO].state == "failed"


def test_a_restarted_healthy_gateway_clears_the_give_up_at_its_first_health_answer(rig: Rig) -> None:
    rig.give_up()
    rig.tick(30)
    rig.state.connection_opened()  # the restarted gateway: no snapshot, no broker frame
    assert rig.broker() == (0, 1, 0)
    with capture_logs() as logs:
        rig.health(connected=True)
    assert rig.broker() == (1, 0, 0)
    assert logs[0]["reason"] == "new_connection" and logs[0]["state_was"] == "failed"


def test_health_asked_before_the_new_connection_does_not_confirm_it(rig: Rig) -> None:
    rig.give_up()
    asked = rig.tick()
    rig.tick()
    rig.state.connection_opened()
    rig.tick()
    rig.state.health([ProviderHealth(SAXO, True, ())], asked)  # answered by the old process
    assert rig.broker()[1] == 1
    rig.health(connected=True)
    assert rig.broker()[1] == 0


def test_a_restart_during_an_outage_ends_the_outage_and_its_staleness(rig: Rig) -> None:
    rig.state.broker_event("BROKER_DISCONNECTED", SAXO)
    rig.state.went_stale(SAXO, SYMBOLS, 1_700_000_000.0)
    rig.tick(20)
    rig.state.connection_opened()
    rig.health(connected=True)
    assert rig.broker() == (1, 0, 0)
    assert rig.stale_series() == []


def test_a_broker_frame_on_the_new_connection_confirms_the_broker(rig: Rig) -> None:
    rig.give_up()
    rig.state.connection_opened()
    rig.state.broker_event("BROKER_RECONNECTED", SAXO)
    rig.health(connected=False)  # disagrees: only after the grace does /health win
    assert rig.broker()[:2] == (1, 0)


def test_a_broker_health_no_longer_lists_is_forgotten_after_a_new_connection(rig: Rig) -> None:
    rig.state.broker_event("BROKER_DISCONNECTED", "other")
    rig.state.connection_opened()
    rig.health(connected=True)
    assert rig.broker("other") == (None, None, None)
    assert "other" not in rig.state.brokers
    assert rig.broker() == (1, 0, 0)


def test_an_unlisted_broker_seen_in_frames_is_forgotten_after_the_grace(rig: Rig) -> None:
    rig.state.broker_event("BROKER_DISCONNECTED", "binance-spot-live")
    rig.tick(1)
    rig.health(connected=True)
    assert rig.broker("binance-spot-live")[0] == 0
    rig.tick(GRACE)
    rig.health(connected=True)
    assert rig.broker("binance-spot-live")[0] is None
    rig.state.broker_event("BROKER_DISCONNECTED", "binance-spot-live")  # and can come back
    assert rig.broker("binance-spot-live")[0] == 0


def test_an_empty_provider_list_is_no_opinion(rig: Rig) -> None:
    rig.state.broker_event("BROKER_DISCONNECTED", SAXO)
    rig.state.connection_opened()
    rig.tick()
    rig.state.health([], rig.now)
    assert rig.broker()[0] == 0


def test_stale_symbols_follow_health_after_the_grace_with_the_time_it_first_said_so(rig: Rig) -> None:
    rig.health(connected=False, stale=SYMBOLS)  # the STALE frame was dropped by the gateway
    first_said = rig.now
    rig.tick(GRACE)
    rig.health(connected=False, stale=SYMBOLS)
    assert rig.broker() == (0, 0, 2)
    since = rig.value("symbol_stale_since_timestamp_seconds", broker=SAXO, symbol=SYMBOLS[0])
    assert since == pytest.approx(1_700_000_000.0 + first_said)


def test_fresh_ends_an_episode_and_observes_its_length(rig: Rig) -> None:
    rig.state.went_stale(SAXO, SYMBOLS, 1_700_000_000.0)
    rig.state.went_fresh(SAXO, SYMBOLS[:1], 1_700_000_012.0)
    assert rig.stale_series() == [SYMBOLS[1]]
    assert rig.value("stale_duration_seconds_sum", broker=SAXO) == 12.0
