"""Safety brake, pure parts: what a decision counts towards, limits per dimension, braked matches go to shadow."""

from __future__ import annotations

import asyncio
from collections.abc import Mapping

import pytest
from prometheus_client import CollectorRegistry

from sekat.brake.guard import Brake, Limits, audit_record, tally
from sekat.brake.metrics import BrakeMetrics
from sekat.brake.store import Trip, masked_target, valid_target
from sekat.streams.output import OutputTopics
from sekat.errors import ConfigError
from sekat.records import Entry, Status
from sekat.rules import engine
from sekat.rules.policy import DEFAULT_POLICY_FILE, parse_policy
from sekat.settings import Settings
from tests.unit.events import T0, call, ctx, transfer

PAYEE = "account:CIBBMYKL:8001234567"
POLICY = parse_policy({"version": "t", "rules": {"blocklist_match": {}},
                       "actions": __import__("yaml").safe_load(DEFAULT_POLICY_FILE.read_text())["actions"]})


ROBOCALLER = "phone:+60376543210"


def listed(key: str = PAYEE, status: Status = Status.REPORTED) -> Entry:
    return Entry(key=key, status=status, source="PDRM", case_ref="KL/1", sources=("PDRM",))


def decide(braked: frozenset[str] = frozenset(), event_id: str = "t-1", status: Status = Status.CONFIRMED):
    c = ctx(lookups={PAYEE: listed(status=status)})
    c = type(c)(c.now, c.lookups, c.obs, braked)
    return engine.decide_transfer(transfer(event_id), c, POLICY).decision


def robocall(event_id: str, status: Status):
    c = ctx(lookups={ROBOCALLER: listed(ROBOCALLER, status)})
    return engine.decide_call(call(event_id), c, POLICY).decision


class MemoryBrakeStore:
    """``BrakeStore``'s counting and tripping, in memory, one fixed window (the unit tests stay within it)."""

    def __init__(self) -> None:
        self.counts: dict[str, int] = {}
        self.trips: dict[str, Trip] = {}

    async def add(self, counts: Mapping[str, int], now_s: float, window_s: int) -> dict[str, float]:
        for t, n in counts.items():
            self.counts[t] = self.counts.get(t, 0) + n
        return {t: float(self.counts[t]) for t in counts}

    async def trip(self, trip: Trip) -> bool:
        return self.trips.setdefault(trip.target, trip) is trip

    async def tripped(self) -> dict[str, dict[str, object]]:
        return {t: trip.to_json() for t, trip in self.trips.items()}


def brake(limits: Limits) -> tuple[Brake, MemoryBrakeStore]:
    store = MemoryBrakeStore()
    topics = OutputTopics(*(None,) * 5)  # type: ignore[arg-type]  # the trip's audit send fails and is logged
    return Brake(store, limits, BrakeMetrics(CollectorRegistry()), topics, "w1",  # type: ignore[arg-type]
                 clock=lambda: T0.timestamp()), store


def test_a_decision_counts_its_commands_towards_its_rule_entry_and_source() -> None:
    d = decide(status=Status.REPORTED)
    assert len(d.commands) == 1  # a reported payee: the transfer is held at the payer's bank
    counts = tally([d, decide(event_id="t-2", status=Status.REPORTED)])
    assert counts == {"rule:blocklist_match": 2, f"entry:{PAYEE}": 2, "source:PDRM": 2}


def test_a_confirmed_entry_counts_towards_its_rule_and_source_but_not_itself() -> None:
    d = decide()
    assert len(d.commands) == 2  # hold at the payer's bank, freeze at the payee's
    assert tally([d]) == {"rule:blocklist_match": 2, "source:PDRM": 2}


@pytest.mark.parametrize("status,tripped", [(Status.CONFIRMED, False), (Status.REPORTED, True)])
def test_a_robocaller_at_ten_times_the_entry_limit_is_braked_only_if_merely_reported(
        status: Status, tripped: bool) -> None:
    """An autodialer places several calls a second per number: a confirmed one is blocked on every call."""
    limits = Limits(window_s=60, phone_reported=30, rule=60_000, source=60_000)
    guard, store = brake(limits)

    async def flood() -> None:
        for batch in range(10):  # 300 calls, 10x the entry limit, in one window
            decisions = [robocall(f"c-{batch}-{i}", status) for i in range(30)]
            assert all(d.commands for d in decisions)
            await guard.count(decisions)

    asyncio.run(flood())
    assert (f"entry:{ROBOCALLER}" in store.trips) is tripped
    assert store.counts["rule:blocklist_match"] == 300 and store.counts["source:PDRM"] == 300
    assert "rule:blocklist_match" not in store.trips and "source:PDRM" not in store.trips
    # The next call from it, as this worker now decides it: blocked unless braked.
    c = ctx(lookups={ROBOCALLER: listed(ROBOCALLER, status)})
    after = engine.decide_call(call("c-next"), type(c)(c.now, c.lookups, c.obs, guard.engaged), POLICY).decision
    assert bool(after.commands) is not tripped


