"""``sekat send`` and ``sekat tail`` without a broker: what a line becomes, and how a record is printed.

tests/integration/test_send_tail.py runs both commands against the real stack and a worker.
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest

from sekat.blocklist.bulk import row_report
from sekat.cli.send import BadLine, record_of
from sekat.cli.tail import json_line, topics_of
from sekat.records import Report
from sekat.settings import Settings

NOW = datetime(2026, 11, 28, 10, 15, tzinfo=timezone.utc)


def to_report(row: dict[str, object]) -> Report:
    return row_report(row, NOW, filed_by="cli")


def test_a_transfer_is_keyed_by_its_payer_account_and_sent_as_written() -> None:
    line = (b'{"event_id": "t-1", "amount": 1500.00, "payer": {"bank": "MBBEMYKL", "account": "5140 1234 5678"},'
            b' "payee": {"bank": "CIBBMYKL", "account": "8001234567"}}\n')
    assert record_of("transfers", line, to_report) == ("5140 1234 5678", line.strip())


def test_a_call_is_keyed_by_its_caller() -> None:
    key, _ = record_of("calls", b'{"event_id": "c-1", "caller": "+60376543210", "callee": "0123456789"}', to_report)
    assert key == "+60376543210"


def test_an_event_without_its_key_field_is_sent_without_a_key() -> None:
    # The worker dead-letters it: sending it is how a user sees a dead letter.
    assert record_of("transfers", b'{"event_id": "t-2", "payer": "MBBEMYKL"}', to_report) == (
        None, b'{"event_id": "t-2", "payer": "MBBEMYKL"}')


def test_a_report_is_filed_as_sekat_blocklist_add_files_it() -> None:
    key, value = record_of("reports", b'{"kind": "phone", "value": "012-345 6789", "status": "confirmed", '
                                      b'"source": "pdrm", "reason": "scam caller"}', to_report)
    body = orjson.loads(value)
    assert key == "phone:+60123456789"
    assert (body["kind"], body["value"], body["status"], body["source"], body["filed_by"]) == (
        "phone", "+60123456789", "confirmed", "PDRM", "cli")


@pytest.mark.parametrize("line, message", [
    (b'[1, 2]', "not a JSON object"),
    (b'"a string"', "not a JSON object"),
    (b'{"event_id": ', "not JSON"),
])
def test_a_line_that_is_not_a_json_object_cannot_be_sent(line: bytes, message: str) -> None:
    with pytest.raises(BadLine, match=message):
        record_of("calls", line, to_report)


def test_an_invalid_report_cannot_be_sent_and_the_message_names_the_field() -> None:
    with pytest.raises(BadLine, match="not a valid report: value: .*emergency"):
        record_of("reports", b'{"kind": "phone", "value": "999", "source": "PDRM"}', to_report)


def test_tail_prints_each_value_as_one_compact_json_line() -> None:
    assert json_line(b'{"action": "BLOCK_CALL",\n "reasons": ["listed"]}') == (
        '{"action":"BLOCK_CALL","reasons":["listed"]}')
    assert json_line(b"call-1,2026-11-28T10:14:02Z,+60376543210\n") == '"call-1,2026-11-28T10:14:02Z,+60376543210\\n"'
    assert json_line(None) == "null"


def test_tail_reads_each_routed_institutions_command_topic_too() -> None:
    settings = Settings.from_environ({"SEKAT_COMMAND_ROUTING": "per-institution", "SEKAT_ROUTE_BANKS": "MBBEMYKL",
                                      "SEKAT_ROUTE_OPERATORS": "CELCOM"})
    assert topics_of(settings, "freeze") == ["sekat.commands.freeze", "sekat.commands.freeze.MBBEMYKL"]
    assert topics_of(settings, "block") == ["sekat.commands.block", "sekat.commands.block.CELCOM"]
    assert topics_of(Settings(), "block") == ["sekat.commands.block"]
