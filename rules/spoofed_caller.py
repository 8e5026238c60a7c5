"""Spoofed caller ID (``spoofed_caller``): a domestic number arriving over an international route.

A caller ID that looks domestic (``+60…`` for ``country_code`` 60) cannot
legitimately arrive from an international gateway (``caller_network`` in
``international_networks``): someone abroad is presenting a local number.
Such calls are blocked (BLOCK).
"""

from __future__ import annotations

from dataclasses import dataclass

from rules.outcome import Outcome
from rules.registry import Context, Finding, RuleSpec, bounded
from sekat.records import Call

ID = "spoofed_caller"
VERSION = 1
CODE = "spoofed-caller-id"


@dataclass(frozen=True)
class Params:
    country_code: int = bounded(60, 1, 999)
    international_networks: tuple[str, ...] = ("international",)


def evaluate(call: Call, ctx: Context, params: Params) -> list[Finding]:
    network = (call.caller_network or "").strip().lower()
    if not network or network not in {n.lower() for n in params.international_networks}:
        return []
    if call.caller.protected or not call.caller.e164.startswith(f"+{params.country_code}"):
        return []
    reason = (f"caller ID +{params.country_code} {call.caller.masked()} is domestic but the call "
              f"{call.event_id} arrived over the {network} network")
    return [Finding(Outcome.BLOCK, CODE, reason, identifier=call.caller.key)]


SPEC = RuleSpec(ID, VERSION, Params, {"calls": evaluate}, "domestic caller ID over an international route")
