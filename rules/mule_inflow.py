"""Mule inflow (``mule_inflow``): one payee account receiving from many payers at once.

When a payee receives from at least ``min_payers`` distinct payer accounts
within ``window_minutes`` (event time, any window containing this transfer,
see ``rules.windows``), the transfer is held (HOLD) and the payee is reported
automatically as ``reported`` with source ``sekat-rule``, so every bank sees it
once the reports intake applies it. A payee named only by a mobile proxy is
counted and reported by that number.
"""

from __future__ import annotations

from dataclasses import dataclass

from sekat.expiry import MAX_DAYS
from sekat.records import Transfer
from sekat.rules.outcome import Outcome
from sekat.rules.registry import AutoReport, Context, Finding, RuleSpec, bounded
from sekat.rules.windows import distinct_with

ID = "mule_inflow"
VERSION = 1
CODE = "mule-inflow"


@dataclass(frozen=True)
class Params:
    min_payers: int = bounded(5, 2, 10_000)  # distinct payer accounts that make a payee a mule
    window_minutes: int = bounded(30, 1, 24 * 60)  # how close together, in event time, they must pay
    report_ttl_days: int = bounded(30, 1, MAX_DAYS)  # how long the automatic report keeps the payee listed


def payee_key(transfer: Transfer) -> str | None:
    """The identifier whose inflow is counted: the payee account, else its mobile proxy."""
    if transfer.payee.account is not None:
        return transfer.payee.account.key
    phone = transfer.payee_proxy.phone if transfer.payee_proxy else None
    return phone.key if phone is not None and not phone.protected else None


def evaluate(transfer: Transfer, ctx: Context, params: Params) -> list[Finding]:
    payee = payee_key(transfer)
    if payee is None or transfer.payer.account is None:
        return []
    payers = distinct_with(ctx.obs.inflow.get(payee, ()), transfer.occurred_at, params.window_minutes * 60_000,
                           transfer.payer.account.key)
    if payers < params.min_payers:
        return []
    counted = f"{payers} distinct payers within {params.window_minutes} min"
    reason = (f"payee received from {counted} (threshold {params.min_payers}), "
              f"this transfer {transfer.event_id} included")
    return [Finding(Outcome.HOLD, CODE, reason, identifier=payee,
                    report=AutoReport(f"mule inflow: {counted}", params.report_ttl_days))]


SPEC = RuleSpec(ID, VERSION, Params, {"transfers": evaluate}, "many payers into one payee in a short window")
