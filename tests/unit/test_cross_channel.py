"""cross_channel: a suspicious call to the payer, then money to a new payee (or a large sum), is held."""

from datetime import timedelta
from decimal import Decimal

from sekat.rules import cross_channel
from sekat.rules.outcome import Outcome
from sekat.rules.cross_channel import CallWarning
from tests.unit.events import T0, ctx, ms, transfer

PHONE = "phone:+60123456789"
PAYER = "account:MBBEMYKL:514012345678"
PAYEE = "account:CIBBMYKL:8001234567"
P = cross_channel.Params(lookback_minutes=30, new_payee=True, min_amount=Decimal("5000.00"))


def warned(minutes_before: float, event_id: str = "c-9") -> dict:
    at = ms(T0 - timedelta(minutes=minutes_before))
    return {PHONE: CallWarning(at, "+60376543210", event_id, "caller-on-blocklist")}


def test_call_then_new_payee_is_held_citing_both_events() -> None:
    [f] = cross_channel.evaluate(transfer(), ctx(warnings=warned(29.9)), P)
    assert f.outcome is Outcome.HOLD and f.identifier == PAYEE
    assert "c-9" in f.reason and "t-1" in f.reason and "never paid before" in f.reason
    assert "+60376543210" not in f.reason


def test_call_just_outside_the_lookback_does_nothing() -> None:
    assert cross_channel.evaluate(transfer(), ctx(warnings=warned(30.01)), P) == []


def test_a_call_after_the_transfer_does_not_count() -> None:
    assert cross_channel.evaluate(transfer(), ctx(warnings=warned(-1)), P) == []


def test_known_payee_below_the_amount_is_not_held() -> None:
    assert cross_channel.evaluate(transfer(amount="4999.99"), ctx(warnings=warned(5), paid_before={(PAYER, PAYEE)}),
                                  P) == []


def test_known_payee_at_the_amount_is_held() -> None:
    [f] = cross_channel.evaluate(transfer(amount="5000.00"),
                                 ctx(warnings=warned(5), paid_before={(PAYER, PAYEE)}), P)
    assert "5000.00" in f.reason


def test_no_call_no_hold_and_no_payer_phone_no_join() -> None:
    assert cross_channel.evaluate(transfer(), ctx(), P) == []
    assert cross_channel.evaluate(transfer(phone=None), ctx(warnings=warned(5)), P) == []


def test_paying_a_payee_again_keeps_it_known_for_history_days_from_the_latest_payment() -> None:
    params = cross_channel.Params(history_days=180)
    day = int(T0.timestamp()) // 86400
    [first] = cross_channel.paid(transfer(), ctx(), params, [])
    assert (first.kind, first.key, first.member, first.ttl_s) == ("paid", f"{PAYER}|{PAYEE}", str(day), 180 * 86400 - 1)
    # paid again 100 days later: remembered from then, not from the first payment (which would lapse at day 180)
    later = T0 + timedelta(days=100)
    remembered = ctx(now=later + timedelta(seconds=1))
    remembered.obs.values["paid"][f"{PAYER}|{PAYEE}"] = str(day)
    [again] = cross_channel.paid(transfer(at=later), remembered, params, [])
    assert (again.member, again.ttl_s) == (str(day + 100), 180 * 86400 - 1)


def test_a_payment_on_a_day_already_remembered_or_before_it_costs_no_write() -> None:
    params = cross_channel.Params(history_days=180)
    day = int(T0.timestamp()) // 86400
    known = ctx()
    known.obs.values["paid"][f"{PAYER}|{PAYEE}"] = str(day)
    assert cross_channel.paid(transfer(at=T0 + timedelta(hours=1)), known, params, []) == []
    assert cross_channel.paid(transfer(at=T0 - timedelta(days=3)), known, params, []) == []
    # a payment arriving after history_days is not remembered at all; one marked by an older version is re-marked
    assert cross_channel.paid(transfer(), ctx(now=T0 + timedelta(days=181)), params, []) == []
    legacy = ctx()
    legacy.obs.values["paid"][f"{PAYER}|{PAYEE}"] = "1"
    assert [w.member for w in cross_channel.paid(transfer(), legacy, params, [])] == [str(day)]
