"""Feed health decided with an injected clock: silence, learning, frozen feeds, eligibility, quote age."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st
from prometheus_client import CollectorRegistry
from structlog.testing import capture_logs

from monitor import feed as feed_module
from monitor.decode import leading_tick
from monitor.feed import FeedHealth
from monitor.feed_config import SilenceOverride, Subscription
from monitor.gateway_state import GatewayState, ProviderHealth
from monitor.instrument import FeedSettings, platform_candidates, split_key
from monitor.metrics import Metrics
from monitor.quote_age import AGE_SAMPLE_SECONDS

SAXO = "saxo-sim"
T0 = 1_796_000_000.0
STEP = 0.5


def quote(symbol: str, provider: str = "saxo", timestamp: str = "2026-12-01T14:33:09.658893085Z") -> bytes:
    body = {"symbol": symbol, "provider": provider, "bid": "1.08451", "ask": "1.08471", "last": "1.08461",
            "timestamp": timestamp}
    return orjson.dumps({"type": "quote", "quote": body, "timestamp": timestamp})


def key(symbol: str, provider: str = "saxo") -> bytes:
    tick = leading_tick(quote(symbol, provider))
    assert tick is not None
    return tick[1]


class Rig:
    """A FeedHealth over real metrics and a real GatewayState, with a clock the test moves."""

    def __init__(self, settings: FeedSettings | None = None, brokers: Iterable[str] = (SAXO,)) -> None:
        self.now = T0
        self.steps = 0
        self.connected = True
        self.metrics = Metrics(CollectorRegistry())
        self.state = GatewayState(self.metrics, 100, grace_seconds=15.0)
        for broker in brokers:
            self.state.broker_event("CONNECTED", broker)
        self.feed = FeedHealth(self.metrics, self.state, settings or FeedSettings(),
                               lambda: self.connected, wall=lambda: self.now)

    def tick(self, *symbols: str, provider: str = "saxo") -> None:
        for symbol in symbols:
            self.feed.ticks[key(symbol, provider)] = self.now

    def run(self, seconds: float, *ticking: str, every: float = 0.5, provider: str = "saxo") -> None:
        """Advance the clock in half seconds, `ticking` instruments ticking every `every` s and the
        feed swept every second, as the monitor's task does."""
        per_tick = max(1, round(every / STEP))
        for _ in range(round(seconds / STEP)):
            self.steps += 1
            self.now += STEP
            if ticking and self.steps % per_tick == 0:
                self.tick(*ticking, provider=provider)
            if self.steps % 2 == 0:
                self.feed.sweep()

    def value(self, name: str, **labels: str) -> float | None:
        return self.metrics.registry.get_sample_value("gateway_monitor_" + name, labels)

    def silent(self, broker: str = SAXO) -> set[str]:
        return {inst.symbol for inst in self.feed.instruments.values()
                if inst.broker == broker and inst.silent_since is not None}


def silence_time(rig: Rig, symbol: str, limit: float) -> float:
    """Seconds from now until `symbol` is silent (sweeping each second), at most `limit`."""
    start = rig.now
    while symbol not in rig.silent():
        assert rig.now - start <= limit, f"{symbol} not silent within {limit}s"
        rig.run(1.0)
    return rig.now - start


def test_a_liquid_instrument_muted_is_silent_after_the_floor_and_the_other_is_never_named() -> None:
    rig = Rig()
    rig.run(30, "EURUSD:FxSpot", "GBPUSD:FxSpot")
    muted_at = rig.now
    with capture_logs() as logs:
        rig.run(59, "GBPUSD:FxSpot")
        assert rig.silent() == set()
        rig.run(2, "GBPUSD:FxSpot")
        assert rig.silent() == {"EURUSD:FxSpot"}
        rig.run(120, "GBPUSD:FxSpot")
    assert rig.silent() == {"EURUSD:FxSpot"}
    silent = [e for e in logs if e["event"] == "monitor.feed.instrument_silent"]
    assert len(silent) == 1 and silent[0]["symbol"] == "EURUSD:FxSpot" and silent[0]["broker"] == SAXO
    assert silent[0]["threshold_seconds"] == 60.0 and 60 <= silent[0]["silent_seconds"] <= 61.5
    assert rig.metrics.instrument_silent_since.get((SAXO, "EURUSD:FxSpot", "warning")) == pytest.approx(
        muted_at, abs=0.6)
    assert rig.value("silent_instruments", broker=SAXO) == 1
    assert rig.value("feed_frozen", broker=SAXO) == 0
    assert rig.value("instruments", broker=SAXO) == 2