def test_the_rule_and_source_dimensions_still_brake_confirmed_entries() -> None:
    guard, store = brake(Limits(window_s=60, phone_reported=30, rule=50, source=0))
    asyncio.run(guard.count([robocall(f"c-{i}", Status.CONFIRMED) for i in range(60)]))
    assert set(store.trips) == {"rule:blocklist_match"}


def test_decisions_without_commands_and_shadow_matches_count_nothing() -> None:
    assert tally([decide(frozenset({f"entry:{PAYEE}"}))]) == {}


@pytest.mark.parametrize("target", [f"entry:{PAYEE}", "rule:blocklist_match", "source:PDRM"])
def test_a_braked_target_puts_the_match_in_shadow_and_sends_nothing(target: str) -> None:
    d = decide(frozenset({target}))
    assert d.commands == () and d.outcome == "ALLOW" and d.shadow_outcome == "BLOCK"
    [m] = d.matches
    assert m.mode == "shadow" and m.reason.endswith("[safety brake: shadow]")


def test_another_braked_target_changes_nothing() -> None:
    d = decide(frozenset({"entry:account:CIBBMYKL:1111111111", "rule:mule_inflow", "source:BNM"}))
    assert len(d.commands) == 2 and d.matches[0].mode == "enforce"


def test_limits_are_per_dimension_and_zero_is_off() -> None:
    limits = Limits(window_s=60, account_reported=10, rule=0, source=5)
    assert (limits.of(f"entry:{PAYEE}"), limits.of("rule:x"), limits.of("source:x"), limits.of("other:x")) == \
        (10, 0, 5, 0)


def test_entry_limits_are_per_kind_and_status_and_an_unlisted_identifier_counts_as_reported() -> None:
    limits = Limits(phone_reported=1, phone_confirmed=2, account_reported=3, account_confirmed=4)
    assert [limits.of(t, s) for t in (f"entry:{ROBOCALLER}", f"entry:{PAYEE}") for s in ("", "reported", "confirmed")] \
        == [1, 1, 2, 3, 3, 4]
    assert limits.of("entry:email:x@y", "reported") == 0


def test_sms_sender_ids_links_and_domains_have_the_phone_limits() -> None:
    limits = Limits(phone_reported=1, phone_confirmed=2, account_reported=3, account_confirmed=4)
    for target in ("entry:sender:POSLAJU", "entry:url:evil.com.my/pay", "entry:domain:evil.com.my"):
        assert (limits.of(target, "reported"), limits.of(target, "confirmed")) == (1, 2), target


def test_the_default_limits_never_brake_a_confirmed_entry_and_sit_far_above_scam_volumes() -> None:
    """Autodialers place several calls a second per number; mule accounts take tens to hundreds of transfers an
    hour. The defaults (the settings') leave both alone when reported, and never count confirmed entries."""
    s, limits = Settings.from_environ({}), Limits()
    assert (limits.phone_reported, limits.phone_confirmed, limits.account_reported, limits.account_confirmed,
            limits.rule, limits.source, limits.window_s) == \
        (s.brake_phone_reported_max, s.brake_phone_confirmed_max, s.brake_account_reported_max,
         s.brake_account_confirmed_max, s.brake_rule_max, s.brake_source_max, s.brake_window_s)
    per_minute = 60 / limits.window_s
    autodialer = 10 * 60 * per_minute  # 10 calls a second from one number, one LABEL_CALL each
    assert limits.of(f"entry:{ROBOCALLER}", "reported") >= 3 * autodialer
    mule_burst = 300 / 60 * 10 * per_minute  # 300 transfers an hour, ten times that rate for a minute
    assert limits.of(f"entry:{PAYEE}", "reported") >= 2 * mule_burst
    assert limits.of(f"entry:{ROBOCALLER}", "confirmed") == limits.of(f"entry:{PAYEE}", "confirmed") == 0


@pytest.mark.parametrize("status,calls,tripped", [(Status.REPORTED, 600, False), (Status.REPORTED, 1_900, True),
                                                  (Status.CONFIRMED, 20_000, False)])
