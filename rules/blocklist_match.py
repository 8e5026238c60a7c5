"""Blocklist match (``blocklist_match``): act on a listed payee, payer, payee proxy, caller, SMS sender or link.

| who is listed       | confirmed | reported |
|---------------------|-----------|----------|
| payee account       | BLOCK     | HOLD     |
| payee e-wallet      | BLOCK     | HOLD     |
| payee proxy (phone, | BLOCK     | HOLD     |
|   hashed NRIC, passport, business registration) |  |  |
| payer account       | BLOCK     | HOLD     |
| caller              | BLOCK     | LABEL    |
| SMS sender          | BLOCK     | LABEL    |
| SMS link (url, or its host or a parent domain) | BLOCK | BLOCK |

A listed link blocks the SMS whether reported or confirmed: dropping a text
with a reported phishing link costs its sender nothing legitimate (the page
can be sent again once the entry is revoked), letting it through costs a victim.

The policy's ``actions`` table turns outcomes into commands (by default BLOCK
on a transfer holds it and freezes the listed account; on a call it blocks
it). Revoked and expired entries never match; protected numbers are never
looked up. ``roles`` limits which parties are checked.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sekat.records import Call, Entry, Sms, Status, Transfer
from sekat.rules.outcome import Outcome
from sekat.rules.registry import Context, Finding, RuleSpec, choices

ID = "blocklist_match"
VERSION = 2
PAYEE = "payee-on-blocklist"
PAYEE_PROXY = "payee-proxy-on-blocklist"
PAYEE_WALLET = "payee-wallet-on-blocklist"
PAYER = "payer-on-blocklist"
CALLER = "caller-on-blocklist"
SENDER = "sender-on-blocklist"
LINK = "link-on-blocklist"
ROLES = ("payee", "payee_proxy", "payer", "caller",
         "sender", "link")


@dataclass(frozen=True)
class Params:
    roles: tuple[str, ...] = choices(ROLES, ROLES)


def describe(role: str, entry: Entry) -> str:
    evidence = " ".join(part for part in (entry.source, entry.case_ref) if part)
    what = f"{role} {entry.status.value}"
    if entry.reason:
        what += f" {entry.reason}"
    return f"{what} ({evidence})" if evidence else what


def _finding(code: str, role: str, entry: Entry | None, now: datetime, reported: Outcome) -> Finding | None:
    if entry is None or not entry.active_at(now):
        return None
    outcome = Outcome.BLOCK if entry.status is Status.CONFIRMED else reported
    return Finding(outcome, code, describe(role, entry), identifier=entry.key, entry=entry)


def evaluate_transfer(transfer: Transfer, ctx: Context, params: Params) -> list[Finding]:
    found: list[Finding | None] = []
    if "payee" in params.roles and transfer.payee.account is not None:
        found.append(_finding(PAYEE, "payee account", ctx.lookups.get(transfer.payee.account.key), ctx.now,
                              Outcome.HOLD))
    if "payee" in params.roles and transfer.payee.wallet is not None:
        found.append(_finding(PAYEE_WALLET, "payee e-wallet", ctx.lookups.get(transfer.payee.wallet.key), ctx.now,
                              Outcome.HOLD))
    proxy = transfer.payee_proxy.phone if transfer.payee_proxy else None
    if "payee_proxy" in params.roles and proxy is not None and not proxy.protected:
        found.append(_finding(PAYEE_PROXY, "payee mobile proxy", ctx.lookups.get(proxy.key), ctx.now, Outcome.HOLD))
    hashed = transfer.payee_proxy.hashed if transfer.payee_proxy else None
    if "payee_proxy" in params.roles and hashed is not None:
        found.append(_finding(PAYEE_PROXY, f"payee {hashed.type} proxy", ctx.lookups.get(hashed.key), ctx.now,
                              Outcome.HOLD))
    if "payer" in params.roles and transfer.payer.account is not None:
        found.append(_finding(PAYER, "payer account", ctx.lookups.get(transfer.payer.account.key), ctx.now,
                              Outcome.HOLD))
    return [f for f in found if f is not None]


def evaluate_call(call: Call, ctx: Context, params: Params) -> list[Finding]:
    if "caller" not in params.roles or call.caller.protected:
        return []
    found = _finding(CALLER, "caller", ctx.lookups.get(call.caller.key), ctx.now, Outcome.LABEL)
    return [found] if found else []


def evaluate_sms(sms: Sms, ctx: Context, params: Params) -> list[Finding]:
    found: list[Finding | None] = []
    if "sender" in params.roles and not sms.sender.protected:
        found.append(_finding(SENDER, "sender", ctx.lookups.get(sms.sender.key), ctx.now, Outcome.LABEL))
    if "link" in params.roles:
        for link in sms.links:  # the page itself, then its host and parent domains: the first listed one
            for key in (link.key, *(d.key for d in link.domains())):
                hit = _finding(LINK, "link " + key.partition(":")[0], ctx.lookups.get(key), ctx.now, Outcome.BLOCK)
                if hit is not None:
                    found.append(hit)
                    break
    return [f for f in found if f is not None]


SPEC = RuleSpec(ID, VERSION, Params, {"transfers": evaluate_transfer, "calls": evaluate_call, "sms": evaluate_sms},
                "listed payee, payee proxy, payer, caller, SMS sender or SMS link", needs_listed=True)