def test_a_tick_ends_the_silence_with_one_line_and_one_observed_duration() -> None:
    rig = Rig()
    rig.run(10, "EURUSD:FxSpot", "GBPUSD:FxSpot")
    rig.run(90, "GBPUSD:FxSpot")
    with capture_logs() as logs:
        rig.run(3, "EURUSD:FxSpot", "GBPUSD:FxSpot")
    assert rig.silent() == set()
    resumed = [e for e in logs if e["event"] == "monitor.feed.instrument_resumed"]
    assert [(e["symbol"], e["reason"]) for e in resumed] == [("EURUSD:FxSpot", "tick")]
    assert 89 <= resumed[0]["silent_seconds"] <= 92
    assert rig.metrics.instrument_silent_since.get((SAXO, "EURUSD:FxSpot", "warning")) is None
    assert rig.value("silence_duration_seconds_count", broker=SAXO) == 1
    assert 89 <= (rig.value("silence_duration_seconds_sum", broker=SAXO) or 0) <= 92


def test_a_slow_instrument_learns_its_interval_and_is_not_called_silent() -> None:
    rig = Rig()
    rig.run(20 * 40, "BOND", every=20.0)  # 40 gaps of 20 s
    inst = rig.feed.instruments[(SAXO, "BOND")]
    assert inst.usual_interval == pytest.approx(20.0, rel=0.1)
    assert inst.threshold() == pytest.approx(400.0, rel=0.1)
    rig.run(300)  # five times its usual gap: quiet, not silent
    assert rig.silent() == set()
    assert silence_time(rig, "BOND", 200) <= 120


def test_one_long_pause_barely_moves_the_usual_interval() -> None:
    rig = Rig()
    rig.run(60, "EURUSD", every=0.5)
    rig.run(300)
    rig.run(2, "EURUSD", every=0.5)
    inst = rig.feed.instruments[(SAXO, "EURUSD")]
    assert inst.usual_interval is not None and inst.usual_interval < 2.0
    assert inst.threshold() == 60.0


def test_every_instrument_silent_while_the_broker_is_up_is_one_frozen_feed() -> None:
    rig = Rig()
    rig.run(10, "EURUSD", "GBPUSD")
    with capture_logs() as logs:
        rig.run(62)
    assert rig.silent() == {"EURUSD", "GBPUSD"} and rig.value("feed_frozen", broker=SAXO) == 1
    frozen = [e for e in logs if e["event"].startswith("monitor.feed.frozen")]
    assert [(e["event"], e["broker"]) for e in frozen] == [("monitor.feed.frozen", SAXO)]
    with capture_logs() as logs:
        rig.run(2, "GBPUSD")
    assert rig.value("feed_frozen", broker=SAXO) == 0
    assert any(e["event"] == "monitor.feed.unfrozen" for e in logs)


