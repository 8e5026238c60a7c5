"""``sekat privacy erase|audit-export``: an identifier's personal data erased, and the audit trail for a regulator.

``erase`` removes an identifier's personal data everywhere Sekat keeps it (docs/privacy.md): it refuses an
entry that is still listed (revoke it first) or whose release commands are not yet sent, then writes the
audit stub (``sekat.audit``: who, when, why, the identifier's keyed hash, never the identifier) and only
once Kafka has it: writes an unlink on each entry the erased one is linked to (the reports agent takes every
link to it out of them, blocklist/links.py ``unlinks``), removes the entry from the index (every replica drops
it through the change stream), tombstones the key on the compacted reports topic (the broker's cleaner then drops its records), tombstones
the identifier's appeals on the appeals topic and deletes them from Redis, tombstones institutions' feedback
records that name the entry on the feedback topic (one that names other entries too is written again without
it), deletes the identifier's rule state, and removes the safety brake's trip of it and its name from the brake's
log (each event kept as a stub without it). ``audit-export`` writes the audit records as JSON lines.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from datetime import datetime, timezone

import orjson

from sekat.cli.blocklist import _field_error, _identifier, add_operator, audit_key, operator
from sekat.cli.command import KAFKA_AND_REDIS, add_command, add_group
from sekat.errors import BlocklistUnavailable, InvalidReport, SekatError
from sekat.records import Report
from sekat.settings import Settings


def identifier_key(settings: Settings, args: argparse.Namespace) -> str:
    """The index key of ``--phone`` / ``--account --bank``, normalised as filing does."""
    from sekat.blocklist.filing import identifier

    kind, value, bank = _identifier(args)
    try:
        bank_code, number = identifier(kind, value, bank, settings.phone_region)
    except InvalidReport as exc:
        raise _field_error(exc) from None
    return f"phone:{number}" if kind == "phone" else f"account:{bank_code}:{number}"


def cmd_erase(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.audit import erasure
    from sekat.blocklist.bulk import producer
    from sekat.blocklist.store import BlocklistStore
    from sekat.blocklist.feedback import FeedbackStore
    from sekat.brake.store import BrakeStore
    from sekat.blocklist.related import Related, related
    from sekat.blocklist.related import forget as forget_related
    from sekat.cli.appeals import latest_records
    from sekat.release.acted import ActedStore

    who = operator(settings, args)
    reason = args.reason.strip()
    if len(reason) < 3:
        raise SekatError("--reason: say why (3 characters or more), e.g. the erasure request's reference")
    secret = audit_key(settings)
    key = identifier_key(settings, args)
    now = datetime.now(timezone.utc)

    async def check() -> list[Report]:
        """Refuse an erasure that must wait; the unlinks for the entries linked to it that are in the index."""
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        acted = ActedStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            entry = await store.get(key)
            if entry is not None and entry.active_at(now):
                raise SekatError(f"the entry is listed ({entry.status.value}): revoke it first "
                                 "(sekat blocklist revoke ... --reason ...), then erase it")
            if (await acted.members([key]))[key]:
                raise SekatError("release commands for the entry are not sent yet: erase it after the next release "
                                 "sweep (SEKAT_RELEASE_INTERVAL_S)")
            if entry is None:
                return []
            return await store.unlinks({key: entry}, now, f"cli:{who}", "erasure")
        finally:
            await acted.close()
            await store.close()

    unlinking = asyncio.run(check())
    def naming(value: bytes) -> bool:  # a cheap test on each record's bytes; the JSON is read for those it passes
        return key.encode() in value

    # What Redis indexes by identifier, and what the topics hold (an appeal or feedback Redis lost is found too).
    on_topic = {k.decode() for k, v in latest_records(settings, settings.topic_appeals, naming).items()
                if orjson.loads(v).get("identifier") == key}
    feedback_on_topic = latest_records(settings, settings.topic_feedback, naming)

    async def find() -> Related:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            return await related(store.client, settings.redis_prefix, key, on_topic, feedback_on_topic)
        finally:
            await store.close()

    gone = asyncio.run(find())
    record_key, stub = erasure(secret, key, f"cli:{who}", now, reason)
    p = producer(settings)
    try:  # the audit stub first: an erasure the audit trail does not show never happens
        p.send(settings.topic_audit, stub, key=record_key).get(timeout=15)
        # The links to it go from the entries linked to it before its own tombstone: an erasure that stops here
        # is run again, and an unlink applied twice changes nothing.
        for sent in [p.send(settings.topic_reports, orjson.dumps(r.to_json()), key=r.key.encode())
                     for r in unlinking]:
            sent.get(timeout=15)
        p.send(settings.topic_reports, None, key=key.encode()).get(timeout=15)
        sends = [p.send(topic, v, key=k) for topic, k, v in gone.records(settings.topic_appeals,
                                                                         settings.topic_feedback)]
        for sent in sends:
            sent.get(timeout=15)
    except Exception as exc:  # noqa: BLE001 - kafka-python raises its own errors and timeouts
        raise BlocklistUnavailable(f"Kafka did not acknowledge the erasure: {type(exc).__name__}") from exc
    finally:
        p.close()

    async def remove() -> tuple[int, int]:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            await store.forget(key, now)  # the entry, its feedback and flags
            state = [k async for k in store.client.scan_iter(match=f"{settings.redis_prefix}rs:*:{key}", count=1000)]
            for rkey in state:  # one key a command: as it is on a cluster
                await store.client.delete(rkey)
            await FeedbackStore(store.client, settings.redis_prefix).forget_sent(key)
            held = await forget_related(store.client, settings.redis_prefix, gone)
            await BrakeStore(store.client, settings.redis_prefix).forget(key, "erased")  # type: ignore[arg-type]
            return len(state), held
        finally:
            await store.close()

    state, held = asyncio.run(remove())
    print(f"erased: the entry, its reports (tombstoned on {settings.topic_reports}), its links from "
          f"{len(unlinking)} linked entr{'y' if len(unlinking) == 1 else 'ies'}, {state} rule-state key(s), "
          f"{len(gone.appeal_ids)} appeal(s) (tombstoned on {settings.topic_appeals}, {held} held in Redis) and "
          f"{len(gone.feedback)} feedback record(s) on {settings.topic_feedback} ({gone.rewritten} kept for other "
          "entries without this one); "
          f"audit stub {record_key.decode()} on {settings.topic_audit}")
    return 0


def cmd_audit_export(settings: Settings, args: argparse.Namespace) -> int:
    from kafka import KafkaConsumer, TopicPartition

    from sekat.audit import subject

    wanted = subject(audit_key(settings), identifier_key(settings, args)) if (args.phone or args.account) else None
    since, until = args.since or "", args.until or "~"  # ISO times compare as text
    consumer = KafkaConsumer(**settings.kafka_client_config(), group_id=None, enable_auto_commit=False)  # type: ignore[arg-type]
    out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8")
    written = 0
    try:
        tps = [TopicPartition(settings.topic_audit, p)
               for p in sorted(consumer.partitions_for_topic(settings.topic_audit) or ())]
        consumer.assign(tps)
        consumer.seek_to_beginning(*tps)
        ends = consumer.end_offsets(tps) if tps else {}
        while any(consumer.position(tp) < ends[tp] for tp in tps):
            for records in consumer.poll(timeout_ms=1000).values():
                for record in records:
                    body = orjson.loads(record.value)
                    if (wanted is None or body.get("subject") == wanted) and since <= body.get("at", "") <= until:
                        out.write(orjson.dumps(body).decode() + "\n")
                        written += 1
    finally:
        consumer.close()
        if out is not sys.stdout:
            out.close()
    print(f"audit-export: {written} records", file=sys.stderr)
    return 0


def add_privacy(sub: argparse._SubParsersAction) -> None:
    group = add_group(sub, "privacy", "erase an identifier's personal data; export the audit trail",
                      "Erase an identifier's personal data everywhere Sekat keeps it, audited; export the audit "
                      "records (entry reads, erasures) for a regulator (docs/privacy.md).")
    erase = add_command(group, "erase", cmd_erase, "erase an identifier's personal data (audited)",
                        "Erase an identifier whose entry is revoked or expired: an audit stub without the "
                        "identifier goes to the audit topic first, then every link to it leaves the entries linked "
                        "to it, the entry leaves the index and every replica, its reports are tombstoned on the "
                        "reports topic, its appeals and institutions' feedback on it are tombstoned on their topics "
                        "and deleted from Redis, its rule state is deleted, and the safety brake's trip of it goes "
                        "and its log keeps each event without it. "
                        "Refused while the entry is listed or its release commands are not yet sent.",
                        reads=("phone_region", "redis_url", "redis_prefix", "audit_key", "operator", "topic_audit",
                               "topic_reports", "topic_appeals", "topic_feedback", "kafka_client_config"),
                        needs=KAFKA_AND_REDIS)
    export = add_command(group, "audit-export", cmd_audit_export, "write the audit records as JSON lines",
                         "Write the audit records of the audit topic (entry reads through the agency API, erasures) "
                         "as JSON lines, for a regulator: all of them, or one identifier's (found by its keyed "
                         "hash), between --since and --until.",
                         reads=("phone_region", "audit_key", "topic_audit", "kafka_client_config"), needs=("kafka",))
    for p in (erase, export):
        who = p.add_mutually_exclusive_group(required=p is erase)
        who.add_argument("--phone", help="phone number in any common format")
        who.add_argument("--account", help="account number; needs --bank")
        p.add_argument("--bank", help="BIC of the account's bank")
    add_operator(erase)
    erase.add_argument("--reason", required=True, help="why, e.g. the erasure request's reference (no identifier)")
    export.add_argument("--since", help="only records at or after this UTC time (ISO 8601, e.g. 2026-12-01)")
    export.add_argument("--until", help="only records at or before this UTC time (ISO 8601)")
    export.add_argument("--output", "-o", default="-", help="file to write ('-': standard output)")
