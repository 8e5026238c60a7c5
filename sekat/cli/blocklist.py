"""``sekat blocklist add|revoke|show|import|export|rebuild``: the blocklist from the command line.

Reports go onto the reports topic through ``blocklist.filing``, the same checks as the agency API, and
name who filed them: ``add``, ``revoke`` and ``import`` refuse to run without an operator (``--operator``
or ``SEKAT_OPERATOR``), recorded as ``filed_by`` ``cli:<operator>`` or ``import:<operator>``;
``show`` reads one entry of the Redis index, audited as the agency API's reads are (``--purpose`` and an
operator required; the ``read`` record on SEKAT_TOPIC_AUDIT before the entry is shown); ``export`` reads the
index, audited the same way per entry (a ``read`` record for each entry, acknowledged before it is written);
``rebuild`` wipes the index and replays the topic.
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

import orjson

from sekat.audit import purpose_of
from sekat.cli.command import KAFKA_AND_REDIS, add_command, add_group
from sekat.errors import BlocklistUnavailable, ConfigError, InvalidReport, SekatError
from sekat.settings import Settings

# What filing a report reads: the region of phone numbers, the protected list, the expiry policy, who files.
FILING = ("phone_region", "protected_keys", "expiry_policy", "proxy_hasher", "operator")
OPERATOR = re.compile(r"^[A-Za-z0-9._@-]{1,64}$")


def _identifier(args: argparse.Namespace) -> tuple[str, str, str | None]:
    if args.phone:
        return "phone", args.phone, None
    if args.wallet:
        return "wallet", args.wallet, None
    if args.proxy:
        return "proxy", args.proxy, None
    for kind in ("sender", "url", "domain"):  # the SMS channel's kinds
        if getattr(args, kind, None):
            return kind, getattr(args, kind), None
    if not args.bank:
        raise SekatError("--account needs --bank (the BIC of the account's bank)")
    return "account", args.account, args.bank


def operator(settings: Settings, args: argparse.Namespace) -> str:
    """Who runs the command: ``--operator``, else ``SEKAT_OPERATOR``; refused without one."""
    name = (getattr(args, "operator", None) or settings.operator).strip()
    if not name:
        raise SekatError("--operator (or SEKAT_OPERATOR) is required: name the person or system that does this, "
                         "for the audit trail")
    if not OPERATOR.match(name):
        raise SekatError(f"--operator: must be 1-64 letters, digits, '.', '_', '@' or '-', got {name[:64]!r}")
    return name


def add_operator(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--operator", help="who does this, a person's or a system's name, recorded in the audit "
                                           "trail (default: SEKAT_OPERATOR; required)")


def _field_error(exc: InvalidReport) -> SekatError:
    """InvalidReport names the report field; on the command line that is an option."""
    option = {"value": "--phone/--account/--wallet/--proxy/--sender/--url/--domain", "ttl_days": "--ttl-days",
              "case_ref": "--case-ref"}.get(
        exc.field, "--link" if exc.field.startswith("links") else f"--{exc.field.replace('_', '-')}")
    message = str(exc).split(": ", 1)[-1]
    if exc.reason == "protected":
        message = message.replace("can never be listed", "can never be blocked")
    return SekatError(f"{option}: {message}")


def cmd_file(settings: Settings, args: argparse.Namespace) -> int:
    """``add`` and ``revoke``: one report, produced and acknowledged, printed with where it landed."""
    from sekat.blocklist.bulk import publish_one
    from sekat.blocklist.filing import file_report
    from sekat.records import key_object

    who = operator(settings, args)
    kind, value, bank = _identifier(args)
    status = "revoked" if args.cmd == "revoke" else args.status
    try:
        report = file_report(kind, value, status, args.source, datetime.now(timezone.utc), bank=bank,
                             case_ref=args.case_ref, reason=args.reason, ttl_days=getattr(args, "ttl_days", 0),
                             filed_by=f"cli:{who}", region=settings.phone_region, protected=settings.protected_keys(),
                             links=[key_object(text) for text in getattr(args, "link", None) or ()],
                             expiry=settings.expiry_policy(), hasher=settings.proxy_hasher())
    except InvalidReport as exc:
        raise _field_error(exc) from None
    meta = publish_one(settings, report)
    body = report.to_json()
    body.update(topic=meta.topic, partition=meta.partition, offset=meta.offset)
    print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_show(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.blocklist.filing import identifier, key_of
    from sekat.blocklist.store import BlocklistStore
    from sekat.records import Entry

    kind, value, bank = _identifier(args)
    try:
        bank_code, number = identifier(kind, value, bank, settings.phone_region, hasher=settings.proxy_hasher())
    except InvalidReport as exc:
        if exc.reason != "protected":
            raise _field_error(exc) from None
        print("not listed (protected: can never be listed)")
        return 1

    who, why = operator(settings, args), purpose(args, "this entry is read")
    secret = audit_key(settings)
    key = key_of(kind, bank_code, number)

    async def read() -> Entry | None:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            return await store.get(key)
        finally:
            await store.close()

    shown = asyncio.run(read())
    audited_read(settings, secret, key, f"cli:{who}", why, shown is not None)
    if shown is None:
        print("not listed")
        return 1
    print(orjson.dumps(shown.to_json(), option=orjson.OPT_INDENT_2).decode())
    return 0


def purpose(args: argparse.Namespace, what: str) -> str:
    """``--purpose``, at least 3 characters (cut to 200), for the audit trail."""
    try:
        return purpose_of(args.purpose, what)
    except ValueError as exc:
        raise SekatError(f"--purpose: {exc}") from None


def audit_key(settings: Settings) -> str:
    """SEKAT_AUDIT_KEY; refused when it is not set."""
    if not settings.audit_key:
        raise ConfigError("SEKAT_AUDIT_KEY", "must be set (16+ random characters) to write or search audit records")
    return settings.audit_key


def audited_read(settings: Settings, secret: str, key: str, by: str, purpose: str, found: bool) -> None:
    """The ``read`` audit record of an entry read from the command line, acknowledged by Kafka before anything of
    the entry is shown (refused otherwise)."""
    from sekat.audit import entry_read
    from sekat.blocklist.bulk import producer

    record_key, value = entry_read(secret, key, by, datetime.now(timezone.utc), purpose, found)
    p = producer(settings)
    try:
        p.send(settings.topic_audit, value, key=record_key).get(timeout=15)
    except Exception as exc:  # noqa: BLE001 - kafka-python raises its own errors and timeouts
        raise BlocklistUnavailable(f"not shown: Kafka did not acknowledge the audit record "
                                   f"({type(exc).__name__})") from exc
    finally:
        p.close()


def cmd_rebuild(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.blocklist.store import BlocklistStore
    from sekat.streams.rebuild import rebuild

    async def go() -> int:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            result = await rebuild(settings, store, settings.protected_keys())
        finally:
            await store.close()
        print(f"rebuild: wiped {result.wiped} entries, replayed {result.records} records "
              f"({result.invalid} invalid, skipped) into {result.entries} entries")
        return 0
    return asyncio.run(go())


def cmd_import(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.blocklist.applied import Applied, WaitTimeout, wait_applied
    from sekat.blocklist.bulk import ImportResult, import_rows, read_rows

    who = operator(settings, args)
    path = Path(args.file)
    if not path.is_file():
        raise SekatError(f"no such file: {path}")
    started = time.perf_counter()
    terminal = sys.stderr.isatty()
    sent = [0, 0]  # (sent, acknowledged): the last counts the import showed

    def show_import(result: ImportResult) -> None:
        sent[:] = result.sent, result.acknowledged
        if terminal:
            print(f"import: {time.perf_counter() - started:5.1f}s  sent {result.sent:,}  "
                  f"acknowledged {result.acknowledged:,}", file=sys.stderr, flush=True)

    result = import_rows(settings, read_rows(path), datetime.now(timezone.utc), args.source or "",
                         settings.protected_keys(), progress=show_import, filed_by=f"import:{who}")
    elapsed = time.perf_counter() - started
    for line, message in result.errors[:args.max_errors]:
        print(f"{path.name}:{line}: {message}", file=sys.stderr)
    if len(result.errors) > args.max_errors:
        print(f"... and {len(result.errors) - args.max_errors} more bad rows", file=sys.stderr)
    print(f"import: {result.sent} reports acknowledged by Kafka, {len(result.errors)} bad rows skipped, "
          f"{result.read} rows in {elapsed:.1f}s ({result.sent / elapsed if elapsed else 0:,.0f} reports/s)",
          flush=True)
    if args.wait_applied:
        shown = [0.0]

        def show_applied(state: Applied) -> None:
            now = time.perf_counter()
            if terminal and now - shown[0] >= 1:
                shown[0] = now
                replicas = f"  replicas {state.replicas}/{state.workers}" if state.workers else ""
                print(f"import: {now - started:5.1f}s  sent {sent[0]:,}  acknowledged {sent[1]:,}  "
                      f"applied {state.reports:,}{replicas}", file=sys.stderr, flush=True)

        indexed: list[float] = []
        try:
            state = asyncio.run(wait_applied(settings, result.first, result.ends, args.wait_timeout,
                                             progress=show_applied,
                                             on_indexed=lambda: indexed.append(time.perf_counter() - started)))
        except WaitTimeout as exc:
            print(f"sekat: {exc}", file=sys.stderr)
            return 4
        workers = f"{state.workers} worker{'' if state.workers == 1 else 's'}"
        print(f"import: applied to the index {indexed[0]:.1f}s after the import started, in effect on every "
              f"running worker's replica ({workers}) {time.perf_counter() - started:.1f}s after it started")
    return 0 if not result.errors else 3


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    """Every entry of the index, a batch at a time: each batch's ``read`` audit records (one per entry) are sent
    together and acknowledged by Kafka before the batch is written; a failure stops the export there."""
    from sekat.audit import entry_read
    from sekat.blocklist.bulk import producer, write_export
    from sekat.blocklist.store import BlocklistStore

    by, why = f"cli:{operator(settings, args)}", purpose(args, "the index is exported")
    secret = audit_key(settings)
    p = producer(settings)

    def audited(keys: list[str]) -> None:
        now = datetime.now(timezone.utc)
        try:
            sends = [p.send(settings.topic_audit, value, key=record_key)
                     for record_key, value in (entry_read(secret, key, by, now, why, True) for key in keys)]
            p.flush(timeout=30)
            for sent in sends:
                sent.get(timeout=15)
        except Exception as exc:  # noqa: BLE001 - kafka-python raises its own errors and timeouts
            raise BlocklistUnavailable(f"export stopped: Kafka did not acknowledge the audit records "
                                       f"({type(exc).__name__})") from exc

    async def go() -> int:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8", newline="")
        count, first = 0, True
        try:
            async for batch in store.scan_entries():
                audited([entry.key for entry in batch])
                count += write_export(batch, out, args.format, header=first)
                first = False
        finally:
            await store.close()
            p.close()
            if out is not sys.stdout:
                out.close()
        print(f"export: {count} entries, each audited as read by {by}", file=sys.stderr)
        return 0
    return asyncio.run(go())


def add_blocklist(sub: argparse._SubParsersAction) -> None:
    bl_sub = add_group(sub, "blocklist", "file, revoke, show, import, export or rebuild blocklist entries",
                       "File, revoke, show, import, export or rebuild blocklist entries. Reports go onto the reports "
                       "topic, the blocklist's source of truth, and the worker applies them to the Redis index.")
    add = add_command(bl_sub, "add", cmd_file, "file a report on a phone number or account (to sekat.reports)",
                      "File a report on a phone number or account: checked as the agency API checks it, then sent "
                      "to the reports topic and printed with its partition and offset once Kafka acknowledged it.",
                      reads=("topic_reports", "kafka_client_config", *FILING), needs=("kafka",))
    revoke = add_command(bl_sub, "revoke", cmd_file, "revoke an entry (appeal upheld; to sekat.reports)",
                         "Revoke an entry (an appeal was upheld): a revoked report goes to the reports topic, and "
                         "no command acts on the identifier again until a newer report.",
                         reads=("topic_reports", "kafka_client_config", *FILING), needs=("kafka",))
    show = add_command(bl_sub, "show", cmd_show, "show one entry of the index, with its history (audited)",
                       "Show one entry of the Redis index, with its history, once the read (who, why, the "
                       "identifier's keyed hash) is on the audit topic; exit status 1 when it is not listed.",
                       reads=("phone_region", "redis_prefix", "proxy_hasher", "operator", "audit_key", "topic_audit",
                              "kafka_client_config"), needs=KAFKA_AND_REDIS)
    for p in (add, revoke, show):
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--phone", help="phone number in any common format")
        who.add_argument("--account", help="account number (spaces and dashes allowed); needs --bank")
        who.add_argument("--wallet", metavar="PROVIDER:ID", help="e-wallet account, e.g. TNG:0123456789")
        who.add_argument("--proxy", metavar="TYPE:VALUE", help="DuitNow proxy by NRIC, PASSPORT or BRN, e.g. "
                         "NRIC:900101-14-5678 (hashed with SEKAT_PROXY_HASH_KEY before it leaves this command)")
        who.add_argument("--sender", help="SMS sender ID (case, spaces, '-', '.', '_' ignored)")
        who.add_argument("--url", help="a link (one page; scheme, case, www. and punycode normalised)")
        who.add_argument("--domain", help="a domain: matches links to it and to every host under it")
        p.add_argument("--bank", help="BIC of the account's bank, e.g. CIBBMYKL")
    add_operator(show)
    show.add_argument("--purpose", required=True, help="why the entry is read, e.g. a case reference (recorded in "
                                                       "the audit trail)")
    for p in (add, revoke):
        add_operator(p)
        p.add_argument("--source", required=True, help="reporting agency, e.g. PDRM, NSRC, MBBEMYKL")
        p.add_argument("--reason", required=p is revoke, default="", help="why")
        p.add_argument("--case-ref", default="", help="the agency's case reference")
    add.add_argument("--status", choices=("reported", "confirmed"), default="reported")
    add.add_argument("--ttl-days", type=int, default=None,
                     help="expire after this many days (0: never; default: SEKAT_EXPIRY_DAYS)")
    add.add_argument("--link", action="append", metavar="phone:NUMBER|account:BIC:NUMBER|domain:HOST|...",
                     help="another identifier of the same scam; repeat for several")
    imp = add_command(bl_sub, "import", cmd_import, "file reports in bulk from a CSV or JSONL file",
                      "File reports in bulk from a CSV (with a header row) or JSONL file, with the same checks as "
                      "`add`, skipping bad rows (reported by line, exit status 3), with progress on a terminal. "
                      "--wait-applied then waits until the reports group (SEKAT_APP_ID) has applied them to the "
                      "index and every running worker's replica has followed the change stream past them.",
                      reads=("topic_reports", "aiokafka_config", "app_id", "redis_url", "redis_prefix", *FILING),
                      needs=("kafka",))
    imp.add_argument("file", help="a .csv (with a header row) or .jsonl file")
    add_operator(imp)
    imp.add_argument("--source", help="agency for rows without a source column")
    imp.add_argument("--max-errors", type=int, default=50, help="bad rows to print (all are counted)")
    imp.add_argument("--wait-applied", action="store_true",
                     help="after Kafka acknowledged the reports, wait until the index has applied them and every "
                          "running worker's replica has them, and say how long that took")
    imp.add_argument("--wait-timeout", type=float, default=600.0, metavar="SECONDS",
                     help="with --wait-applied: give up (exit status 4) after this long (default 600)")
    exp = add_command(bl_sub, "export", cmd_export, "write every index entry as JSONL or CSV (audited)",
                      "Write every entry of the Redis index as JSONL (full entries, with history) or CSV (summary "
                      "columns); `import` files a JSONL export again. Each entry's read (who, why, its keyed "
                      "hash) is on the audit topic before the entry is written, a batch at a time; if Kafka does "
                      "not acknowledge them, the export stops there.",
                      reads=("redis_prefix", "operator", "audit_key", "topic_audit", "kafka_client_config"),
                      needs=KAFKA_AND_REDIS)
    add_operator(exp)
    exp.add_argument("--purpose", required=True, help="why the index is exported, e.g. a ticket reference (recorded "
                                                      "in the audit trail for every entry)")
    exp.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    exp.add_argument("--output", "-o", default="-", help="file to write ('-': standard output)")
    add_command(bl_sub, "rebuild", cmd_rebuild, "wipe the Redis index and replay sekat.reports into it",
                "Wipe the Redis index and replay the reports topic into it, the way the worker applies reports.",
                reads=("topic_reports", "kafka_client_config", "max_event_bytes", "phone_region", "protected_keys",
                       "redis_prefix"),
                needs=KAFKA_AND_REDIS)