def test_a_thawed_feed_restarts_the_clocks_of_the_instruments_that_stopped_with_it() -> None:
    """The instruments of a frozen feed resume one by one: in the sweep where the first ticks, the
    others are not left silent (a scrape then would show them silent with the feed thawed, and
    their alerts no longer muted by the frozen feed's). One that stays silent is named again
    after its threshold."""
    rig = Rig()
    rig.run(10, "EURUSD", "GBPUSD", "USDJPY")
    rig.run(62)
    assert rig.silent() == {"EURUSD", "GBPUSD", "USDJPY"} and rig.value("feed_frozen", broker=SAXO) == 1
    with capture_logs() as logs:
        rig.tick("GBPUSD")
        rig.run(1.0)
    assert rig.value("feed_frozen", broker=SAXO) == 0 and rig.silent() == set()
    assert rig.value("silent_instruments", broker=SAXO) == 0
    resumed = sorted((e["symbol"], e["reason"]) for e in logs
                     if e["event"] == "monitor.feed.instrument_resumed")
    assert resumed == [("EURUSD", "feed_resumed"), ("GBPUSD", "tick"), ("USDJPY", "feed_resumed")]
    assert rig.value("silence_duration_seconds_count", broker=SAXO) == 1  # only a tick ends a silence
    rig.run(1.0, "EURUSD", "GBPUSD")
    assert silence_time(rig, "USDJPY", 62) >= 59 and rig.silent() == {"USDJPY"}
    assert rig.value("feed_frozen", broker=SAXO) == 0


def test_an_instrument_silent_before_the_feed_stopped_stays_silent_through_the_thaw() -> None:
    rig = Rig()
    rig.run(10, "EURUSD", "GBPUSD")
    rig.run(120, "GBPUSD")  # EURUSD alone silent for a minute
    assert rig.silent() == {"EURUSD"}
    rig.run(62)
    assert rig.silent() == {"EURUSD", "GBPUSD"} and rig.value("feed_frozen", broker=SAXO) == 1
    rig.run(2, "GBPUSD")
    assert rig.value("feed_frozen", broker=SAXO) == 0 and rig.silent() == {"EURUSD"}


def test_no_silence_while_the_broker_is_down_and_the_clock_restarts_when_it_is_back() -> None:
    rig = Rig()
    rig.run(10, "EURUSD", "GBPUSD")
    rig.state.broker_event("BROKER_DISCONNECTED", SAXO)
    rig.run(300)
    assert rig.silent() == set() and rig.value("feed_frozen", broker=SAXO) == 0
    rig.state.broker_event("BROKER_RECONNECTED", SAXO)
    rig.run(55, "GBPUSD")
    assert rig.silent() == set()  # EURUSD has had 55 s since its broker came back, not 355
    rig.run(8, "GBPUSD")
    assert rig.silent() == {"EURUSD"}


def test_a_silence_ends_when_the_broker_drops_the_broker_alerts_take_over() -> None:
    rig = Rig()
    rig.run(5, "EURUSD", "GBPUSD")
    rig.run(65, "GBPUSD")
    assert rig.silent() == {"EURUSD"}
    with capture_logs() as logs:
        rig.state.broker_event("BROKER_CONNECTION_FAILED", SAXO)
        rig.run(1)
    assert rig.silent() == set()
    assert [(e["symbol"], e["reason"]) for e in logs if e["event"] == "monitor.feed.instrument_resumed"] == [
        ("EURUSD", "broker_not_up")]


def test_an_instrument_the_gateway_reports_stale_is_not_also_silent() -> None:
    rig = Rig()
    rig.run(5, "EURUSD", "GBPUSD")
    rig.state.went_stale(SAXO, ["EURUSD"], rig.now)
    rig.run(120, "GBPUSD")
    assert rig.silent() == set()
    rig.state.went_fresh(SAXO, ["EURUSD"], rig.now)
    rig.run(59, "GBPUSD")
    assert rig.silent() == set()
    rig.run(3, "GBPUSD")
    assert rig.silent() == {"EURUSD"}


def test_no_silence_while_the_monitor_is_blind_and_a_new_connection_restarts_the_clocks() -> None:
    rig = Rig()
    rig.run(5, "EURUSD")
    rig.run(65)
    assert rig.silent() == {"EURUSD"}
    rig.connected = False
    with capture_logs() as logs:
        rig.run(1)
    assert rig.silent() == set() and rig.value("feed_frozen", broker=SAXO) == 0
    assert logs[0]["reason"] == "monitor_disconnected"
    rig.run(300)
    assert rig.silent() == set()
    rig.connected = True
    rig.feed.connection_opened()
    rig.run(59)
    assert rig.silent() == set()
    rig.run(3)
    assert rig.silent() == {"EURUSD"}


