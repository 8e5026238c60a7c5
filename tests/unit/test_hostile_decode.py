"""Hostile input against the decoders (pure): every case is a record or a reason, never an exception.

The cases (tests/hostile.py) are labelled by the contract; here each one goes
through the same decoder the worker uses, thousands of times a second. The
same cases go through a real worker in tests/reliability/test_hostile_input.py.
"""

from __future__ import annotations

from hypothesis import HealthCheck, given, settings

from sekat.decode.calls import decode_call
from sekat.decode.fields import REASONS
from sekat.decode.transfers import decode_transfer
from sekat.records import Call, Rejection, Transfer
from tests.hostile import LISTED_ACCOUNT, LISTED_BANK, LISTED_PHONE, Case, hostile

TRIED: list[int] = []


@settings(max_examples=2000, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(case=hostile())
def test_every_hostile_input_is_a_record_or_a_reason(case: Case) -> None:
    TRIED.append(1)
    result = decode_transfer(case.raw) if case.stream == "transfers" else decode_call(case.raw)
    if case.good:
        assert isinstance(result, (Transfer, Call)), (case.what, result)
        assert result.event_id == case.event_id
        if isinstance(result, Call):  # look-alike digits are the same number: a listed caller cannot hide
            assert result.caller.e164 == LISTED_PHONE, case.what
        else:
            assert result.payee.account is not None and result.payee.account.key == \
                f"account:{LISTED_BANK}:{LISTED_ACCOUNT}", case.what
    else:
        assert isinstance(result, Rejection), (case.what, case.raw[:200], result)
        assert result.reason in REASONS and result.message, result


def test_report_how_many_inputs_were_tried() -> None:
    print(f"\nhostile input (decoders): {len(TRIED)} inputs tried")
    assert len(TRIED) >= 100


def test_look_alike_digits_in_an_amount_are_refused() -> None:
    """Arabic-Indic or full-width digits are not the contract's decimal string (Decimal() would accept them)."""
    import orjson

    from tests.hostile import transfer

    for amount in ("١٥٠٠.٠٠", "１５００", "15٠٠"):
        result = decode_transfer(orjson.dumps(transfer("t-1") | {"amount": amount}))
        assert isinstance(result, Rejection) and result.reason == "invalid_amount", (amount, result)
