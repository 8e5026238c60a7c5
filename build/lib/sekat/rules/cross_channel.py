"""Cross-channel cooling-off (``cross_channel``): a scam call, then money to someone new.

Joins the telco and bank streams, which neither side can do alone. The
customer is the transfer's ``payer.phone``. If, within ``lookback_minutes``
before the transfer (event time), that phone received a call from a listed
caller or a call an enforce rule flagged, and the customer now pays a payee
they have not paid before (``new_payee``) or at least ``min_amount``, the
transfer is held (HOLD) as a cooling-off hold. The reason cites both events.

A call that arrives after a transfer it should have preceded cannot hold
that transfer any more (it was decided already); it counts for the next one.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

from sekat.identifiers import mask
from sekat.records import Transfer, iso
from sekat.rules.mule_inflow import payee_key
from sekat.rules.outcome import Outcome
from sekat.rules.registry import Context, Finding, RuleSpec, bounded

ID = "cross_channel"
VERSION = 1
CODE = "cross-channel-cooling-off"


@dataclass(frozen=True)
class Params:
    lookback_minutes: int = bounded(30, 1, 24 * 60)
    new_payee: bool = True
    min_amount: Decimal | None = None  # also hold a known payee at or above this amount; None: never
    history_days: int = bounded(180, 1, 3650)  # how long "has paid this payee before" is remembered


def evaluate(transfer: Transfer, ctx: Context, params: Params) -> list[Finding]:
    phone = transfer.payer.phone
    payee = payee_key(transfer)
    if phone is None or payee is None or transfer.payer.account is None:
        return []
    at = int(transfer.occurred_at.timestamp() * 1000)
    calls = [w for w in ctx.obs.warnings.get(phone.key, ())
             if at - params.lookback_minutes * 60_000 <= w.at_ms <= at]
    if not calls:
        return []
    new = (transfer.payer.account.key, payee) not in ctx.obs.paid_before
    large = params.min_amount is not None and transfer.amount >= params.min_amount
    if not ((params.new_payee and new) or large):
        return []
    call = max(calls, key=lambda w: w.at_ms)  # the most recent warning call
    minutes = (at - call.at_ms) / 60_000
    if params.new_payee and new:
        why = "a payee never paid before"
    else:
        why = f"{transfer.amount} (at least {params.min_amount})"
    reason = (f"call {call.event_id} at {iso(datetime.fromtimestamp(call.at_ms / 1000, timezone.utc))} from "
              f"{mask(call.caller)} ({call.why}) reached the payer's phone {minutes:.1f} min before transfer "
              f"{transfer.event_id} to {why}: cooling-off hold")
    return [Finding(Outcome.HOLD, CODE, reason, identifier=payee)]


SPEC = RuleSpec(ID, VERSION, Params, {"transfers": evaluate}, "scam call then money to a new payee")