def test_a_reconnect_between_two_sweeps_still_restarts_the_clocks() -> None:
    rig = Rig()
    rig.run(5, "EURUSD")
    rig.run(65)
    assert rig.silent() == {"EURUSD"}
    rig.feed.connection_opened()  # the socket dropped and came back within the second
    assert rig.silent() == set()
    rig.run(59)
    assert rig.silent() == set()


def test_an_expected_instrument_that_never_ticks_is_silent_after_the_floor() -> None:
    subs = (Subscription(SAXO, "USDJPY", 0.0), Subscription(SAXO, "DAILY", 86400.0))
    rig = Rig(FeedSettings(subscriptions=subs))
    assert rig.value("instruments", broker=SAXO) is None  # exported from the first sweep
    rig.run(59, "EURUSD")
    assert rig.silent() == set() and rig.value("instruments", broker=SAXO) == 3
    rig.run(3, "EURUSD")
    assert rig.silent() == {"USDJPY"}  # DAILY streams one bar a day: 20 days before it is silent
    assert rig.feed.instruments[(SAXO, "DAILY")].threshold() == 20 * 86400


def test_a_quote_names_the_expected_instrument_through_its_subscription() -> None:
    rig = Rig(FeedSettings(subscriptions=(Subscription("saxo-live", "EURUSD", 0.0),)), brokers=("saxo-live",))
    rig.run(5, "EURUSD")
    assert set(rig.feed.instruments) == {("saxo-live", "EURUSD")}
    assert rig.feed.instruments[("saxo-live", "EURUSD")].provider == "saxo"


def test_overrides_set_threshold_severity_and_can_switch_an_instrument_off() -> None:
    overrides = (SilenceOverride(SAXO, floor_seconds=30.0),
                 SilenceOverride(SAXO, "EURUSD", severity="critical"),
                 SilenceOverride(SAXO, "EXOTIC", enabled=False),
                 SilenceOverride(SAXO, "FIXED", threshold_seconds=5.0))
    rig = Rig(FeedSettings(overrides=overrides))
    rig.run(3, "EURUSD", "EXOTIC", "FIXED", "GBPUSD")
    assert silence_time(rig, "FIXED", 10) <= 7
    with capture_logs() as logs:
        rig.run(30)
    assert rig.silent() == {"EURUSD", "FIXED", "GBPUSD"}
    levels = {e["symbol"]: e["log_level"] for e in logs if e["event"] == "monitor.feed.instrument_silent"}
    assert levels == {"EURUSD": "error", "GBPUSD": "warning"}
    assert rig.metrics.instrument_silent_since.get((SAXO, "EURUSD", "critical")) is not None
    rig.run(600)
    assert "EXOTIC" not in rig.silent()


def test_the_backtest_engines_instruments_are_never_silent() -> None:
    rig = Rig(brokers=("tektii",))
    rig.run(5, "AAPL", provider="tektii")
    rig.run(600)
    assert rig.silent("tektii") == set()


@pytest.mark.parametrize(("provider", "known", "expected"), [
    ("saxo", ("saxo-live",), "saxo-live"),
    ("saxo", ("saxo-sim",), "saxo-sim"),
    ("saxo", (), "saxo-sim"),  # nothing known yet: the gateway's own reading of the short name
    ("binance-spot", ("binance-spot-live",), "binance-spot-live"),
    ("alpaca-paper", ("alpaca-live",), "alpaca-paper"),  # a platform id is taken as it is
    ("mock", ("mock",), "mock"),
    ("kraken", ("mock",), "other"),
])
def test_quote_providers_map_to_the_platform_ids_of_health(provider: str, known: tuple[str, ...],
                                                            expected: str) -> None:
    rig = Rig(brokers=known)
    rig.run(2, "X", provider=provider)
    assert [broker for broker, _ in rig.feed.instruments] == [expected]


