"""call_burst: one caller reaching K distinct callees within a minute is labelled and reported."""

from datetime import timedelta

from sekat.rules import call_burst
from sekat.rules.outcome import Outcome
from tests.unit.events import T0, call, ctx, ms

CALLER = "phone:+60376543210"
P = call_burst.Params(min_callees=3, window_seconds=60)


def callees(n: int, start_s: int = 0) -> list[tuple[int, str]]:
    return [(ms(T0 + timedelta(seconds=start_s + i)), f"phone:+6012555{i:04d}") for i in range(n)]


def test_just_below_the_threshold_does_nothing() -> None:
    assert call_burst.evaluate(call(at=T0 + timedelta(seconds=10)), ctx(outbound={CALLER: callees(1)}), P) == []


def test_at_the_threshold_labels_and_reports_the_caller() -> None:
    [f] = call_burst.evaluate(call(at=T0 + timedelta(seconds=10)), ctx(outbound={CALLER: callees(2)}), P)
    assert f.outcome is Outcome.LABEL and f.identifier == CALLER and "3 distinct callees" in f.reason
    assert f.report is not None and "3 distinct callees" in f.report.reason and f.report.ttl_days == 7


def test_callees_spread_over_more_than_the_window_do_not_add_up() -> None:
    spread = [(ms(T0 - timedelta(seconds=120)), "phone:+60125550001"), (ms(T0 - timedelta(seconds=61)),
                                                                        "phone:+60125550002")]
    assert call_burst.evaluate(call(at=T0), ctx(outbound={CALLER: spread}), P) == []


def test_calling_the_same_person_again_is_not_a_burst() -> None:
    same = [(ms(T0), "phone:+60123456789"), (ms(T0 + timedelta(seconds=1)), "phone:+60123456789")]
    assert call_burst.evaluate(call(at=T0 + timedelta(seconds=2)), ctx(outbound={CALLER: same}), P) == []


def test_an_emergency_caller_is_never_a_burst() -> None:
    assert call_burst.evaluate(call(caller="999"), ctx(outbound={"phone:999": callees(5)}), P) == []
