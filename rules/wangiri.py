"""One-ring calls (``wangiri``): a caller ringing many people for a second or two, hoping they call back.

The callback goes to a premium-rate number abroad, and the victim pays. A *one-ring* call is one the call
record says was not answered (``answered: false``) and rang for at most ``max_ring_seconds``
(``duration``); a call that names neither is never a one-ring call.

* A caller whose one-ring calls reach at least ``min_callees`` distinct callees within ``window_seconds``
  (event time, any window holding this call) is a burst: ``burst_outcome`` (shipped LABEL).
* A caller whose number starts with one of ``premium_prefixes`` (international premium-rate and global
  service codes) needs only ``premium_min_callees`` distinct callees: ``premium_outcome`` (shipped BLOCK).

Either way the caller is reported automatically (``reported``, source ``sekat-rule``), so the other operators
label its calls too. Protected (emergency, short) numbers are never counted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sekat.errors import PolicyError
from sekat.expiry import MAX_DAYS
from sekat.records import Call
from sekat.rules.outcome import Outcome
from sekat.rules.registry import AUTO, AutoReport, Context, Finding, RuleSpec, Values, Window, bounded, choices

ID = "wangiri"
VERSION = 1
CODE = "one-ring"
ONE_RING = "onering"  # the distinct callees of each caller's one-ring calls
PREMIUM = "onering_premium"  # the same, for callers on a premium-rate prefix
OUTCOMES = ("LABEL", "BLOCK")
_PREFIX = re.compile(r"^\+[1-9][0-9]{0,7}$")


@dataclass(frozen=True)
class Params:
    min_callees: int = bounded(10, 2, 100_000)  # distinct callees of one-ring calls that make a burst
    window_seconds: int = bounded(600, 1, 3600)
    max_ring_seconds: int = bounded(4, 1, 30)  # an unanswered call that rang at most this long is one-ring
    premium_prefixes: tuple[str, ...] = ("+979", "+881", "+882", "+883")
    premium_min_callees: int = bounded(3, 1, 100_000)
    burst_outcome: str = choices("LABEL", OUTCOMES)
    premium_outcome: str = choices("BLOCK", OUTCOMES)
    report_ttl_days: int = bounded(7, 1, MAX_DAYS)

    def __post_init__(self) -> None:
        bad = [p for p in self.premium_prefixes if not _PREFIX.match(p)]
        if bad:
            raise PolicyError(ID, "params.premium_prefixes", f"must be prefixes such as +979 (+ and 1-8 digits), "
                                                             f"got {bad}")


def maybe_one_ring(call: Call) -> bool:
    """Whether ``one_ring`` can hold whatever the parameters: only such a call can match, so only its caller's
    report mark is read (most calls are answered, or their records do not say)."""
    return call.answered is False and call.duration is not None and not call.caller.protected


def one_ring(call: Call, params: Params) -> bool:
    return maybe_one_ring(call) and (call.duration or 0) <= params.max_ring_seconds


def premium(call: Call, params: Params) -> str | None:
    """The premium-rate prefix the caller's number starts with, if any."""
    return next((p for p in params.premium_prefixes if call.caller.e164.startswith(p)), None)


def evaluate(call: Call, ctx: Context, params: Params) -> list[Finding]:
    if not one_ring(call, params):
        return []
    prefix = premium(call, params)
    ring = f"unanswered, rang {call.duration:g} s"
    if prefix is not None and (callees := ctx.obs.count(PREMIUM, call.event_id)) >= params.premium_min_callees:
        outcome = Outcome[params.premium_outcome]
        counted = (f"one-ring calls from premium-rate prefix {prefix} to at least {callees} distinct callees "
                   f"within {params.window_seconds} s")
        threshold = params.premium_min_callees
    elif (callees := ctx.obs.count(ONE_RING, call.event_id)) >= params.min_callees:
        outcome = Outcome[params.burst_outcome]
        counted = f"one-ring calls to at least {callees} distinct callees within {params.window_seconds} s"
        threshold = params.min_callees
    else:
        return []
    reason = f"caller made {counted} (threshold {threshold}), this call {call.event_id} {ring}"
    return [Finding(outcome, CODE, reason, identifier=call.caller.key,
                    report=AutoReport(f"wangiri: {counted}", params.report_ttl_days))]


def _caller(call: Call) -> str | None:
    return None if call.caller.protected else call.caller.key


def _callee(call: Call) -> str:
    return call.callee.key


SPEC = RuleSpec(ID, VERSION, Params, {"calls": evaluate},
                "one-ring calls: many very short unanswered calls to distinct callees, premium-rate prefixes",
                state=(
                    Window(ONE_RING, "calls", _caller, _callee, lambda p: p.window_seconds * 1000,
                           lambda p: p.min_callees, when=one_ring),
                    Window(PREMIUM, "calls", _caller, _callee, lambda p: p.window_seconds * 1000,
                           lambda p: p.premium_min_callees,
                           when=lambda call, p: one_ring(call, p) and premium(call, p) is not None),
                    Values(AUTO, "calls", lambda call: (f"{ID}|{call.caller.key}",) if maybe_one_ring(call) else ()),
                ))