def test_an_instrument_moves_when_health_names_the_platform_after_its_first_quotes() -> None:
    rig = Rig(brokers=())
    rig.run(3, "EURUSD")
    assert set(rig.feed.instruments) == {("saxo-sim", "EURUSD")}
    rig.state.health([ProviderHealth("saxo-live", True, ())], requested_at=0.0)
    rig.run(2, "EURUSD")
    assert set(rig.feed.instruments) == {("saxo-live", "EURUSD")}
    assert rig.metrics.instrument_last_tick.get(("saxo-sim", "EURUSD")) is None
    assert rig.metrics.instrument_last_tick.get(("saxo-live", "EURUSD")) == rig.now


def test_ambiguity_between_two_known_platforms_is_logged_once() -> None:
    rig = Rig(brokers=("saxo-sim", "saxo-live"))
    with capture_logs() as logs:
        rig.run(5, "EURUSD", "GBPUSD")
    ambiguous = [e for e in logs if e["event"] == "monitor.feed.provider_ambiguous"]
    assert len(ambiguous) == 1 and ambiguous[0]["chosen"] == "saxo-sim"


def test_instruments_past_the_cap_are_counted_once_and_not_tracked() -> None:
    rig = Rig(FeedSettings(max_instruments=2))
    rig.run(5, "A", "B", "C", "D")
    assert len(rig.feed.instruments) == 2
    assert rig.value("symbol_series_dropped_total") == 2


def test_platform_candidates_follow_the_adapters_spellings() -> None:
    assert platform_candidates("saxo") == ("saxo-sim", "saxo-live")
    assert platform_candidates("binance-futures") == ("binance-futures-testnet", "binance-futures-live")
    assert platform_candidates("BinanceSpotLive") == ("binance-spot-live",)
    assert platform_candidates("oanda-practice") == ("oanda-practice",)
    assert platform_candidates("nowhere") == ()


@given(symbol=st.text(min_size=1, max_size=40), provider=st.text(min_size=1, max_size=20))
def test_the_key_cut_from_the_bytes_reads_back_as_symbol_and_provider(symbol: str, provider: str) -> None:
    tick = leading_tick(quote(symbol, provider))
    if tick is not None:  # a symbol that holds `","bid"` escapes it: the frame is parsed instead
        assert split_key(tick[1]) == (symbol, provider)


def test_fields_between_symbol_and_provider_still_name_the_instrument() -> None:
    assert split_key(b'EURUSD","exchange":"X","provider":"saxo') == ("EURUSD", "saxo")
    assert split_key(b'EURUSD","provider":"saxo","exchange":"X') == ("EURUSD", "saxo")
    assert split_key(b"EURUSD") is None


# --- quote age ------------------------------------------------------------------------------------


def sample(rig: Rig, timestamp: Any, at: float) -> None:
    rig.feed.quote_ages.next_sample = 0.0
    rig.feed.quote_ages.sample(orjson.dumps({"type": "quote", "quote": {
        "symbol": "EURUSD", "provider": "saxo", "bid": "1", "ask": "1", "last": "1", "timestamp": timestamp},
        "timestamp": "x"}), at)


def test_quote_age_is_arrival_minus_the_quotes_own_timestamp() -> None:
    rig = Rig()
    sample(rig, "2026-12-01T14:33:09.500000000Z", 1796135591.0)  # 1.5 s after its timestamp
    assert rig.value("quote_age_seconds_count", broker=SAXO) == 1
    assert rig.value("quote_age_seconds_sum", broker=SAXO) == pytest.approx(1.5)
    assert rig.feed.quote_ages.next_sample == pytest.approx(1796135591.0 + AGE_SAMPLE_SECONDS)


@pytest.mark.parametrize(("timestamp", "reason"), [
    (None, "missing"), ("yesterday", "unparseable"), (17, "unparseable"),
    ("2026-12-01T14:33:20Z", "future"), ("2026-12-01T12:00:00Z", "too_old"),
])
def test_unusable_timestamps_are_counted_by_reason_and_skipped(timestamp: Any, reason: str) -> None:
    rig = Rig()
    with capture_logs() as logs:
        for _ in range(3):
            sample(rig, timestamp, 1796135591.0)
    assert rig.value("quote_timestamps_invalid_total", reason=reason) == 3
    assert rig.value("quote_age_seconds_count", broker=SAXO) is None
    assert len([e for e in logs if e["event"] == "monitor.feed.quote_timestamp_invalid"]) == 1


