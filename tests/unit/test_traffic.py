"""The benchmark's traffic generator: every event is valid input, and its expected commands are the truth."""

from datetime import datetime, timezone

import pytest

from load_tests.traffic import Population, Traffic
from sekat.decode.formats import call_decoder, transfer_decoder
from sekat.records import Entry, Status
from sekat.rules import engine
from sekat.rules.policy import DEFAULT_POLICY_FILE, parse_policy
from sekat.rules.registry import Context
from sekat.settings import Settings

NOW = datetime(2026, 11, 29, tzinfo=timezone.utc)
POLICY = parse_policy({"version": "t", "rules": {"blocklist_match": {"mode": "enforce"}},
                       "actions": __import__("yaml").safe_load(DEFAULT_POLICY_FILE.read_text())["actions"]})


@pytest.mark.parametrize("fmt", ["json", "pacs008"])
def test_generated_events_decode_and_their_expected_commands_are_what_sekat_decides(fmt: str) -> None:
    population = Population(customers=2000, listed=50)
    index = {item.key: Entry(key=item.key, status=Status(item.status), source="BENCH") for item in population.listed()}
    settings = Settings.from_environ({"SEKAT_TRANSFERS_FORMAT": fmt})
    decode = {"transfers": transfer_decoder(settings), "calls": call_decoder(settings)}
    decide = {"transfers": engine.decide_transfer, "calls": engine.decide_call}
    traffic = Traffic(population, listed_share=0.2, transfer_format=fmt)
    acting = 0
    for seq in range(400):
        value, _, kind, expected, event_id = traffic.event(seq, "2026-11-29T00:00:00.000Z")
        result = decode[kind](value)
        [event] = result if isinstance(result, list) else [result]
        assert type(event).__name__ in ("Transfer", "Call"), event
        assert event.event_id == event_id
        lookups = {i.key: index[i.key] for i in event.identifiers() if i.key in index}
        decision = decide[kind](event, Context(NOW, lookups), POLICY).decision
        assert sorted(c.action.value for c in decision.commands) == sorted(expected)
        acting += bool(expected)
    assert 40 < acting < 140  # about 20 % name a listed identifier
