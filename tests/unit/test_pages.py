"""The public pages' language choice and texts, and the banks they offer."""

from __future__ import annotations

import re

import pytest

from sekat.api.web.banks import BANKS
from sekat.api.web.language import DEFAULT, TEXT, choose
from sekat.identifiers import normalise_bank


@pytest.mark.parametrize(("asked", "accept", "chosen"), [
    ("en", "ms-MY,ms", "en"),  # the page's switch wins over the browser
    ("ms", "en-GB", "ms"),
    (None, "en-GB,en;q=0.9,ms;q=0.8", "en"),
    (None, "ms-MY,ms;q=0.9,en;q=0.8", "ms"),
    (None, "zh-CN,zh;q=0.9,en;q=0.5", "en"),  # the first of ours the browser ranks
    (None, "en;q=0.2,ms;q=0.7", "ms"),  # by weight, not position
    (None, "zsm", "ms"),
    (None, "zh-CN,ta", DEFAULT),  # neither: the national language
    (None, None, DEFAULT),
    ("fr", "en;q=0", DEFAULT),  # q=0 means "not this one"
    (None, "en;q=abc", DEFAULT),
])
def test_the_language_is_the_switch_then_the_browser_then_bahasa_malaysia(asked: str | None, accept: str | None,
                                                                         chosen: str) -> None:
    assert choose(asked, accept) == chosen


def test_both_languages_say_every_sentence_with_the_same_placeholders() -> None:
    assert set(TEXT["ms"]) == set(TEXT["en"])
    for name in TEXT["ms"]:
        # {What} is {what} capitalised, for a language that starts the sentence with it
        ms, en = (set(re.findall(r"{(\w+)}", TEXT[lang][name].lower())) for lang in ("ms", "en"))
        assert ms == en, name
        assert TEXT["ms"][name].count("|") == TEXT["en"][name].count("|"), name
    for lang in TEXT:
        assert "997" in TEXT[lang]["listed_do"] and "997" in TEXT[lang]["help"]


def test_every_bank_offered_is_a_bic_the_index_keys_accounts_by() -> None:
    assert len({bic for bic, _ in BANKS}) == len(BANKS)
    for bic, name in BANKS:
        assert normalise_bank(bic) == bic and name


def test_the_banks_offered_include_the_islamic_banks_under_their_own_bics() -> None:
    # An account at an Islamic bank is reported under that bank's BIC: a check under its parent's would miss it.
    offered = dict(BANKS)
    for bic in ("MBISMYKL", "CTBBMYKL", "PIBEMYKL", "RHBAMYKL", "HLIBMYKL", "AISLMYKL", "AGOBMYK1"):
        assert bic in offered, bic
