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
