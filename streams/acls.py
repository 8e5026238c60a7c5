"""Kafka ACLs for Sekat's topics: who may read and write what, least privilege, from the settings.

``acl_plan`` is the one statement of the access model (docs/security.md):

- Sekat's worker principal reads the inputs and the reports, writes commands,
  decisions, dead letters and consolidated reports, and owns its consumer
  groups (prefix ``{SEKAT_APP_ID}``) and Faust's internal topics (prefix
  ``{SEKAT_APP_ID}-``);
- the agency API/CLI principal writes ``sekat.reports`` (reports, revocations,
  renewals), ``sekat.decisions`` (the audit record of a safety-brake
  re-arm or of a review trip, written before it takes effect), ``sekat.feedback``
  (institutions' feedback) and ``sekat.notices`` (notices to the listing
  agency) and ``sekat.institutions`` (institutions configured for the relay),
  ``sekat.appeals`` (appeals filed and decided) and ``sekat.audit`` (entry reads and erasures, written
  before they answer), and nothing else; the worker writes ``sekat.feedback`` and
  ``sekat.notices`` too (a pacs.002 status report is feedback), and ``sekat.appeals``
  (the purge's tombstones);
- the webhook relay's principal (``sekat relay``, when given) reads the command
  topics (shared and per-institution) and ``sekat.institutions`` (the only
  reader of the secrets there), writes ``sekat.commands.undelivered``
  and owns its consumer group ``{SEKAT_APP_ID}.relay``;
- each bank writes transfers and reads only ``{SEKAT_TOPIC_FREEZE}.{BIC8}``;
  each operator writes calls and reads only ``{SEKAT_TOPIC_BLOCK}.{OPERATOR}``
  (per-institution routing); their consumer groups start with their code.

``sekat acls`` prints it as ``kafka-acls.sh`` commands; the security test
applies the same plan to a broker with an authorizer and checks that it is
enough for Sekat and that one bank cannot read another's commands.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from sekat.errors import ConfigError
from sekat.settings import Settings


@dataclass(frozen=True, order=True)
class Acl:
    principal: str  # e.g. User:sekat
    resource: str  # topic, group or cluster
    name: str
    pattern: str  # literal or prefixed
    operations: tuple[str, ...]  # Read, Write, Describe, Create


def acl_plan(settings: Settings, sekat: str, api: str, institutions: Mapping[str, str],
             relay: str | None = None) -> list[Acl]:
    """ACLs for Sekat's worker ``sekat``, the agency API/CLI ``api``, each routed institution's principal and,
    when given, the webhook relay's ``relay``.

    ``institutions`` maps a code in ``SEKAT_ROUTE_BANKS``/``SEKAT_ROUTE_OPERATORS`` to its principal; a code
    with no topic of its own raises ``ConfigError`` (it would have to read the shared topic, everyone's).
    """
    routes = settings.command_topics()
    rw, read, write = ("Read", "Write", "Describe"), ("Read", "Describe"), ("Write", "Describe")
    plan = [
        Acl(sekat, "topic", settings.topic_transfers, "literal", read),
        Acl(sekat, "topic", settings.topic_calls, "literal", read),
        Acl(sekat, "topic", settings.topic_sms, "literal", read),
        Acl(sekat, "topic", settings.topic_reports, "literal", rw),
        Acl(sekat, "topic", settings.topic_decisions, "literal", write),
        Acl(sekat, "topic", settings.topic_deadletter, "literal", write),
        # Prefixed: the shared command topics and every per-institution topic under them.
        Acl(sekat, "topic", settings.topic_freeze, "prefixed", write),
        Acl(sekat, "topic", settings.topic_block, "prefixed", write),
        # Faust's own topics (``{app id}-__assignor-__leader``) and both consumer groups start with the app id.
        Acl(sekat, "topic", f"{settings.app_id}-", "prefixed", ("Read", "Write", "Describe", "Create")),
        Acl(sekat, "group", settings.app_id, "prefixed", read),
        Acl(sekat, "topic", settings.topic_feedback, "literal", write),
        Acl(sekat, "topic", settings.topic_notices, "literal", write),
        # The purge tombstones appeals past their retention or of a purged entry (streams/purge.py).
        Acl(sekat, "topic", settings.topic_appeals, "literal", write),
        Acl(api, "topic", settings.topic_reports, "literal", write),
        # A re-arm is refused unless its audit record is on the decisions topic first (brake/routes.py).
        Acl(api, "topic", settings.topic_decisions, "literal", write),
        # Appeals are filed and decided through the API only (api/appeals.py).
        Acl(api, "topic", settings.topic_appeals, "literal", write),
        Acl(api, "topic", settings.topic_feedback, "literal", write),
        Acl(api, "topic", settings.topic_notices, "literal", write),
        # Institutions configured through the API, with their signing secrets: the relay alone reads them.
        Acl(api, "topic", settings.topic_institutions, "literal", write),
        # Entry reads and erasures are audited before they answer (docs/privacy.md).
        Acl(api, "topic", settings.topic_audit, "literal", write),
    ]
    if relay is not None:
        plan += [Acl(relay, "topic", settings.topic_freeze, "prefixed", read),
                 Acl(relay, "topic", settings.topic_block, "prefixed", read),
                 Acl(relay, "topic", settings.topic_undelivered, "literal", write),
                 Acl(relay, "topic", settings.topic_institutions, "literal", read),
                 Acl(relay, "group", f"{settings.app_id}.relay", "literal", read)]
    for code, principal in institutions.items():
        bank_topic, operator_topic = routes.get((True, code)), routes.get((False, code))
        if bank_topic is None and operator_topic is None:
            raise ConfigError("SEKAT_ROUTE_BANKS", f"{code} has no command topic of its own: list it in "
                                                   "SEKAT_ROUTE_BANKS or SEKAT_ROUTE_OPERATORS "
                                                   "(with SEKAT_COMMAND_ROUTING=per-institution)")
        if bank_topic is not None:
            plan += [Acl(principal, "topic", bank_topic, "literal", read),
                     Acl(principal, "topic", settings.topic_transfers, "literal", write)]
        if operator_topic is not None:
            plan += [Acl(principal, "topic", operator_topic, "literal", read),
                     Acl(principal, "topic", settings.topic_calls, "literal", write),
                     Acl(principal, "topic", settings.topic_sms, "literal", write)]
        plan.append(Acl(principal, "group", code, "prefixed", read))
    return plan


def kafka_acls_commands(plan: list[Acl], bootstrap: str, command_config: str = "admin.properties") -> list[str]:
    """One ``kafka-acls.sh --add`` command per ACL of ``plan``."""
    lines = []
    for acl in plan:
        ops = " ".join(f"--operation {op}" for op in acl.operations)
        lines.append(f"kafka-acls.sh --bootstrap-server {bootstrap} --command-config {command_config} --add "
                     f"--allow-principal {acl.principal} {ops} --{acl.resource} '{acl.name}' "
                     f"--resource-pattern-type {acl.pattern}")
    return lines