def test_a_slightly_early_clock_counts_as_age_zero() -> None:
    rig = Rig()
    sample(rig, "2026-12-01T14:33:11.500Z", 1796135591.0)  # 0.5 s in the future
    assert rig.value("quote_age_seconds_sum", broker=SAXO) == 0.0


# --- reading under a flood ----------------------------------------------------------------------


def test_past_its_budget_feed_health_reads_one_batch_in_the_stride_and_counts_the_rest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(feed_module, "FULL_READ_PER_SECOND", 10)
    rig = Rig()
    batch = [quote("EURUSD")] * 4
    rig.feed.read(batch, rig.now)
    rig.feed.read(batch, rig.now)
    assert rig.feed.skip == 0
    rig.feed.read(batch, rig.now)  # 12 > 10: the next 31 x 4 frames go by unread
    assert rig.feed.skip == (feed_module.SAMPLE_STRIDE - 1) * 4
    rig.run(1)  # a sweep: a new second, every frame read again; the unread ones counted
    assert rig.feed.skip == 0 and rig.feed.budget == 10
    assert rig.value("feed_frames_unread_total") == 0  # granted, never passed by: not counted


def test_no_silence_is_claimed_across_frames_that_went_unread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(feed_module, "FULL_READ_PER_SECOND", 10)
    rig = Rig()
    rig.run(5, "EURUSD", "GBPUSD")
    flood = [quote("GBPUSD")] * 20
    for _ in range(120):  # two minutes of a flood of GBPUSD: EURUSD's ticks may hide in it
        for _ in range(40):
            proc_read(rig, flood)
        rig.run(1)
    assert rig.silent() == set()
    assert (rig.value("feed_frames_unread_total") or 0) > 0
    for _ in range(62):  # the flood stops: everything is read again, and EURUSD is silent
        rig.run(1, "GBPUSD")
    assert rig.silent() == {"EURUSD"}


def proc_read(rig: Rig, batch: list[bytes]) -> None:
    """A batch as the frame path hands it over: skipped while `skip` lasts."""
    feed = rig.feed
    if feed.skip >= len(batch):  # as FrameProcessor.texts
        feed.skip -= len(batch)
    else:
        feed.read(batch[feed.skip:], rig.now)
def test_quote_ages_filed_under_a_guessed_platform_move_when_health_names_another() -> None:
    # The real gateway v0.2.0 in saxo-live mode: quotes say provider "saxo", /health says
    # saxo-live. Quotes sampled before the first /health answer (the monitor's first second) went
    # under saxo-sim, the gateway's reading of "saxo", and that histogram stayed forever: a
    # broker the gateway does not have, on every scrape.
    rig = Rig(brokers=())
    sample(rig, "2026-12-01T14:33:09.500000000Z", 1796135591.0)
    assert rig.value("quote_age_seconds_count", broker="saxo-sim") == 1
    rig.state.health([ProviderHealth("saxo-live", True, ())], requested_at=0.0)
    rig.run(1)  # the next sweep sees the platforms /health named
    sample(rig, "2026-12-01T14:33:10.500000000Z", 1796135592.0)
    assert rig.value("quote_age_seconds_count", broker="saxo-sim") is None
    assert rig.value("quote_age_seconds_count", broker="saxo-live") == 1


def test_quote_ages_under_the_platform_health_confirms_are_kept() -> None:
    rig = Rig(brokers=())
    sample(rig, "2026-12-01T14:33:09.500000000Z", 1796135591.0)
    rig.state.health([ProviderHealth("saxo-sim", True, ())], requested_at=0.0)
    rig.run(1)
    sample(rig, "2026-12-01T14:33:10.500000000Z", 1796135592.0)
    assert rig.value("quote_age_seconds_count", broker="saxo-sim") == 2
