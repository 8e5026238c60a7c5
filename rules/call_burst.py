"""Call burst (``call_burst``): one caller reaching many different people at once.

When a caller reaches at least ``min_callees`` distinct callees within
``window_seconds`` (event time, any window containing this call), the call is
labelled (LABEL) and the caller is reported automatically as ``reported``
with source ``sekat-rule``.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

from sekat.expiry import MAX_DAYS
from sekat.records import Call
from sekat.rules.outcome import Outcome
from sekat.rules.registry import AUTO, AutoReport, Context, Finding, RuleSpec, Values, Window, bounded

ID = "call_burst"
VERSION = 1
CODE = "call-burst"
WINDOW = "outbound"  # the distinct callees of each caller


@dataclass(frozen=True)
class Params:
    min_callees: int = bounded(20, 2, 100_000)  # distinct callees that make a burst
    window_seconds: int = bounded(60, 1, 3600)  # how close together, in event time, they must be called
    report_ttl_days: int = bounded(7, 1, MAX_DAYS)  # how long the automatic report keeps the caller listed


def caller_key(call: Call) -> str | None:
    return None if call.caller.protected else call.caller.key


def evaluate(call: Call, ctx: Context, params: Params) -> list[Finding]:
    caller = call.caller
    if caller.protected:
        return []
    callees = ctx.obs.count(WINDOW, call.event_id)
    if callees < params.min_callees:
        return []
    before, report = _wording(callees, params.window_seconds, params.min_callees, params.report_ttl_days)
    return [Finding(Outcome.LABEL, CODE, before + call.event_id + " included", identifier=caller.key, report=report)]


@lru_cache(maxsize=256)
def _wording(callees: int, window_seconds: int, min_callees: int, report_ttl_days: int) -> tuple[str, AutoReport]:
    """The reason up to the call's event id, and the automatic report: the same for every match of a count (a
    count is capped at the threshold)."""
    counted = f"at least {callees} distinct callees within {window_seconds} s"
    return (f"caller reached {counted} (threshold {min_callees}), this call ",
            AutoReport(f"call burst: {counted}", report_ttl_days))


SPEC = RuleSpec(ID, VERSION, Params, {"calls": evaluate}, "one caller, many callees in a short window", state=(
    Window(WINDOW, "calls", caller_key, lambda call: call.callee.key, lambda p: p.window_seconds * 1000,
           lambda p: p.min_callees),
    Values(AUTO, "calls", lambda call: () if call.caller.protected else (f"{ID}|{call.caller.key}",)),
))
