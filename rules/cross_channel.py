"""Cross-channel cooling-off (``cross_channel``): a scam call, then money to someone new.

Joins the telco and bank streams, which neither side can do alone. The
customer is the transfer's ``payer.phone``. If, within ``lookback_minutes``
before the transfer (event time), that phone received a call from a listed
caller or a call an enforce rule flagged, and the customer now pays a payee
they have not paid before (``new_payee``) or at least ``min_amount``, the
transfer is held (HOLD) as a cooling-off hold. The reason cites both events.

A call that arrives after a transfer it should have preceded cannot hold
that transfer any more (it was decided already); it counts for the next one.

State it keeps (``Values``): ``warn`` (customer phone -> their latest warning
call, written for every call that warned a callee) and ``paid`` ("payer|payee"
-> the payer has paid this payee within ``history_days``: the day of the latest payment).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone
from decimal import Decimal

import msgspec

from sekat.identifiers import mask
from sekat.records import Call, Transfer, iso
from sekat.rules.mule_inflow import payee_key
from sekat.rules.outcome import Outcome
from sekat.rules.registry import Context, Enforced, Finding, RuleSpec, StateWrite, Values, bounded

ID = "cross_channel"
VERSION = 1
CODE = "cross-channel-cooling-off"
WARN = "warn"
PAID = "paid"


class CallWarning(msgspec.Struct, frozen=True):
    """A call that warned a customer: from a listed caller, or flagged by an enforce rule (read back for every
    transfer from that customer's phone while the warning is kept: a Struct is cheaper to build)."""

    at_ms: int
    caller: str  # E.164 of the caller
    event_id: str  # the call's event id, cited in the transfer's reasons
    why: str  # reason code of what made the call suspicious

    def encode(self) -> str:
        return f"{self.at_ms}|{self.caller}|{self.event_id}|{self.why}"

    @classmethod
    def decode(cls, raw: str) -> "CallWarning | None":
        at, caller, event_id, why = (raw.split("|", 3) + ["", "", ""])[:4]
        try:
            return cls(int(at), caller, event_id, why)
        except ValueError:
            return None


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
    raw = ctx.obs.value(WARN, phone.key)
    if not raw:  # no warning call kept for this customer: nearly every transfer
        return []
    call = CallWarning.decode(raw)  # only a customer's latest warning call is kept
    at = int(transfer.occurred_at.timestamp() * 1000)
    if call is None or not at - params.lookback_minutes * 60_000 <= call.at_ms <= at:
        return []
    new = ctx.obs.value(PAID, f"{transfer.payer.account.key}|{payee}") is None
    large = params.min_amount is not None and transfer.amount >= params.min_amount
    if not ((params.new_payee and new) or large):
        return []
    minutes = (at - call.at_ms) / 60_000
    if params.new_payee and new:
        why = "a payee never paid before"
    else:
        why = f"{transfer.amount} (at least {params.min_amount})"
    reason = (f"call {call.event_id} at {iso(datetime.fromtimestamp(call.at_ms / 1000, timezone.utc))} from "
              f"{mask(call.caller)} ({call.why}) reached the payer's phone {minutes:.1f} min before transfer "
              f"{transfer.event_id} to {why}: cooling-off hold")
    return [Finding(Outcome.HOLD, CODE, reason, identifier=payee)]


def _pair(transfer: Transfer) -> str | None:
    payee = payee_key(transfer)
    return f"{transfer.payer.account.key}|{payee}" if payee is not None and transfer.payer.account is not None else None


def paid(transfer: Transfer, ctx: Context, params: Params, enforced: Enforced) -> list[StateWrite]:
    """The latest payment from this payer to this payee is remembered for ``history_days`` from when it was
    made, by its day (days since 1970, event time): a payee paid every month stays known. A payment on a day
    already remembered, or before it, costs no write."""
    pair = _pair(transfer)
    if pair is None:
        return []
    at_s = int(transfer.occurred_at.timestamp())
    day = at_s // 86400
    stored = ctx.obs.value(PAID, pair)
    if stored is not None and stored.isdigit() and int(stored) >= day:
        return []
    ttl_s = params.history_days * 86400 - max(0, int(ctx.now.timestamp()) - at_s)
    return [StateWrite(PAID, pair, str(day), day, ttl_s)] if ttl_s > 0 else []


def warned(call: Call, ctx: Context, params: Params, enforced: Enforced) -> list[StateWrite]:
    """A call from a listed caller, or one an enforce rule flagged, warns its callee for ``lookback_minutes``."""
    if call.callee.protected:
        return []
    listed = ctx.lookups.get(call.caller.key)
    why = enforced[0][1].code if enforced else (
        f"caller {listed.status.value}" if listed is not None and listed.active_at(ctx.now) else "")
    if not why:
        return []
    at = int(call.occurred_at.timestamp() * 1000)
    return [StateWrite(WARN, call.callee.key, CallWarning(at, call.caller.e164, call.event_id, why).encode(), at,
                       params.lookback_minutes * 60 * 2)]


def _reads(transfer: Transfer) -> tuple[str, ...]:
    return (transfer.payer.phone.key,) if transfer.payer.phone is not None and _pair(transfer) is not None else ()


def _pairs(transfer: Transfer) -> tuple[str, ...]:
    pair = _pair(transfer)
    return (pair,) if pair is not None else ()


SPEC = RuleSpec(ID, VERSION, Params, {"transfers": evaluate}, "scam call then money to a new payee",
                state=(Values(WARN, "transfers", _reads), Values(PAID, "transfers", _pairs)),
                writers={"transfers": paid, "calls": warned})
