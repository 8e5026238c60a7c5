"""Follow the money (``follow_money``): the payees tainted money reaches within minutes are held too.

Scammers empty 80-90 % of a mule account within 3-10 minutes, spread over
further accounts. When money leaves a *tainted* account, this rule holds the
transfer (HOLD) and, while the trail is shorter than ``depth`` hops, reports
the payee (``reported``, source ``sekat-follow``, the reason citing the
parent account and the transfer) and names the disputed amount on it, which
the policy's ``actions`` table can turn into a ``HOLD_AMOUNT`` lien at the
payee's bank (by default it does: HOLD -> HOLD_TRANSFER, HOLD_AMOUNT).

An account is tainted when it is

* listed (an active ``reported``/``confirmed`` entry) by anyone but this rule
  itself: hop 0, tainted as long as it is listed;
* marked on the trail (``Observations.trail``): hop 0 if Sekat just held a
  transfer into it or froze it (``marks``), hop n if the trail reached it n
  transfers away from such an account. A mark taints only transfers whose
  event time lies within ``window_minutes`` after the money arrived: money
  that stays longer is no longer treated as the same money.

A trail account at hop ``depth`` still has its outgoing transfers held
within the window, but its payees are not reported: the trail stops there.
An entry filed by this rule is never an origin in its own right, so the
trail cannot grow beyond ``depth`` through the blocklist either.

The disputed amount is the transfer's amount, capped by what the payer
itself received on the trail (same currency): a lien holds only what was
taken. Only accounts are followed (a payee named by a mobile proxy alone is
left to ``blocklist_match``). Marks of one batch are written after it, so a
trail hop whose two transfers fall into the same batch is followed from the
next batch on.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal, InvalidOperation

from sekat.expiry import MAX_DAYS
from sekat.records import Entry, Transfer
from sekat.rules.outcome import Outcome
from sekat.rules.registry import AutoReport, Context, Enforced, Finding, RuleSpec, StateWrite, Values, bounded

ID = "follow_money"
VERSION = 1
CODE = "follow-the-money"
SOURCE = "sekat-follow"
MIN_RETENTION_S = 10 * 60
TRAIL = "trail"  # state: account key -> TrailMark.encode(), read for every payer and payee of a batch


@dataclass(frozen=True, slots=True)
class TrailMark:
    """An account the money trail reached (``sekat.rules.follow_money``): hop, when, how much, from where."""

    hop: int  # 0: the account was just held/frozen itself; n: n transfers away from such an account
    at_ms: int  # event time the tainted money reached it
    amount: Decimal  # the disputed amount it received (what a lien on it may hold)
    currency: str
    parent: str  # key of the account the money came from ("" for hop 0)
    event_id: str  # the transfer that carried it
    root: str = ""  # key of the listed entry the trail started from ("" when a hold, not a listing, started it)

    def encode(self) -> str:
        return f"{self.hop}|{self.at_ms}|{self.amount}|{self.currency}|{self.parent}|{self.event_id}|{self.root}"

    @classmethod
    def decode(cls, raw: str) -> "TrailMark | None":
        try:
            parts = raw.split("|", 6)
            hop, at, amount, currency, parent, event_id = parts[:6]
            return cls(int(hop), int(at), Decimal(amount), currency, parent, event_id,
                       parts[6] if len(parts) > 6 else "")
        except (ValueError, InvalidOperation):
            return None  # written by another version: not a mark this worker can use


def trail(ctx: Context, account: str) -> TrailMark | None:
    raw = ctx.obs.value(TRAIL, account)
    return TrailMark.decode(raw) if raw else None


@dataclass(frozen=True)
class Params:
    depth: int = bounded(2, 1, 6)  # hops from a tainted account whose payees are reported and held
    window_minutes: int = bounded(10, 1, 24 * 60)  # how long after the money arrived its moves are followed
    report_ttl_days: int = bounded(7, 1, MAX_DAYS)


def _is_follow_only(entry: Entry) -> bool:
    sources = {s.lower() for s in entry.sources or (entry.source,)}
    return sources <= {SOURCE}


def _origin(transfer: Transfer, ctx: Context, params: Params) -> tuple[int, str, TrailMark | None, str] | None:
    """(hop, why the payer is tainted, its trail mark, the listed entry the trail started from or "") or None
    when the payer is not tainted."""
    payer = transfer.payer.account
    assert payer is not None
    best: tuple[int, str, TrailMark | None, str] | None = None
    entry = ctx.lookups.get(payer.key)
    if entry is not None and entry.active_at(ctx.now) and not _is_follow_only(entry):
        evidence = " ".join(p for p in (entry.source, entry.case_ref) if p)
        best = (0, f"payer listed {entry.status.value}" + (f" ({evidence})" if evidence else ""), None, payer.key)
    mark = trail(ctx, payer.key)
    if mark is None:  # not on the trail: nearly every payer
        return best
    at = int(transfer.occurred_at.timestamp() * 1000)
    if mark.at_ms <= at <= mark.at_ms + params.window_minutes * 60_000 and (best is None or mark.hop < best[0]):
        minutes = (at - mark.at_ms) / 60_000
        if mark.hop == 0:
            why = f"payer just held (transfer {mark.event_id}, {minutes:.1f} min earlier)"
        else:
            why = (f"payer reached at hop {mark.hop} from {mark.parent} by transfer {mark.event_id} "
                   f"({mark.amount} {mark.currency}, {minutes:.1f} min earlier)")
        best = (mark.hop, why, mark, mark.root)
    return best


def disputed(transfer: Transfer, mark: TrailMark | None) -> Decimal:
    """What of this transfer is the tainted money: its amount, at most what the payer received on the trail."""
    if mark is not None and mark.amount > 0 and (mark.currency or "") == (transfer.currency or ""):
        return min(transfer.amount, mark.amount)
    return transfer.amount


def evaluate(transfer: Transfer, ctx: Context, params: Params) -> list[Finding]:
    payer, payee = transfer.payer.account, transfer.payee.account
    if payer is None or payee is None or payer.key == payee.key:
        return []
    origin = _origin(transfer, ctx, params)
    if origin is None:
        return []
    hop, why, mark, root = origin
    amount = disputed(transfer, mark)
    currency = transfer.currency or ""
    if hop >= params.depth:  # the end of the trail: hold the money leaving it, follow no further
        reason = f"{why}; transfer {transfer.event_id} held, the trail ends at hop {params.depth}"
        return [Finding(Outcome.HOLD, CODE, reason, identifier=payer.key)]
    reason = (f"{why}; transfer {transfer.event_id} carries {amount} {currency} to hop {hop + 1} "
              f"of {params.depth}".replace("  ", " "))
    report = None
    if trail(ctx, payee.key) is None:  # reached before: already reported
        report = AutoReport(f"follow the money: hop {hop + 1} from {payer.key} by transfer {transfer.event_id} "
                            f"({amount} {currency}); {why}", params.report_ttl_days, source=SOURCE,
                            case_ref=f"follow/{transfer.event_id}")
    # The lien ends when its hold does, or earlier when the listing the trail started from, or the payee's
    # own follow-the-money entry, is revoked or expires (``release.sweep``).
    causes = tuple(dict.fromkeys(k for k in (root, payee.key) if k))
    return [Finding(Outcome.HOLD, CODE, reason, identifier=payee.key, report=report, amount=amount,
                    currency=currency, causes=causes)]


def marks(transfer: Transfer, ctx: Context, params: Params, enforced: Enforced) -> list[StateWrite]:
    """Trail marks to write for an event, from the enforce findings that decided it (rule id, finding).

    The payee this rule reached is marked at the next hop; a payee another rule held or froze (mule
    inflow, cooling-off, ...) is marked at hop 0: it was "just held", so its next moves are followed.
    """
    payer, payee = transfer.payer.account, transfer.payee.account
    if payee is None or not enforced:
        return []
    at = int(transfer.occurred_at.timestamp() * 1000)
    ttl = max(2 * params.window_minutes * 60, MIN_RETENTION_S)
    for rule_id, f in enforced:
        if f.identifier != payee.key or f.outcome < Outcome.HOLD:
            continue
        if rule_id == ID:
            origin = _origin(transfer, ctx, params) if payer is not None else None
            if origin is None:
                continue
            hop, _, mark, root = origin
            parent = payer.key if payer is not None else ""
            made = TrailMark(hop + 1, at, disputed(transfer, mark), transfer.currency or "", parent,
                             transfer.event_id, root)
        else:
            listed = ctx.lookups.get(payee.key)
            if listed is not None and listed.active_at(ctx.now) and not _is_follow_only(listed):
                continue  # listed: tainted by its listing already
            made = TrailMark(0, at, transfer.amount, transfer.currency or "", "", transfer.event_id)
        known = trail(ctx, payee.key)
        if known is not None and known.hop <= made.hop:
            return []  # marked already, as close to the origin
        return [StateWrite(TRAIL, payee.key, made.encode(), ttl_s=ttl)]
    return []


def _accounts(transfer: Transfer) -> tuple[str, ...]:
    return tuple(a.key for a in (transfer.payer.account, transfer.payee.account) if a is not None)


SPEC = RuleSpec(ID, VERSION, Params, {"transfers": evaluate},
                "money leaving a listed or just-held account: its payees reported and held, hop by hop",
                state=(Values(TRAIL, "transfers", _accounts),), writers={"transfers": marks})
