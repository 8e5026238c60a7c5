"""Identifiers: one number however it is written; accounts as BIC8:digits; never an emergency number."""

from unittest.mock import patch

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sekat.errors import InvalidIdentifier
from sekat.identifiers import (AccountId, PhoneNumber, mask, normalise_account, normalise_bank, normalise_phone,
                               parse_key, parse_phone, scheme_account)


@pytest.mark.parametrize("raw", ["012-345 6789", "+60 12 345 6789", "60123456789", "0123456789",
                                 "0060123456789", "+60-12-3456789", " 012 345 6789 "])
def test_malaysian_mobile_written_any_way_is_one_number(raw: str) -> None:
    phone = normalise_phone(raw)
    assert phone.e164 == "+60123456789"
    assert phone.key == "phone:+60123456789"
    assert not phone.protected


def test_look_alike_digits_normalise_to_the_same_number() -> None:
    # Arabic-Indic digits: a scammer cannot dodge the list by writing them.
    assert normalise_phone("٠١٢٣٤٥٦٧٨٩").e164 == "+60123456789"


def test_foreign_number_keeps_its_country() -> None:
    assert normalise_phone("+1 202 555 0100").e164 == "+12025550100"


@pytest.mark.parametrize("raw", ["999", "112", "15999", "991", "994"])
def test_emergency_and_service_numbers_are_protected(raw: str) -> None:
    assert normalise_phone(raw).protected


@pytest.mark.parametrize("raw", ["", "abc", "+999", "1" * 40, "+60 1"])
def test_not_a_phone_number(raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_phone(raw)


@pytest.mark.parametrize("raw", ["5140 1234 5678", "5140-1234-5678", "514012345678", " 5140 - 1234 5678"])
def test_account_separators_are_removed(raw: str) -> None:
    account = normalise_account("MBBEMYKL", raw)
    assert account == AccountId("MBBEMYKL", "514012345678")
    assert account.key == "account:MBBEMYKL:514012345678"


def test_bic11_becomes_bic8() -> None:
    assert normalise_bank("cibbmyklxxx") == "CIBBMYKL"
    assert normalise_account("CIBBMYKLXXX", "8001234567").value == "CIBBMYKL:8001234567"


@pytest.mark.parametrize("bank,number", [("MBBEMYKL", "12ab34"), ("MBBEMYKL", "123"), ("MBBEMYKL", "٠١٢٣٤٥٦"),
                                         ("MBB", "514012345678"), ("MBBE MYKL", "514012345678")])
def test_bad_accounts_are_refused(bank: str, number: str) -> None:
    with pytest.raises(InvalidIdentifier):
        normalise_account(bank, number)


def test_mask_keeps_only_the_last_four_digits() -> None:
    assert mask("+60123456789") == "********6789"
    assert normalise_account("MBBEMYKL", "514012345678").masked() == "MBBEMYKL:********5678"
    assert mask("123") == "****"


def test_parse_key_round_trips() -> None:
    for key in ("phone:+60123456789", "account:CIBBMYKL:8001234567"):
        assert parse_key(key).key == key
    with pytest.raises(InvalidIdentifier):
        parse_key("email:a@b")


def test_a_scheme_named_account_outside_malaysia_is_its_own_key() -> None:
    wallet = scheme_account("FIRNZAJJ", "msisdn", "+27 71 055 0134")
    assert wallet.key == "account:FIRNZAJJ:MSISDN:+27710550134"
    assert parse_key(wallet.key) == wallet  # filed, listed and looked up as the same key
    assert scheme_account("FIRNZAJJ", "MSISDN", "0710550134").key == "account:FIRNZAJJ:0710550134"  # digits: plain
    assert scheme_account("MBBEMYKL", "BBAN", "5140 1234 5678").key == "account:MBBEMYKL:514012345678"


@pytest.mark.parametrize("bank,scheme,raw", [
    ("MBBEMYKL", "MSISDN", "+60123456789"),  # a Malaysian bank's accounts are digits (or an IBAN), scheme or not
    ("MBBEMYKL", "BBAN", "5140-1234-56AB"),
    ("FIRNZAJJ", None, "wallet.9f2c41d7"),  # no scheme name: only digits or an IBAN
    ("FIRNZAJJ", "MSISDN", "a:b"),
    ("FIRNZAJJ", "MSISDN", "x" * 70),
])
def test_scheme_named_accounts_that_stay_refused(bank: str, scheme: str | None, raw: str) -> None:
    with pytest.raises(InvalidIdentifier):
        scheme_account(bank, scheme, raw)
    with pytest.raises(InvalidIdentifier):
        parse_key(f"account:MBBEMYKL:MSISDN:{raw}")


def _either(raw: str) -> PhoneNumber | str:
    try:
        return normalise_phone.__wrapped__(raw, "MY")  # uncached: the fast spelling check, then phonenumbers
    except InvalidIdentifier:
        return "invalid"


def _phonenumbers(raw: str) -> PhoneNumber | str:
    text = raw.strip()
    if not text or len(text) > 32:
        return "invalid"
    try:
        return parse_phone(text, "MY")
    except InvalidIdentifier:
        return "invalid"


written = st.builds(
    lambda prefix, digits, gaps: prefix + "".join(g + d for g, d in zip(gaps, digits)),
    st.sampled_from(["+60", "0", "60", "+600", "+6", "00", "+65", "+60 ", " 0", "٠", "+٦٠", ""]),
    st.text(alphabet="0123456789١٢٣٤٥٦٧٨٩１２", min_size=0, max_size=12).map(lambda d: "1" + d),
    st.lists(st.sampled_from(["", "", "", " ", "-", " - ", "\t", ".", "("]), min_size=13, max_size=13),
)


@settings(max_examples=3000, deadline=None)
@given(written)
def test_the_mobile_fast_path_gives_phonenumbers_answer(raw: str) -> None:
    assert _either(raw) == _phonenumbers(raw)


@pytest.mark.parametrize(("raw", "e164"), [("+60123456789", "+60123456789"), ("012-345 6789", "+60123456789"),
                                           ("60182011426", "+60182011426"), ("601197531536", "+601197531536")])
def test_malaysian_mobiles_in_their_usual_spellings_need_no_phonenumbers(raw: str, e164: str) -> None:
    with patch("sekat.identifiers.parse_phone", side_effect=AssertionError("phonenumbers asked")):
        assert normalise_phone.__wrapped__(raw, "MY") == PhoneNumber(e164)
