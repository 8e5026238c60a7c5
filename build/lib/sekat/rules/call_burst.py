"""Call burst (``call_burst``): one caller reaching many different people at once.

When a caller reaches at least ``min_callees`` distinct callees within
``window_seconds`` (event time, any window containing this call), the call is
labelled (LABEL) and the caller is reported automatically as ``reported``
with source ``sekat-rule``.
"""

from __future__ import annotations

from dataclasses import dataclass

from sekat.records import Call
from sekat.rules.outcome import Outcome
from sekat.rules.registry import AutoReport, Context, Finding, RuleSpec, bounded
from sekat.rules.windows import most_distinct

ID = "call_burst"
VERSION = 1
CODE = "call-burst"


@dataclass(frozen=True)
class Params:
    min_callees: int = bounded(20, 2, 100_000)
    window_seconds: int = bounded(60, 1, 3600)
    report_ttl_days: int = bounded(7, 1, 3650)


def evaluate(call: Call, ctx: Context, params: Params) -> list[Finding]:
    caller = call.caller
    if caller.protected:
        return []
    at = int(call.occurred_at.timestamp() * 1000)
    own = (at, call.callee.key)
    callees = most_distinct(ctx.obs.outbound.get(caller.key, ()), at, params.window_seconds * 1000, own)
    if callees < params.min_callees:
        return []
    reason = (f"caller reached {callees} distinct callees within {params.window_seconds} s "
              f"(threshold {params.min_callees}), this call {call.event_id} included")
    report = AutoReport("phone", caller.e164, "", f"call burst: {callees} distinct callees within "
                        f"{params.window_seconds} s", params.report_ttl_days)
    return [Finding(Outcome.LABEL, CODE, reason, identifier=caller.key, report=report)]


SPEC = RuleSpec(ID, VERSION, Params, {"calls": evaluate}, "one caller, many callees in a short window")
