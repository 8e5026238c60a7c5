"""CDR CSV lines and call-attempt events → Calls: mappings, defaults and failures."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from sekat.decode.call_attempt import decode_call_attempt
from sekat.decode.cdr import CdrCsvDecoder
from sekat.decode.formats import call_decoder
from sekat.records import Call, Rejection
from sekat.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
DEFAULT = Settings().cdr_column_map()


def calls(results: list) -> list[Call]:
    assert all(isinstance(r, Call) for r in results), results
    return results


def test_default_mapping_reads_every_line_of_the_sample() -> None:
    first, second, third = calls(CdrCsvDecoder(DEFAULT)((FIXTURES / "cdr_default.csv").read_bytes()))
    assert (first.event_id, first.call_id, first.operator) == ("CDR-0001", "CDR-0001", "CELCOM")
    assert first.caller.e164 == "+60376543210" and first.callee.e164 == "+60123456789"
    assert (first.type, first.caller_network, first.presentation) == ("voice", "international", "restricted")
    assert first.occurred_at == datetime(2026, 11, 28, 10, 14, 2, tzinfo=timezone.utc)
    # Compact switch timestamp, number without '+', CDR service code, numeric presentation indicator.
    assert second.occurred_at == datetime(2026, 11, 28, 10, 14, 5, tzinfo=timezone.utc)
    assert second.caller.e164 == "+60376543210"
    assert (second.type, second.caller_network, second.presentation) == ("sms", "on-net", "allowed")
    # Optional columns left empty: voice, network and presentation unknown.
    assert (third.type, third.caller_network, third.presentation) == ("voice", None, None)
    assert third.caller.e164 == "+442079460018"


def test_custom_mapping_and_delimiter_from_settings() -> None:
    settings = Settings.from_environ({
        "SEKAT_CALLS_FORMAT": "cdr-csv", "SEKAT_CDR_DELIMITER": ";",
        "SEKAT_CDR_COLUMNS": "occurred_at=1, operator=2, caller=4, callee=5, call_id=6, presentation=7, type=8",
    })
    [call] = calls(call_decoder(settings)((FIXTURES / "cdr_custom.csv").read_bytes()))
    assert (call.call_id, call.operator, call.presentation, call.type) == ("CALL-77", "MAXIS", "unavailable", "voice")
    assert call.caller_network is None


def test_tab_delimiter() -> None:
    decoder = call_decoder(Settings.from_environ({"SEKAT_CALLS_FORMAT": "cdr-csv", "SEKAT_CDR_DELIMITER": "tab"}))
    [call] = calls(decoder(b"X1\t2026-11-28T10:00:00Z\t+60376543210\t+60123456789\tsms\tDIGI"))
    assert call.type == "sms" and call.operator == "DIGI"


def line(**changes: str) -> bytes:
    cells = ["CDR-9", "2026-11-28T10:14:02Z", "+60376543210", "+60123456789", "voice", "CELCOM", "", ""]
    names = ["call_id", "occurred_at", "caller", "callee", "type", "operator", "caller_network", "presentation"]
    for name, value in changes.items():
        cells[names.index(name)] = value
    return ",".join(cells).encode()


@pytest.mark.parametrize("raw,reason,field", [
    (line(caller="not a number"), "invalid_phone", "caller (column 3, line 1)"),
    (line(callee=""), "missing_field", "callee (column 4, line 1)"),
    (line(occurred_at="28/11/2026"), "invalid_timestamp", "occurred_at (column 2, line 1)"),
    (line(type="fax"), "invalid_value", "type (column 5, line 1)"),
    (line(presentation="maybe"), "invalid_value", "presentation (column 8, line 1)"),
    (line(operator="CEL COM"), "invalid_value", "operator (column 6, line 1)"),
    (line(caller_network="x" * 33), "invalid_value", "caller_network (column 7, line 1)"),
    (b"CDR-9,2026-11-28T10:14:02Z", "missing_field", "operator (column 6, line 1)"),
])
def test_bad_cdr_line_names_field_and_column(raw: bytes, reason: str, field: str) -> None:
    [rejection] = CdrCsvDecoder(DEFAULT)(raw)
    assert isinstance(rejection, Rejection)
    assert (rejection.reason, rejection.field) == (reason, field)


def test_one_bad_line_of_several_is_its_own_rejection() -> None:
    good, bad = CdrCsvDecoder(DEFAULT)(line() + b"\n" + line(call_id="CDR-10", caller="abc"))
    assert isinstance(good, Call) and isinstance(bad, Rejection)
    assert bad.field == "caller (column 3, line 2)"


@pytest.mark.parametrize("raw,reason", [
    (b"", "empty"), (b"# only a comment\n\n", "empty"), (b"\xff\xfe\x00", "not_text"), (b"x" * 70000, "too_large"),
    (b'CDR-1,"unterminated', "invalid_value"),
])
def test_unusable_cdr_messages(raw: bytes, reason: str) -> None:
    [rejection] = CdrCsvDecoder(DEFAULT)(raw)
    assert isinstance(rejection, Rejection) and rejection.reason == reason


ATTEMPT = orjson.loads((FIXTURES / "call_attempt.json").read_bytes())


def test_call_attempt_event_maps_onto_the_call_contract() -> None:
    call = decode_call_attempt(orjson.dumps(ATTEMPT))
    assert isinstance(call, Call)
    assert (call.event_id, call.call_id, call.operator, call.type) == ("ca-20261128-0001", "ca-20261128-0001",
                                                                        "DIGI", "sms")
    assert call.caller.e164 == "+60376543210" and call.callee.e164 == "+60123456789"
    assert (call.presentation, call.caller_network) == ("restricted", "international")


def test_call_attempt_carries_duration_and_answered() -> None:
    call = decode_call_attempt(orjson.dumps({**ATTEMPT, "duration": 2, "answered": False}))
    assert isinstance(call, Call) and (call.duration, call.answered) == (2.0, False)
    bad = decode_call_attempt(orjson.dumps({**ATTEMPT, "answered": "yes"}))
    assert isinstance(bad, Rejection) and (bad.reason, bad.field) == ("wrong_type", "answered")


def test_cdr_duration_and_answered_columns() -> None:
    columns = {**DEFAULT, "duration": 9, "answered": 10}
    decoder = CdrCsvDecoder(columns)
    base = "CDR-9,2026-11-28T10:14:02Z,+60376543210,+60123456789,voice,CELCOM,,,"
    one, two, three = calls(decoder(f"{base}1.5,NOANSWER\n{base}75,answered\n{base},".encode()))
    assert (one.duration, one.answered) == (1.5, False)
    assert (two.duration, two.answered) == (75.0, True)
    assert (three.duration, three.answered) == (None, None)
    [bad] = decoder(f"{base}1m,0".encode())
    assert isinstance(bad, Rejection) and bad.field == "duration (column 9, line 1)"
    [bad] = decoder(f"{base}1,maybe".encode())
    assert isinstance(bad, Rejection) and bad.field == "answered (column 10, line 1)"


def test_call_attempt_defaults_to_voice_with_unknown_presentation() -> None:
    data = {k: v for k, v in ATTEMPT.items() if k not in ("service", "presentation", "origin_network")}
    call = decode_call_attempt(orjson.dumps(data))
    assert isinstance(call, Call) and (call.type, call.presentation, call.caller_network) == ("voice", None, None)


@pytest.mark.parametrize("field,value,reason", [
    ("attempt_id", None, "missing_field"), ("attempted_at", "soon", "invalid_timestamp"),
    ("calling_number", "abc", "invalid_phone"), ("called_number", 12, "wrong_type"),
    ("service", "fax", "invalid_value"), ("presentation", "hidden?", "invalid_value"),
    ("operator", "A B", "invalid_value"),
])
def test_bad_call_attempt_names_the_field(field: str, value: object, reason: str) -> None:
    data = dict(ATTEMPT)
    if value is None:
        del data[field]
    else:
        data[field] = value
    rejection = decode_call_attempt(orjson.dumps(data))
    assert isinstance(rejection, Rejection) and (rejection.reason, rejection.field) == (reason, field)


def test_calls_format_json_keeps_the_contract_decoder() -> None:
    raw = orjson.dumps({"event_id": "c-1", "occurred_at": "2026-11-28T10:14:02Z", "call_id": "x", "operator": "O",
                        "caller": "+60376543210", "callee": "+60123456789"})
    assert isinstance(call_decoder(Settings())(raw), Call)
