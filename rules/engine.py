"""The decision engine: run the policy's rules on one event and combine what they found.

Precedence lives here, and only here:

1. protected (emergency/short) identifiers and identifiers whose blocklist
   entry is ``revoked`` (appeal upheld) are never acted on, whatever a rule says;
2. enforce rules decide the outcome (the highest wins, ``rules.outcome``) and
   the policy's ``actions`` table turns their findings into commands;
3. shadow rules are evaluated, counted and written to the decision, but never
   change the outcome, send a command, file a report or mark a caller suspicious;
   an enforce match the safety brake tripped on (its rule, its entry or the
   entry's reporting source is in ``Context.braked``) is treated as shadow.

A rule that raises is recorded on the decision (``rule_errors``) and the
other rules still decide: a failing rule returns a result, not a crash.
Everything here is pure: the shell passes lookups, observations and ``now``,
and writes back the returned ``StateWrite``s, which come from each enabled
rule's own writers (``RuleSpec.writers``) and from here only for the marks of
automatic reports. No rule is named here.
"""

from __future__ import annotations

import logging
import uuid
from datetime import timedelta
from collections.abc import Set as AbstractSet
from typing import Any

import msgspec

from sekat.errors import SekatError
from sekat.identifiers import parse_key
from sekat.records import (COMMAND_NAMESPACE, Action, Call, Command, Decision, Match, Report, Sms, Status,
                           Transfer, iso, key_object)
from sekat.rules.outcome import Outcome
from sekat.rules.policy import Policy
from sekat.rules.registry import AUTO, Context, Finding, StateWrite

log = logging.getLogger(__name__)
AUTO_MARK_TTL_S = 24 * 3600  # after a day without the intake applying it, a rule may report again
_NAMES = {int(o): o.name for o in Outcome}


class Verdict(msgspec.Struct, frozen=True):  # one per event: a Struct is cheaper to build than a dataclass
    decision: Decision
    writes: tuple[StateWrite, ...] = ()


Found = tuple[Match, Finding]


def _never_act(finding: Finding, ctx: Context) -> bool:
    if finding.protected:
        return True
    if finding.identifier.startswith("phone:"):
        try:  # checked here too, so a rule that forgets to skip an emergency number still cannot act on it
            if parse_key(finding.identifier).protected:  # type: ignore[union-attr]
                return True
        except SekatError:
            return True  # not a number we could ever act on
    entry = ctx.lookups.get(finding.identifier) if finding.identifier else None
    return entry is not None and entry.status is Status.REVOKED


def brake_targets(rule_id: str, identifier: str, source: str) -> tuple[str, ...]:
    """The safety-brake targets a match counts towards (and is shadowed by): its rule, entry and source."""
    targets = [f"rule:{rule_id}"]
    if identifier:
        targets.append(f"entry:{identifier}")
    if source:
        targets.append(f"source:{source.upper()}")
    return tuple(targets)


def braked(rule_id: str, finding: Finding, tripped: AbstractSet[str]) -> bool:
    source = finding.entry.source if finding.entry else ""
    return any(t in tripped for t in brake_targets(rule_id, finding.identifier, source))


def _evaluate(stream: str, event: Any, ctx: Context, policy: Policy) -> tuple[list[Found], list[Found], list[str]]:
    enforce: list[Found] = []
    shadow: list[Found] = []
    errors: list[str] = []
    for rule, evaluate in policy.evaluators(stream):
        try:
            findings = evaluate(event, ctx, rule.params)
        except Exception:  # noqa: BLE001 - one failing rule must not stop the others or the stream
            log.exception("rule %s failed on event %s", rule.spec.ref, event.event_id)
            errors.append(rule.spec.id)
            continue
        for f in findings:
            if _never_act(f, ctx):
                continue
            entry = f.entry
            mode, reason = rule.mode, f.reason
            if ctx.braked and mode == "enforce" and braked(rule.spec.id, f, ctx.braked):
                # the safety brake tripped on this rule, entry or source: decide and record, send nothing
                mode, reason = "shadow", f"{reason} [safety brake: shadow]"
            match = Match(rule=rule.spec.id, outcome=int(f.outcome), reason=reason, identifier=f.identifier,
                          status=entry.status.value if entry else "", source=entry.source if entry else "",
                          case_ref=entry.case_ref if entry else "", version=rule.spec.version, mode=mode,
                          code=f.code)
            (enforce if mode == "enforce" else shadow).append((match, f))
    if len(enforce) > 1:
        enforce.sort(key=lambda mf: -mf[0].outcome)
    if len(shadow) > 1:
        shadow.sort(key=lambda mf: -mf[0].outcome)
    return enforce, shadow, errors


