"""Sender impersonation (``sender_impersonation``): a protected SMS sender ID arriving over a route not its own.

Banks, couriers and agencies register their sender IDs (``MAYBANK``) and the
routes (aggregators, SMSC or interconnect ids) they send them over; the registry
is ``SEKAT_SENDER_REGISTRY_FILE`` (sekat/senders.py), and the decoder sets
``Sms.registered_routes`` for a sender on it. The same sender ID over any other
route, or with no route given, is someone else using the name:

| sender                               | route                       | outcome |
|--------------------------------------|-----------------------------|---------|
| not on the registry                  | any                         | nothing |
| on the registry                      | one it is registered on     | nothing |
| on the registry                      | another, or none given      | ``outcome`` (default BLOCK) |

The finding names the sender ID but never reports it (it is protected: it
cannot be listed); the command blocks that one SMS.
"""

from __future__ import annotations

from dataclasses import dataclass

from sekat.records import Sms
from sekat.rules.outcome import Outcome
from sekat.rules.registry import Context, Finding, RuleSpec, choices

ID = "sender_impersonation"
VERSION = 1
CODE = "sender-impersonation"
OUTCOMES = ("BLOCK", "LABEL")


@dataclass(frozen=True)
class Params:
    outcome: tuple[str, ...] = choices(("BLOCK",), OUTCOMES)  # the first is what an impersonation gets


def evaluate(sms: Sms, ctx: Context, params: Params) -> list[Finding]:
    routes = sms.registered_routes
    if routes is None or (sms.route is not None and sms.route in routes):
        return []
    over = f"route {sms.route}" if sms.route else "no route given"
    reason = (f"sender ID {sms.sender.masked()} is registered on {len(routes)} route(s) but SMS {sms.event_id} "
              f"arrived over {over}")
    return [Finding(Outcome[params.outcome[0]], CODE, reason, identifier=sms.sender.key)]


SPEC = RuleSpec(ID, VERSION, Params, {"sms": evaluate},
                "a protected SMS sender ID (SEKAT_SENDER_REGISTRY_FILE) over a route it is not registered on")
