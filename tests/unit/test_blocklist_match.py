"""Blocklist rule: given entries and an event, the commands each institution receives.

Run through the engine with the shipped policy's actions and only ``blocklist_match`` enabled, so these
scenarios check the rule and the outcome -> action table together.
"""

from datetime import datetime, timedelta, timezone

import orjson

from sekat.decode.calls import decode_call
from sekat.decode.transfers import decode_transfer
from sekat.records import Entry, Status, iso
from sekat.rules import engine
from sekat.rules.policy import DEFAULT_POLICY_FILE, parse_policy
from sekat.rules.registry import Context
from tests.unit.test_decode import CALL, TRANSFER

NOW = datetime(2026, 11, 28, 10, 15, tzinfo=timezone.utc)
POLICY = parse_policy({"version": "t", "rules": {"blocklist_match": {"mode": "enforce"}},
                       "actions": __import__("yaml").safe_load(DEFAULT_POLICY_FILE.read_text())["actions"]})


def decide_transfer(event, lookups, now):
    return engine.decide_transfer(event, Context(now, lookups), POLICY).decision


def decide_call(event, lookups, now):
    return engine.decide_call(event, Context(now, lookups), POLICY).decision
PAYEE = "account:CIBBMYKL:8001234567"
PAYER = "account:MBBEMYKL:514012345678"
PROXY = "phone:+60123456789"
CALLER = "phone:+60376543210"


def entry(key: str, status: Status = Status.CONFIRMED, expires_at: str = "") -> Entry:
    return Entry(key=key, status=status, source="PDRM", reason="investment scam mule", case_ref="KL/2026/123",
                 expires_at=expires_at)


def transfer():
    return decode_transfer(orjson.dumps(TRANSFER))


def actions(decision) -> list[tuple[str, str, str]]:
    return sorted((c.action.value, c.institution, c.target) for c in decision.commands)


def test_clean_transfer_is_allowed_with_no_commands() -> None:
    d = decide_transfer(transfer(), {}, NOW)
    assert d.outcome == "ALLOW" and d.commands == () and d.matches == ()


def test_confirmed_payee_holds_at_payer_bank_and_freezes_at_payee_bank() -> None:
    d = decide_transfer(transfer(), {PAYEE: entry(PAYEE)}, NOW)
    assert d.outcome == "BLOCK"
    assert actions(d) == [("FREEZE_ACCOUNT", "CIBBMYKL", "CIBBMYKL:8001234567"),
                          ("HOLD_TRANSFER", "MBBEMYKL", "MBBEMYKL:514012345678")]
    hold = next(c for c in d.commands if c.action.value == "HOLD_TRANSFER").to_json()
    assert hold["reasons"] == ["payee account confirmed investment scam mule (PDRM KL/2026/123)"]
    assert hold["transfer_id"] == "DN20261128" and hold["event_id"] == "t-000001"
    assert hold["rule"] == "payee-on-blocklist"


def test_reported_payee_is_only_held() -> None:
    d = decide_transfer(transfer(), {PAYEE: entry(PAYEE, Status.REPORTED)}, NOW)
    assert d.outcome == "HOLD"
    assert actions(d) == [("HOLD_TRANSFER", "MBBEMYKL", "MBBEMYKL:514012345678")]


def test_listed_proxy_holds_the_transfer() -> None:
    d = decide_transfer(transfer(), {PROXY: entry(PROXY)}, NOW)
    assert actions(d) == [("HOLD_TRANSFER", "MBBEMYKL", "MBBEMYKL:514012345678")]
    assert d.commands[0].rule == "payee-proxy-on-blocklist"


def test_confirmed_payer_is_held_and_frozen_at_its_own_bank() -> None:
    d = decide_transfer(transfer(), {PAYER: entry(PAYER)}, NOW)
    assert actions(d) == [("FREEZE_ACCOUNT", "MBBEMYKL", "MBBEMYKL:514012345678"),
                          ("HOLD_TRANSFER", "MBBEMYKL", "MBBEMYKL:514012345678")]


def test_several_matches_give_one_hold_citing_all_reasons() -> None:
    d = decide_transfer(transfer(), {PAYEE: entry(PAYEE, Status.REPORTED), PROXY: entry(PROXY)}, NOW)
    holds = [c for c in d.commands if c.action.value == "HOLD_TRANSFER"]
    assert len(holds) == 1 and len(holds[0].reasons) == 2
    assert len(d.matches) == 2


def test_revoked_and_expired_entries_never_act() -> None:
    revoked = {PAYEE: entry(PAYEE, Status.REVOKED)}
    expired = {PAYEE: entry(PAYEE, expires_at=iso(NOW - timedelta(seconds=1)))}
    live = {PAYEE: entry(PAYEE, expires_at=iso(NOW + timedelta(days=1)))}
    assert decide_transfer(transfer(), revoked, NOW).outcome == "ALLOW"
    assert decide_transfer(transfer(), expired, NOW).outcome == "ALLOW"
    assert decide_transfer(transfer(), live, NOW).outcome == "BLOCK"


def test_command_ids_are_deterministic_per_event_action_and_target() -> None:
    a = decide_transfer(transfer(), {PAYEE: entry(PAYEE)}, NOW)
    b = decide_transfer(transfer(), {PAYEE: entry(PAYEE)}, NOW + timedelta(minutes=5))
    assert [c.command_id for c in a.commands] == [c.command_id for c in b.commands]
    assert len({c.command_id for c in a.commands}) == 2


def test_confirmed_caller_is_blocked_reported_is_labelled() -> None:
    call = decode_call(orjson.dumps(CALL))
    blocked = decide_call(call, {CALLER: entry(CALLER)}, NOW)
    labelled = decide_call(call, {CALLER: entry(CALLER, Status.REPORTED)}, NOW)
    assert [c.action.value for c in blocked.commands] == ["BLOCK_CALL"]
    assert [c.action.value for c in labelled.commands] == ["LABEL_CALL"]
    body = blocked.commands[0].to_json()
    assert body["operator"] == "CELCOM" and body["caller"] == "+60376543210" and body["call_id"] == "x"


def test_emergency_caller_is_never_acted_on_even_if_an_entry_exists() -> None:
    data = dict(CALL, caller="999")
    call = decode_call(orjson.dumps(data))
    assert decide_call(call, {call.caller.key: entry(call.caller.key)}, NOW).outcome == "ALLOW"