def test_at_the_default_limits_an_autodialer_is_braked_only_if_reported_and_far_faster_than_one(
        status: Status, calls: int, tripped: bool) -> None:
    guard, store = brake(Limits())

    async def flood() -> None:
        for batch in range(calls // 100):
            await guard.count([robocall(f"c-{batch}-{i}", status) for i in range(100)])

    asyncio.run(flood())
    assert (f"entry:{ROBOCALLER}" in store.trips) is tripped
    if tripped:
        trip = store.trips[f"entry:{ROBOCALLER}"]
        assert (trip.limit, trip.status) == (1_800, "reported") and trip.to_json()["status"] == "reported"


def test_a_trip_under_reported_lapses_once_the_entry_is_confirmed_and_one_under_confirmed_does_not() -> None:
    guard, _ = brake(Limits(account_confirmed=1_000))
    reported = Trip(f"entry:{PAYEE}", 140, 120, 60, "2026-11-28T10:15:01.000Z", "w1", "reported").to_json()
    caller = Trip(f"entry:{ROBOCALLER}", 2_000, 1_000, 60, "2026-11-28T10:15:01.000Z", "w1", "confirmed").to_json()
    guard.engaged = frozenset({f"entry:{PAYEE}", f"entry:{ROBOCALLER}", "rule:mule_inflow"})
    guard.trips = {f"entry:{PAYEE}": reported, f"entry:{ROBOCALLER}": caller}
    still_reported = {PAYEE: listed(), ROBOCALLER: listed(ROBOCALLER, Status.CONFIRMED)}
    assert guard.applying(still_reported) == guard.engaged and guard.lapsing == {}
    confirmed = {PAYEE: listed(status=Status.CONFIRMED), ROBOCALLER: listed(ROBOCALLER, Status.CONFIRMED)}
    assert guard.applying(confirmed) == {f"entry:{ROBOCALLER}", "rule:mule_inflow"}
    assert set(guard.lapsing) == {f"entry:{PAYEE}"}
    c = ctx(lookups=confirmed)
    acted = engine.decide_transfer(transfer("t-9"), type(c)(c.now, c.lookups, c.obs, guard.applying(confirmed)),
                                   POLICY).decision
    assert len(acted.commands) == 2 and acted.matches[0].mode == "enforce"
    guard.lapsing = {}
    guard.trips[f"entry:{PAYEE}"] = {k: v for k, v in reported.items() if k != "status"}  # no status: reported
    assert guard.applying(confirmed) == {f"entry:{ROBOCALLER}", "rule:mule_inflow"} and set(guard.lapsing) == {
        f"entry:{PAYEE}"}


def test_targets_are_validated_and_masked_for_logs() -> None:
    assert valid_target(f"entry:{PAYEE}") and valid_target("rule:mule_inflow") and valid_target("source:PDRM")
    assert not valid_target("entries:x") and not valid_target("rule:") and not valid_target("entry:a b")
    assert masked_target(f"entry:{PAYEE}") == "entry:account:CIBBMYKL:******4567"
    assert masked_target("entry:phone:+60123456789") == "entry:phone:********6789"
    assert masked_target("rule:mule_inflow") == "rule:mule_inflow"


def test_audit_record_is_deterministic_and_names_the_target() -> None:
    key, body = audit_record("trip", "rule:x", T0, {"count": 3})
    assert key == audit_record("trip", "rule:x", T0, {"count": 3})[0] and key.startswith(b"brake-")
    assert b'"stream":"brake"' in body and b'"action":"trip"' in body and b'"count":3' in body


@pytest.mark.parametrize("name,value", [("SEKAT_BRAKE_WINDOW_S", "0"), ("SEKAT_BRAKE_ENTRY_MAX", "-1"),
                                        ("SEKAT_BRAKE_ENTRY_MAX", "lots"), ("SEKAT_BRAKE_PHONE_REPORTED_MAX", "-1"),
                                        ("SEKAT_BRAKE_PHONE_CONFIRMED_MAX", "many"),
                                        ("SEKAT_BRAKE_ACCOUNT_REPORTED_MAX", "1e3"),
                                        ("SEKAT_BRAKE_ACCOUNT_CONFIRMED_MAX", "-2"),
                                        ("SEKAT_BRAKE_RULE_MAX", "many"), ("SEKAT_BRAKE_SOURCE_MAX", "-5")])
def test_bad_brake_settings_stop_start_up_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: value})


def test_the_single_entry_limit_still_sets_both_reported_limits_and_may_not_be_mixed_with_them() -> None:
    s = Settings.from_environ({"SEKAT_BRAKE_ENTRY_MAX": "50"})
    assert (s.brake_phone_reported_max, s.brake_account_reported_max) == (50, 50)
    assert (s.brake_phone_confirmed_max, s.brake_account_confirmed_max) == (0, 0)
    with pytest.raises(ConfigError, match="SEKAT_BRAKE_ENTRY_MAX.*SEKAT_BRAKE_ACCOUNT_REPORTED_MAX"):
        Settings.from_environ({"SEKAT_BRAKE_ENTRY_MAX": "50", "SEKAT_BRAKE_ACCOUNT_REPORTED_MAX": "60"})


def test_e_wallets_and_hashed_proxies_are_braked_at_the_account_limits() -> None:
    limits = Limits(phone_reported=1800, account_reported=120, account_confirmed=0)
    for target in ("entry:wallet:TNG:0123456789", f"entry:proxy:NRIC:{'ab' * 16}"):
        assert valid_target(target)
        assert limits.of(target, "reported") == 120 and limits.of(target, "confirmed") == 0
    assert masked_target("entry:wallet:TNG:0123456789") == "entry:wallet:TNG:******6789"
