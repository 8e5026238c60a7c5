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
| on the registry                      | another                     | ``outcome`` (default BLOCK) |
| on the registry                      | none given                  | ``without_route`` (default LABEL) |

An SMS without a route is weaker evidence (the operator's firewall did not
say where it came from), and blocking it would drop every genuine message of
the bank from an operator that does not send routes: it is labelled.

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
    without_route: tuple[str, ...] = choices(("LABEL",), OUTCOMES)  # the first is what one without a route gets


def evaluate(sms: Sms, ctx: Context, params: Params) -> list[Finding]:
    routes = sms.registered_routes
    if routes is None or (sms.route is not None and sms.route in routes):
        return []
    over = f"route {sms.route}" if sms.route else "no route given"
    reason = (f"sender ID {sms.sender.masked()} is registered on {len(routes)} route(s) but SMS {sms.event_id} "
              f"arrived over {over}")
    outcome = params.outcome[0] if sms.route is not None else params.without_route[0]
    return [Finding(Outcome[outcome], CODE, reason, identifier=sms.sender.key)]


SPEC = RuleSpec(ID, VERSION, Params, {"sms": evaluate},
                "a protected SMS sender ID (SEKAT_SENDER_REGISTRY_FILE) over a route it is not registered on")
