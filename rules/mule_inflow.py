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
from functools import lru_cache

from sekat.expiry import MAX_DAYS
from sekat.records import Transfer
from sekat.rules.outcome import Outcome
from sekat.rules.registry import AUTO, AutoReport, Context, Finding, RuleSpec, Values, Window, bounded

ID = "mule_inflow"
VERSION = 1
CODE = "mule-inflow"
WINDOW = "inflow"  # the distinct payers of each payee


@dataclass(frozen=True)
class Params:
    min_payers: int = bounded(5, 2, 10_000)  # distinct payer accounts that make a payee a mule
    window_minutes: int = bounded(30, 1, 24 * 60)  # how close together, in event time, they must pay
    report_ttl_days: int = bounded(30, 1, MAX_DAYS)  # how long the automatic report keeps the payee listed


def payee_key(transfer: Transfer) -> str | None:
    """The identifier whose inflow is counted: the payee account, else its e-wallet, else its mobile proxy, else
    its hashed (NRIC, passport, BRN) proxy."""
    if transfer.payee.account is not None:
        return transfer.payee.account.key
    if transfer.payee.wallet is not None:
        return transfer.payee.wallet.key
    proxy = transfer.payee_proxy
    phone = proxy.phone if proxy else None
    if phone is not None:
        return None if phone.protected else phone.key
    return proxy.hashed.key if proxy is not None and proxy.hashed is not None else None


def counted_payee(transfer: Transfer) -> str | None:
    """The payee whose window this transfer counts in: none without a payer account to count."""
    return payee_key(transfer) if transfer.payer.account is not None else None


def evaluate(transfer: Transfer, ctx: Context, params: Params) -> list[Finding]:
    payee = payee_key(transfer)
    if payee is None or transfer.payer.account is None:
        return []
    payers = ctx.obs.count(WINDOW, transfer.event_id)
    if payers < params.min_payers:
        return []
    before, report = _wording(payers, params.window_minutes, params.min_payers, params.report_ttl_days)
    return [Finding(Outcome.HOLD, CODE, before + transfer.event_id + " included", identifier=payee, report=report)]


@lru_cache(maxsize=256)
def _wording(payers: int, window_minutes: int, min_payers: int, report_ttl_days: int) -> tuple[str, AutoReport]:
    """The reason up to the transfer's event id, and the automatic report: the same for every match of a count
    (a count is capped at the threshold)."""
    counted = f"at least {payers} distinct payers within {window_minutes} min"
    return (f"payee received from {counted} (threshold {min_payers}), this transfer ",
            AutoReport(f"mule inflow: {counted}", report_ttl_days))


def _payer(transfer: Transfer) -> str | None:
    return transfer.payer.account.key if transfer.payer.account is not None else None


def _marks(transfer: Transfer) -> tuple[str, ...]:
    payee = counted_payee(transfer)
    return (f"{ID}|{payee}",) if payee is not None else ()


SPEC = RuleSpec(ID, VERSION, Params, {"transfers": evaluate}, "many payers into one payee in a short window", state=(
    Window(WINDOW, "transfers", counted_payee, _payer, lambda p: p.window_minutes * 60_000, lambda p: p.min_payers),
    Values(AUTO, "transfers", _marks),
))
