"""Blocklist match: act on listed payee, payer, payee proxy and caller.

| who is listed      | confirmed                                   | reported          |
|--------------------|---------------------------------------------|-------------------|
| payee account      | HOLD_TRANSFER (payer's bank) + FREEZE_ACCOUNT (payee's bank) | HOLD_TRANSFER |
| payee proxy (phone)| HOLD_TRANSFER                               | HOLD_TRANSFER     |
| payer account      | HOLD_TRANSFER + FREEZE_ACCOUNT (payer's bank) | HOLD_TRANSFER   |
| caller             | BLOCK_CALL                                  | LABEL_CALL        |

Revoked and expired entries never act; protected numbers are never looked up.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime

from rules.outcome import Outcome, highest
from sekat.records import Action, Call, Command, Decision, Entry, Match, Status, Transfer

RULE_VERSION = 1
PAYEE = "payee-on-blocklist"
PAYEE_PROXY = "payee-proxy-on-blocklist"
PAYER = "payer-on-blocklist"
CALLER = "caller-on-blocklist"


def _describe(role: str, entry: Entry) -> str:
    evidence = " ".join(part for part in (entry.source, entry.case_ref) if part)
    what = f"{role} {entry.status.value}"
    if entry.reason:
        what += f" {entry.reason}"
    return f"{what} ({evidence})" if evidence else what


def _match(rule: str, role: str, entry: Entry | None, now: datetime) -> Match | None:
    if entry is None or not entry.active_at(now):
        return None
    outcome = Outcome.BLOCK if entry.status is Status.CONFIRMED else Outcome.HOLD
    return Match(rule=rule, outcome=int(outcome), reason=_describe(role, entry), identifier=entry.key,
                 status=entry.status.value, source=entry.source, case_ref=entry.case_ref)


def decide_transfer(transfer: Transfer, lookups: Mapping[str, Entry], now: datetime) -> Decision:
    payee_acct = transfer.payee.account
    payer_acct = transfer.payer.account
    proxy = transfer.payee_proxy.phone if transfer.payee_proxy else None
    payee = _match(PAYEE, "payee account", lookups.get(payee_acct.key), now) if payee_acct else None
    payee_proxy = (_match(PAYEE_PROXY, "payee mobile proxy", lookups.get(proxy.key), now)
                   if proxy and not proxy.protected else None)
    payer = _match(PAYER, "payer account", lookups.get(payer_acct.key), now) if payer_acct else None
    matches = tuple(m for m in (payee, payee_proxy, payer) if m is not None)
    if not matches:
        return Decision(transfer.event_id, "transfers", Outcome.ALLOW.name, now)

    details = transfer.command_details()
    first = max(matches, key=lambda m: m.outcome)  # the rule cited on the hold
    hold_target = payer_acct.value if payer_acct else transfer.transfer_id
    commands = [Command(Action.HOLD_TRANSFER, transfer.payer.bank, hold_target, transfer.event_id, first.rule,
                        tuple(m.reason for m in matches), now, details)]
    if payee is not None and payee.outcome == Outcome.BLOCK and payee_acct is not None:
        commands.append(Command(Action.FREEZE_ACCOUNT, transfer.payee.bank, payee_acct.value, transfer.event_id,
                                PAYEE, (payee.reason,), now, details))
    if payer is not None and payer.outcome == Outcome.BLOCK and payer_acct is not None:
        commands.append(Command(Action.FREEZE_ACCOUNT, transfer.payer.bank, payer_acct.value, transfer.event_id,
                                PAYER, (payer.reason,), now, details))
    outcome = highest([m.outcome for m in matches])
    return Decision(transfer.event_id, "transfers", outcome.name, now, matches, tuple(commands))


def decide_call(call: Call, lookups: Mapping[str, Entry], now: datetime) -> Decision:
    if call.caller.protected:
        return Decision(call.event_id, "calls", Outcome.ALLOW.name, now)
    match = _match(CALLER, "caller", lookups.get(call.caller.key), now)
    if match is None:
        return Decision(call.event_id, "calls", Outcome.ALLOW.name, now)
    action = Action.BLOCK_CALL if match.outcome == Outcome.BLOCK else Action.LABEL_CALL
    details = (("call_id", call.call_id), ("callee", call.callee.e164), ("type", call.type))
    command = Command(action, call.operator, call.caller.e164, call.event_id, CALLER, (match.reason,), now, details)
    outcome = Outcome.BLOCK if action is Action.BLOCK_CALL else Outcome.LABEL
    return Decision(call.event_id, "calls", outcome.name, now, (match,), (command,))
