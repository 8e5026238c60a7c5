"""The purpose of a read, stated to the API (``purpose``) and to the CLI (``--purpose``): one rule for both."""

import argparse

import pytest

from sekat.api.entries import required_purpose
from sekat.audit import purpose_of
from sekat.cli.blocklist import purpose
from sekat.errors import SekatError


def test_a_purpose_is_stripped_cut_to_200_characters_and_needs_at_least_3() -> None:
    assert purpose_of("  case KL-2026-118  ", "you read it") == "case KL-2026-118"
    assert purpose_of("x" * 300, "you read it") == "x" * 200
    for short in (None, "", "  ab  "):
        with pytest.raises(ValueError, match="say why you read it"):
            purpose_of(short, "you read it")


def test_the_api_and_the_cli_refuse_a_short_purpose_with_the_same_words() -> None:
    from fastapi import HTTPException
    with pytest.raises(HTTPException) as api:
        required_purpose("ab", "you read this entry")
    with pytest.raises(SekatError) as cli:
        purpose(argparse.Namespace(purpose="ab"), "you read this entry")
    assert api.value.status_code == 422 and api.value.detail["field"] == "purpose"
    assert api.value.detail["message"] == "purpose: is required: " + str(cli.value).removeprefix("--purpose: ")
    assert purpose(argparse.Namespace(purpose=" y" * 150), "x") == required_purpose(" y" * 150, "x")
