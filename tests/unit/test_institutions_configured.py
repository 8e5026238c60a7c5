"""What a starting relay takes from the institutions the agency API configured (``sekat.relay.configured``)."""

from __future__ import annotations

import logging

import orjson
import pytest

from sekat.institutions import parse_institutions
from sekat.relay.configured import checked, merged

SECRET = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"


def test_a_record_that_does_not_pass_is_left_out_naming_its_id_never_its_secret(
        caplog: pytest.LogCaptureFixture) -> None:
    records = {"AGROMYKL": orjson.dumps({"url": "https://hooks.agro.example/s", "secrets": [SECRET]}),
               "BADUMYKL": orjson.dumps({"url": "http://hooks.example/s", "secrets": [SECRET]}),
               "JUNKMYKL": b"not json"}
    with caplog.at_level(logging.WARNING):
        found = checked(records, loopback_http=False)
    assert list(found) == ["AGROMYKL"] and found["AGROMYKL"].url == "https://hooks.agro.example/s"
    assert "BADUMYKL on the institutions topic left out: url must be https" in caplog.text
    assert "JUNKMYKL on the institutions topic left out: not a JSON object" in caplog.text
    assert SECRET[6:] not in caplog.text


def test_an_institution_in_the_file_and_on_the_topic_is_the_files(caplog: pytest.LogCaptureFixture) -> None:
    def one(url: str) -> dict:
        return parse_institutions({"institutions": [{"id": "AGROMYKL", "url": url, "secrets": [SECRET]}]}, False)

    from_file, from_topic = one("https://file.example/"), one("https://api.example/")
    other = parse_institutions({"institutions": [{"id": "XOXMVNO", "url": "https://x.example/", "secrets": [SECRET]}]},
                               False)
    with caplog.at_level(logging.WARNING):
        both = merged(from_file, {**from_topic, **other})
    assert both["AGROMYKL"].url == "https://file.example/" and set(both) == {"AGROMYKL", "XOXMVNO"}
    assert "AGROMYKL are in SEKAT_INSTITUTIONS_FILE and configured through the API" in caplog.text
