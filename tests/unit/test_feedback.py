"""Feedback's pure parts: what the worker remembers of a command, whose key may speak for it, what counts."""

from __future__ import annotations

import asyncio
from dataclasses import replace

import msgspec
import pytest

from sekat.api.keys import ApiKeyStore, parse_scopes
from sekat.blocklist.feedback import SentCommand, false_positive_institutions
from sekat.errors import SekatError
from sekat.records import Action, Command
from sekat.rules.engine import Verdict
from sekat.rules.registry import StateWrite
from sekat.streams.sent import SENT, payment_ids, recording_sent, sent_commands
from tests.unit.test_blocklist_match import NOW, PAYEE, PROXY, decide_transfer, entry, transfer


def test_a_freeze_is_tied_to_its_account_and_a_hold_to_every_entry_cited() -> None:
    decision = decide_transfer(transfer(), {PAYEE: entry(PAYEE), PROXY: entry(PROXY)}, NOW)
    sent = {c.action: c for c in sent_commands(decision)}
    freeze, hold = sent["FREEZE_ACCOUNT"], sent["HOLD_TRANSFER"]
    assert (freeze.institution, freeze.entries) == ("CIBBMYKL", (PAYEE,))
    assert (hold.institution, set(hold.entries)) == ("MBBEMYKL", {PAYEE, PROXY})
    assert {c.command_id for c in sent.values()} == {c.command_id for c in decision.commands}
    assert freeze.issued_at == hold.issued_at == "2026-11-28T10:15:00.000Z"


def test_a_hold_remembers_the_iso_20022_ids_a_pacs002_names_it_by() -> None:
    hold = Command(Action.HOLD_TRANSFER, "MBBEMYKL", "MBBEMYKL:514012345678", "e-1", "payee-on-blocklist", (),
                   NOW, (("transfer_id", "T-1"), ("end_to_end_id", "E2E-1"), ("tx_id", "TX-1"), ("uetr", "U-1")))
    assert payment_ids(hold) == {"end_to_end_id": "E2E-1", "tx_id": "TX-1", "uetr": "U-1"}
    assert payment_ids(replace(hold, action=Action.FREEZE_ACCOUNT)) == {}


def test_recording_sent_adds_one_sent_write_per_command_and_nothing_without_commands() -> None:
    listed = decide_transfer(transfer(), {PAYEE: entry(PAYEE)}, NOW)
    clean = decide_transfer(transfer(), {}, NOW)
    decide = recording_sent(lambda record, ctx, policy: Verdict(record, (StateWrite("w", "k"),)))
    writes = decide(listed, None, None).writes
    assert [w.kind for w in writes] == ["w", SENT, SENT]
    assert {msgspec.json.decode(w.member, type=SentCommand).command_id for w in writes[1:]} == {
        c.command_id for c in listed.commands}
    assert decide(clean, None, None).writes == (StateWrite("w", "k"),)


def test_false_positives_count_institutions_by_their_latest_word_on_each_command() -> None:
    history = [{"institution": "A", "outcome": "false_positive"}, {"institution": "A", "outcome": "false_positive"},
               {"institution": "B", "outcome": "executed"}, {"institution": "C", "outcome": "false_positive"}]
    assert false_positive_institutions(history) == {"A", "C"}


@pytest.mark.parametrize("agency,scopes,institution,message", [
    ("PDRM", "feedback", "", "give --institution"),
    ("", "feedback,read", "MBBEMYKL", "holds only the feedback scope"),
    ("", "feedback", "NOT A BIC", "--institution must be"),
])
def test_the_feedback_scope_belongs_to_an_institutions_key_alone(agency: str, scopes: str, institution: str,
                                                                 message: str) -> None:
    store = ApiKeyStore(None)  # type: ignore[arg-type] - refused before Redis is asked
    with pytest.raises(SekatError, match=message):
        asyncio.run(store.create(agency, parse_scopes(scopes), institution))