def _reports(stream: str, event_id: str, enforce: list[Found], ctx: Context) -> tuple[list[Report], list[StateWrite]]:
    reports: list[Report] = []
    marks: list[StateWrite] = []
    for match, f in enforce:
        req = f.report
        if req is None:
            continue
        mark = f"{match.rule}|{f.identifier}"
        listed = ctx.lookups.get(f.identifier)
        if ctx.obs.value(AUTO, mark) is not None or (listed is not None and listed.active_at(ctx.now)):
            continue  # already reported by a rule, or already on the list: nothing new to tell
        report_id = str(uuid.uuid5(COMMAND_NAMESPACE, f"{event_id}|report|{f.identifier}"))
        on = key_object(f.identifier)
        reports.append(Report(report_id=report_id, reported_at=ctx.now, kind=on["kind"], value=on["value"],
                              status=Status.REPORTED, source=req.source, reason=f"{match.rule_ref}: {req.reason}",
                              bank=on.get("bank", ""), case_ref=req.case_ref or f"{stream}/{event_id}",
                              ttl_days=req.ttl_days, filed_by=req.source))
        marks.append(StateWrite(AUTO, mark, ttl_s=AUTO_MARK_TTL_S))
    return reports, marks


def _decision(stream: str, event_id: str, ctx: Context, policy: Policy, enforce: list[Found],
              shadow: list[Found], errors: list[str], commands: list[Command], reports: list[Report]) -> Decision:
    if not enforce and not shadow and not errors:  # the common case, kept cheap
        return Decision(event_id, stream, "ALLOW", ctx.now, policy_version=policy.version)
    # both lists are sorted strongest first (``_evaluate``): the first is the highest
    return Decision(
        event_id, stream, _NAMES[enforce[0][0].outcome] if enforce else "ALLOW", ctx.now,
        matches=tuple([m for m, _ in enforce] + [m for m, _ in shadow]), commands=tuple(commands),
        reports=tuple(reports), shadow_outcome=_NAMES[shadow[0][0].outcome] if shadow else "ALLOW",
        policy_version=policy.version, rule_errors=tuple(errors))


def _allow(stream: str, event_id: str, ctx: Context, policy: Policy, writes: tuple[StateWrite, ...]) -> Verdict:
    return Verdict(Decision(event_id, stream, "ALLOW", ctx.now, policy_version=policy.version), writes)


def _unenforced(stream: str, event: Any, ctx: Context, policy: Policy, shadow: list[Found],
                errors: list[str]) -> Verdict:
    """The verdict when no enforce rule matched: shadow matches and rule errors are recorded, nothing is sent."""
    return Verdict(_decision(stream, event.event_id, ctx, policy, [], shadow, errors, [], []),
                   tuple(_writes(stream, event, ctx, policy, [])))


def _writes(stream: str, event: Any, ctx: Context, policy: Policy, enforce: list[Found]) -> list[StateWrite]:
    """The state writes of every rule that keeps state on ``stream``, given the enforce findings."""
    writers = policy.writers(stream)
    if not writers:
        return []
    enforced = [(m.rule, f) for m, f in enforce]
    writes: list[StateWrite] = []
    for rule, write in writers:
        writes.extend(write(event, ctx, rule.params, enforced))
    return writes


def listed_only(policy: Policy, stream: str) -> bool:
    """Whether ``policy`` allows every event of ``stream`` none of whose identifiers is listed, with no match,
    error or state write: each of its rules on ``stream`` finds nothing without a listed identifier
    (``RuleSpec.needs_listed``) and none writes state there. The shell then counts such events as ALLOW without
    asking ``decide_*``, whose verdict for them is ``Decision(event_id, stream, "ALLOW", now)`` and nothing else."""
    return not policy.writers(stream) and all(rule.spec.needs_listed for rule, _ in policy.evaluators(stream))


def _hold_until(transfer: Transfer, policy: Policy, action: Action) -> str:
    """When a hold of ``action`` on ``transfer`` ends (the policy's ``holds``): counted from when the transfer
    happened, so that a command re-sent after a redelivery is the same command, byte for byte but issued_at."""
    return iso(transfer.occurred_at + timedelta(seconds=policy.hold_s(action)))


