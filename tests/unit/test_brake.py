"""Safety brake, pure parts: what a decision counts towards, limits per dimension, braked matches go to shadow."""

from __future__ import annotations

import pytest

from sekat.brake.guard import Limits, audit_record, tally
from sekat.brake.store import masked_target, valid_target
from sekat.errors import ConfigError
from sekat.records import Entry, Status
from sekat.rules import engine
from sekat.rules.policy import DEFAULT_POLICY_FILE, parse_policy
from sekat.settings import Settings
from tests.unit.events import T0, ctx, transfer

PAYEE = "account:CIBBMYKL:8001234567"
POLICY = parse_policy({"version": "t", "rules": {"blocklist_match": {}},
                       "actions": __import__("yaml").safe_load(DEFAULT_POLICY_FILE.read_text())["actions"]})


def listed(key: str = PAYEE) -> Entry:
    return Entry(key=key, status=Status.CONFIRMED, source="PDRM", case_ref="KL/1", sources=("PDRM",))


def decide(braked: frozenset[str] = frozenset(), event_id: str = "t-1"):
    c = ctx(lookups={PAYEE: listed()})
    c = type(c)(c.now, c.lookups, c.obs, braked)
    return engine.decide_transfer(transfer(event_id), c, POLICY).decision


def test_a_decision_counts_its_commands_towards_its_rule_entry_and_source() -> None:
    d = decide()
    assert len(d.commands) == 2  # hold at the payer's bank, freeze at the payee's
    counts = tally([d, decide(event_id="t-2")])
    assert counts == {"rule:blocklist_match": 4, f"entry:{PAYEE}": 4, "source:PDRM": 4}


def test_decisions_without_commands_and_shadow_matches_count_nothing() -> None:
    assert tally([decide(frozenset({f"entry:{PAYEE}"}))]) == {}


@pytest.mark.parametrize("target", [f"entry:{PAYEE}", "rule:blocklist_match", "source:PDRM"])
def test_a_braked_target_puts_the_match_in_shadow_and_sends_nothing(target: str) -> None:
    d = decide(frozenset({target}))
    assert d.commands == () and d.outcome == "ALLOW" and d.shadow_outcome == "BLOCK"
    [m] = d.matches
    assert m.mode == "shadow" and m.reason.endswith("[safety brake: shadow]")


def test_another_braked_target_changes_nothing() -> None:
    d = decide(frozenset({"entry:account:CIBBMYKL:1111111111", "rule:mule_inflow", "source:BNM"}))
    assert len(d.commands) == 2 and d.matches[0].mode == "enforce"


def test_limits_are_per_dimension_and_zero_is_off() -> None:
    limits = Limits(window_s=60, entry=10, rule=0, source=5)
    assert (limits.of("entry:x"), limits.of("rule:x"), limits.of("source:x"), limits.of("other:x")) == (10, 0, 5, 0)


def test_targets_are_validated_and_masked_for_logs() -> None:
    assert valid_target(f"entry:{PAYEE}") and valid_target("rule:mule_inflow") and valid_target("source:PDRM")
    assert not valid_target("entries:x") and not valid_target("rule:") and not valid_target("entry:a b")
    assert masked_target(f"entry:{PAYEE}") == "entry:account:CIBBMYKL:******4567"
    assert masked_target("entry:phone:+60123456789") == "entry:phone:********6789"
    assert masked_target("rule:mule_inflow") == "rule:mule_inflow"


def test_audit_record_is_deterministic_and_names_the_target() -> None:
    key, body = audit_record("trip", "rule:x", T0, {"count": 3})
    assert key == audit_record("trip", "rule:x", T0, {"count": 3})[0] and key.startswith(b"brake-")
    assert b'"stream":"brake"' in body and b'"action":"trip"' in body and b'"count":3' in body


@pytest.mark.parametrize("name,value", [("SEKAT_BRAKE_WINDOW_S", "0"), ("SEKAT_BRAKE_ENTRY_MAX", "-1"),
                                        ("SEKAT_BRAKE_RULE_MAX", "many"), ("SEKAT_BRAKE_SOURCE_MAX", "-5")])
def test_bad_brake_settings_stop_start_up_naming_the_setting(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        Settings.from_environ({name: value})
