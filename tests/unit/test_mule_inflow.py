"""mule_inflow: N distinct payers into one payee within T minutes holds and reports the payee."""

from datetime import timedelta

from sekat.rules import mule_inflow
from sekat.rules.outcome import Outcome
from tests.unit.events import T0, ctx, ms, transfer

PAYEE = "account:CIBBMYKL:8001234567"
P = mule_inflow.Params(min_payers=3, window_minutes=10)


def payers(n: int, start_min: int = 0) -> list[tuple[int, str]]:
    return [(ms(T0 + timedelta(minutes=start_min + i)), f"account:MBBEMYKL:{1000 + i}") for i in range(n)]


def test_just_below_the_threshold_does_nothing() -> None:
    assert mule_inflow.evaluate(transfer(at=T0 + timedelta(minutes=5)), ctx(inflow={PAYEE: payers(1)}), P) == []


def test_at_the_threshold_holds_and_reports_the_payee_account() -> None:
    [f] = mule_inflow.evaluate(transfer(at=T0 + timedelta(minutes=5)), ctx(inflow={PAYEE: payers(2)}), P)
    assert f.outcome is Outcome.HOLD and f.code == "mule-inflow" and f.identifier == PAYEE
    assert "3 distinct payers within 10 min" in f.reason and "t-1" in f.reason
    assert f.report is not None and "3 distinct payers" in f.report.reason and f.report.ttl_days == 30


def test_the_same_payer_twice_is_one_payer() -> None:
    same = [(ms(T0), "account:MBBEMYKL:514012345678")]
    assert mule_inflow.evaluate(transfer(at=T0 + timedelta(minutes=1)), ctx(inflow={PAYEE: sorted(same + payers(1))}),
                                P) == []


def test_payers_further_apart_than_the_window_do_not_add_up() -> None:
    old = payers(2, start_min=-30)
    assert mule_inflow.evaluate(transfer(at=T0), ctx(inflow={PAYEE: old}), P) == []


def test_a_late_event_older_than_the_others_still_completes_the_window() -> None:
    later = payers(2, start_min=3)
    [f] = mule_inflow.evaluate(transfer(at=T0), ctx(inflow={PAYEE: later}), P)
    assert f.outcome is Outcome.HOLD


def test_a_proxy_only_payee_is_counted_by_its_mobile_number() -> None:
    key = "phone:+60123456789"
    [f] = mule_inflow.evaluate(transfer(payee=None, proxy="012-345 6789"), ctx(inflow={key: payers(2)}), P)
    assert f.identifier == key and f.report is not None