def decide_transfer(transfer: Transfer, ctx: Context, policy: Policy) -> Verdict:
    enforce, shadow, errors = _evaluate("transfers", transfer, ctx, policy)
    if not enforce and not shadow and not errors:  # nearly every event: no commands, reports or marks to build
        return _allow("transfers", transfer.event_id, ctx, policy,
                      tuple(_writes("transfers", transfer, ctx, policy, enforce)))
    if not enforce:  # shadow matches only (most matches, under a policy being tried out): no command to build
        return _unenforced("transfers", transfer, ctx, policy, shadow, errors)
    actions = policy.actions["transfers"]
    details = transfer.command_details()
    refs = tuple(dict.fromkeys(m.rule_ref for m, _ in enforce))
    holds = [m for m, f in enforce if Action.HOLD_TRANSFER in actions[f.outcome]]
    commands: list[Command] = []
    if holds:
        payer_acct = transfer.payer.account
        commands.append(Command(Action.HOLD_TRANSFER, transfer.payer.bank,
                                payer_acct.value if payer_acct else transfer.transfer_id, transfer.event_id,
                                holds[0].code, tuple(m.reason for m, _ in enforce), ctx.now,
                                details + (("hold_until", _hold_until(transfer, policy, Action.HOLD_TRANSFER)),), refs))
    frozen: set[str] = set()
    for match, f in enforce:
        if Action.FREEZE_ACCOUNT in actions[f.outcome] and f.identifier.startswith("account:"):
            account = f.identifier.partition(":")[2]
            if account not in frozen:
                frozen.add(account)
                commands.append(Command(Action.FREEZE_ACCOUNT, account.partition(":")[0], account,
                                        transfer.event_id, match.code, (match.reason,), ctx.now, details,
                                        (match.rule_ref,)))
    for match, f in enforce:  # a lien of the disputed amount, where a rule names one and nothing froze it
        if f.amount is not None and Action.HOLD_AMOUNT in actions[f.outcome] and f.identifier.startswith("account:"):
            account = f.identifier.partition(":")[2]
            if account not in frozen:
                frozen.add(account)
                commands.append(Command(Action.HOLD_AMOUNT, account.partition(":")[0], account, transfer.event_id,
                                        match.code, (match.reason,), ctx.now,
                                        details + (("amount", str(f.amount)), ("currency", f.currency),
                                                   ("hold_until", _hold_until(transfer, policy, Action.HOLD_AMOUNT))),
                                        (match.rule_ref,), f.causes))
    reports, writes = _reports("transfers", transfer.event_id, enforce, ctx)
    writes.extend(_writes("transfers", transfer, ctx, policy, enforce))
    return Verdict(_decision("transfers", transfer.event_id, ctx, policy, enforce, shadow, errors, commands,
                             reports), tuple(writes))


def decide_call(call: Call, ctx: Context, policy: Policy) -> Verdict:
    enforce, shadow, errors = _evaluate("calls", call, ctx, policy)
    if not enforce and not shadow and not errors:
        return _allow("calls", call.event_id, ctx, policy, tuple(_writes("calls", call, ctx, policy, enforce)))
    if not enforce:  # shadow matches only (most matches, under a policy being tried out): no command to build
        return _unenforced("calls", call, ctx, policy, shadow, errors)
    actions = policy.actions["calls"]
    commands: list[Command] = []
    for action in (Action.BLOCK_CALL, Action.LABEL_CALL):  # one command per call: the strongest
        behind = [m for m, f in enforce if action in actions[f.outcome]]
        if behind:
            details = (("call_id", call.call_id), ("callee", call.callee.e164), ("type", call.type))
            commands.append(Command(action, call.operator, call.caller.e164, call.event_id, behind[0].code,
                                    tuple(m.reason for m, _ in enforce), ctx.now, details,
                                    tuple(dict.fromkeys(m.rule_ref for m, _ in enforce))))
            break
    reports, writes = _reports("calls", call.event_id, enforce, ctx)
    writes.extend(_writes("calls", call, ctx, policy, enforce))
    return Verdict(_decision("calls", call.event_id, ctx, policy, enforce, shadow, errors, commands, reports),
                   tuple(writes))


def decide_sms(sms: Sms, ctx: Context, policy: Policy) -> Verdict:
    """BLOCK_SMS or LABEL_SMS (the strongest the policy's ``actions.sms`` gives) to the SMS's operator, naming
    its sender; the reasons name the listed link or sender behind it."""
    enforce, shadow, errors = _evaluate("sms", sms, ctx, policy)
    if not enforce and not shadow and not errors:
        return _allow("sms", sms.event_id, ctx, policy, tuple(_writes("sms", sms, ctx, policy, enforce)))
    if not enforce:  # shadow matches only (most matches, under a policy being tried out): no command to build
        return _unenforced("sms", sms, ctx, policy, shadow, errors)
    actions = policy.actions["sms"]
    commands: list[Command] = []
    for action in (Action.BLOCK_SMS, Action.LABEL_SMS):  # one command per SMS: the strongest
        behind = [m for m, f in enforce if action in actions[f.outcome]]
        if behind:
            details = (("sms_id", sms.sms_id), ("recipient", sms.recipient.e164),
                       ("sender_kind", sms.sender.key.partition(":")[0]))
            if sms.route is not None:
                details += (("route", sms.route),)
            target = sms.sender.key.partition(":")[2]
            commands.append(Command(action, sms.operator, target, sms.event_id, behind[0].code,
                                    tuple(m.reason for m, _ in enforce), ctx.now, details,
                                    tuple(dict.fromkeys(m.rule_ref for m, _ in enforce))))
            break
    reports, writes = _reports("sms", sms.event_id, enforce, ctx)
    writes.extend(_writes("sms", sms, ctx, policy, enforce))
    return Verdict(_decision("sms", sms.event_id, ctx, policy, enforce, shadow, errors, commands, reports),
                   tuple(writes))
