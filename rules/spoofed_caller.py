"""Spoofed caller ID (``spoofed_caller``): a domestic number arriving over an international route.

A caller ID that looks domestic (``+60…`` for ``country_code`` 60) cannot
legitimately arrive from an international gateway (``caller_network`` in
``international_networks``): someone abroad is presenting a local number,
unless the originating carrier vouches for it. The call's STIR/SHAKEN
attestation (``Call.attestation``) is that carrier's word on the caller's
right to the number:

| attestation                         | domestic caller ID over an international route |
|-------------------------------------|------------------------------------------------|
| in ``trusted`` (default A)          | nothing: a carrier vouches for it (a roaming subscriber) |
| in ``label`` (default B)            | LABEL: the carrier knows the customer, not the number |
| any other (C) or absent             | BLOCK: the origin is unknown |

A level in neither list is treated like C, so an unexpected value never
makes a spoofed call pass.
"""

from __future__ import annotations

from dataclasses import dataclass

from sekat.records import Call
from sekat.rules.outcome import Outcome
from sekat.rules.registry import Context, Finding, RuleSpec, bounded, choices

ID = "spoofed_caller"
VERSION = 2
CODE = "spoofed-caller-id"
LEVELS = ("A", "B", "C")


@dataclass(frozen=True)
class Params:
    country_code: int = bounded(60, 1, 999)
    international_networks: tuple[str, ...] = ("international",)
    trusted: tuple[str, ...] = choices(("A",), LEVELS)  # attestations that clear the call
    label: tuple[str, ...] = choices(("B",), LEVELS)  # attestations that only label it


def evaluate(call: Call, ctx: Context, params: Params) -> list[Finding]:
    network = (call.caller_network or "").strip().lower()
    if not network or network not in {n.lower() for n in params.international_networks}:
        return []
    if call.caller.protected or not call.caller.e164.startswith(f"+{params.country_code}"):
        return []
    level = call.attestation
    if level is not None and level in params.trusted:
        return []
    attested = f"attestation {level}" if level else "no attestation"
    reason = (f"caller ID +{params.country_code} {call.caller.masked()} is domestic but the call "
              f"{call.event_id} arrived over the {network} network with {attested}")
    outcome = Outcome.LABEL if level is not None and level in params.label else Outcome.BLOCK
    return [Finding(outcome, CODE, reason, identifier=call.caller.key)]


SPEC = RuleSpec(ID, VERSION, Params, {"calls": evaluate},
                "domestic caller ID over an international route, weighed by its STIR/SHAKEN attestation")
