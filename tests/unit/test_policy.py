"""Policy as data: validation names the rule and field, the registry refuses duplicates, and the engine's
precedence holds (protected/revoked never acted on, enforce decides, shadow only informs)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from prometheus_client import CollectorRegistry

from sekat.errors import PolicyError
from sekat.metrics.worker import WorkerMetrics
from sekat.records import Action, Entry, Status
from sekat.rules import engine, mule_inflow
from sekat.rules.policy import DEFAULT_POLICY_FILE, default_registry, load_policy, parse_policy
from sekat.rules.cross_channel import CallWarning
from sekat.rules.registry import Registry
from sekat.streams.policy_watch import PolicyWatch
from tests.unit.events import T0, call, ctx, transfer

DEFAULT = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())


def policy_with(**rules: dict) -> dict:
    return {"version": "t", "rules": rules, "actions": DEFAULT["actions"]}


def test_the_shipped_policy_is_valid_and_enables_every_registered_rule() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    assert {r.spec.id for r in policy.rules} == set(default_registry().ids())


def test_registering_two_rules_with_one_id_fails() -> None:
    registry = Registry()
    registry.register(mule_inflow.SPEC)
    with pytest.raises(PolicyError, match="mule_inflow.*registered twice"):
        registry.register(mule_inflow.SPEC)


@pytest.mark.parametrize("rules,rule,field", [
    ({"mule_inflow": {"params": {"min_payers": 0}}}, "mule_inflow", "params.min_payers"),
    ({"mule_inflow": {"params": {"min_payers": "five"}}}, "mule_inflow", "params.min_payers"),
    ({"mule_inflow": {"params": {"min_payer": 5}}}, "mule_inflow", "params.min_payer"),
    ({"call_burst": {"mode": "loud"}}, "call_burst", "mode"),
    ({"cross_channel": {"params": {"min_amount": "lots"}}}, "cross_channel", "params.min_amount"),
    ({"spoofed_caller": {"enabled": "yes"}}, "spoofed_caller", "enabled"),
    ({"blocklist_match": {"params": {"roles": ["payee", "cousin"]}}}, "blocklist_match", "params.roles"),
    ({"no_such_rule": {}}, "no_such_rule", ""),
])
def test_an_invalid_rule_is_refused_naming_rule_and_field(rules: dict, rule: str, field: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy(policy_with(**rules))
    assert (exc.value.rule, exc.value.field) == (rule, field)
    assert rule in str(exc.value)


def test_actions_must_suit_the_stream() -> None:
    bad = {**policy_with(), "actions": {**DEFAULT["actions"], "calls": {"BLOCK": ["FREEZE_ACCOUNT"], "HOLD": [],
                                                                         "LABEL": []}}}
    with pytest.raises(PolicyError, match="actions.calls.BLOCK"):
        parse_policy(bad)


def test_disabled_and_unlisted_rules_do_not_run() -> None:
    policy = parse_policy(policy_with(mule_inflow={"enabled": False}))
    assert policy.rules == () and policy.params("mule_inflow") is None


def test_shadow_rule_is_recorded_but_sends_nothing_and_reports_nothing() -> None:
    policy = parse_policy(policy_with(mule_inflow={"mode": "shadow", "params": {"min_payers": 2}}))
    c = ctx(counts={"inflow": {"t-1": 2}})
    d = engine.decide_transfer(transfer(), c, policy).decision
    assert d.outcome == "ALLOW" and d.shadow_outcome == "HOLD"
    assert d.commands == () and d.reports == ()
    [m] = d.matches
    assert (m.rule, m.version, m.mode, m.code) == ("mule_inflow", 1, "shadow", "mule-inflow")
    body = d.to_json()
    assert body["reasons"] == [] and body["shadow_reasons"] == [m.reason] and body["policy_version"] == "t"


def test_enforce_rule_holds_reports_once_and_cites_its_version() -> None:
    policy = parse_policy(policy_with(mule_inflow={"params": {"min_payers": 2}}))
    c = ctx(counts={"inflow": {"t-1": 2}})
    verdict = engine.decide_transfer(transfer(), c, policy)
    [hold] = verdict.decision.commands
    assert hold.rule == "mule-inflow" and hold.rules == ("mule_inflow@1",) and hold.to_json()["rules"]
    [report] = verdict.decision.reports
    assert report.to_json()["status"] == "reported" and report.source == "sekat-rule"
    assert report.key == "account:CIBBMYKL:8001234567"
    assert [w.kind for w in verdict.writes] == ["auto"]
    # already reported by the rule (marker in Redis): no second report, still held
    again = engine.decide_transfer(transfer(), ctx(counts={"inflow": {"t-1": 2}},
                                                   auto_reported={"mule_inflow|account:CIBBMYKL:8001234567"}), policy)
    assert again.decision.reports == () and again.decision.commands


def test_a_rule_reports_the_identifier_it_acted_on() -> None:
    proxy_only = parse_policy(policy_with(mule_inflow={"params": {"min_payers": 2}}))
    c = ctx(counts={"inflow": {"t-1": 2}})
    [report] = engine.decide_transfer(transfer(payee=None, proxy="012-345 6789"), c, proxy_only).decision.reports
    assert (report.kind, report.bank, report.value) == ("phone", "", "+60123456789")
    burst = parse_policy(policy_with(call_burst={"params": {"min_callees": 2}}))
    c = ctx(counts={"outbound": {"c-1": 2}})
    [report] = engine.decide_call(call(), c, burst).decision.reports
    assert (report.kind, report.value, report.ttl_days) == ("phone", "+60376543210", 7)


def test_revoked_identifier_is_never_acted_on_whatever_a_rule_finds() -> None:
    policy = parse_policy(policy_with(mule_inflow={"params": {"min_payers": 2}}))
    payee = "account:CIBBMYKL:8001234567"
    revoked = Entry(payee, Status.REVOKED, "NSRC")
    c = ctx(lookups={payee: revoked}, counts={"inflow": {"t-1": 2}})
    d = engine.decide_transfer(transfer(), c, policy).decision
    assert d.outcome == "ALLOW" and d.matches == () and d.commands == ()


def test_a_protected_number_is_never_acted_on_even_if_a_rule_forgets_to_skip_it() -> None:
    from sekat.rules.outcome import Outcome
    from sekat.rules.registry import Finding, RuleSpec

    def careless(event: object, c: object, p: object) -> list[Finding]:
        return [Finding(Outcome.BLOCK, "careless", "flags everything", identifier="phone:999")]
    registry = default_registry()
    registry.register(RuleSpec("careless", 1, mule_inflow.Params, {"calls": careless}))
    policy = parse_policy(policy_with(careless={}), registry)
    d = engine.decide_call(call(caller="999"), ctx(), policy).decision
    assert d.outcome == "ALLOW" and d.matches == () and d.commands == ()


def test_enforce_outranks_shadow_and_the_strongest_call_action_wins() -> None:
    policy = parse_policy(policy_with(spoofed_caller={"mode": "shadow"}, call_burst={"params": {"min_callees": 2}}))
    c = ctx(counts={"outbound": {"c-1": 2}})
    d = engine.decide_call(call(network="international"), c, policy).decision
    assert d.outcome == "LABEL" and d.shadow_outcome == "BLOCK"
    [cmd] = d.commands
    assert cmd.action.value == "LABEL_CALL" and cmd.rule == "call-burst"


def test_a_suspicious_call_marks_the_callee_for_the_cross_channel_rule() -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    verdict = engine.decide_call(call(network="international"), ctx(), policy)
    [mark] = [w for w in verdict.writes if w.kind == "warn"]
    assert mark.key == "phone:+60123456789" and mark.member.endswith("|c-1|spoofed-caller-id")
    quiet = engine.decide_call(call(), ctx(), policy)
    assert not [w for w in quiet.writes if w.kind == "warn"]
    # ... and the transfer that follows is held, citing that call
    warning = CallWarning(mark.score, "+60376543210", "c-1", "spoofed-caller-id")
    later = transfer(at=T0.replace(minute=10))
    d = engine.decide_transfer(later, ctx(now=later.occurred_at, warnings={"phone:+60123456789": warning}),
                               policy).decision
    assert d.outcome == "HOLD" and "c-1" in d.matches[0].reason


def test_a_failing_rule_is_recorded_and_the_others_still_decide(monkeypatch: pytest.MonkeyPatch) -> None:
    policy = load_policy(DEFAULT_POLICY_FILE)
    broken = [r for r in policy.rules if r.spec.id == "spoofed_caller"][0]

    def explode(*_: object) -> list:
        raise RuntimeError("bug")
    monkeypatch.setitem(broken.spec.evaluators, "calls", explode)  # type: ignore[arg-type]
    d = engine.decide_call(call(network="international"), ctx(), policy).decision
    assert d.rule_errors == ("spoofed_caller",) and d.outcome == "ALLOW"


def test_policy_watch_applies_a_valid_change_and_refuses_an_invalid_one(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(yaml.safe_dump(policy_with(mule_inflow={"params": {"min_payers": 3}})))
    metrics = WorkerMetrics(CollectorRegistry())
    watch = PolicyWatch(path, metrics)
    assert watch.check() is False and watch().params("mule_inflow").min_payers == 3

    def rewrite(doc: dict) -> None:
        path.write_text(yaml.safe_dump(doc))
        st = path.stat()
        os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000))  # a distinct mtime even on coarse clocks

    rewrite(policy_with(mule_inflow={"params": {"min_payers": 7}}))
    assert watch.check() is True and watch().params("mule_inflow").min_payers == 7
    rewrite(policy_with(mule_inflow={"params": {"min_payers": -1}}))
    assert watch.check() is False and watch().params("mule_inflow").min_payers == 7
    assert metrics.policy_reloads.labels("refused")._value.get() == 1


def test_an_invalid_policy_at_start_up_raises(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text("version: x\nrules:\n  call_burst: {params: {window_seconds: 0}}\nactions: {}\n")
    with pytest.raises(PolicyError, match="call_burst.params.window_seconds"):
        PolicyWatch(path, WorkerMetrics(CollectorRegistry()))


@pytest.mark.parametrize(("holds", "field"), [
    ({"HOLD_TRANSFER": 0}, "holds.HOLD_TRANSFER"), ({"HOLD_AMOUNT": 43_201}, "holds.HOLD_AMOUNT"),
    ({"HOLD_AMOUNT": "72h"}, "holds.HOLD_AMOUNT"), ({"FREEZE_ACCOUNT": 60}, "holds.FREEZE_ACCOUNT"),
    (["HOLD_TRANSFER"], "holds")])
def test_hold_durations_are_whole_minutes_within_thirty_days(holds: object, field: str) -> None:
    with pytest.raises(PolicyError) as exc:
        parse_policy({**policy_with(), "holds": holds})
    assert field in str(exc.value)


def test_hold_durations_come_from_the_policy_and_default_when_absent() -> None:
    shipped = parse_policy(DEFAULT)
    assert (shipped.hold_s(Action.HOLD_TRANSFER), shipped.hold_s(Action.HOLD_AMOUNT)) == (24 * 3600, 72 * 3600)
    short = parse_policy({**policy_with(), "holds": {"HOLD_AMOUNT": 5}})
    assert (short.hold_s(Action.HOLD_TRANSFER), short.hold_s(Action.HOLD_AMOUNT)) == (24 * 3600, 300)
