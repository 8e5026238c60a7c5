"""The ``sekat`` command: worker, local stack, topics and blocklist administration.

Every sub-command builds ``Settings`` from the environment first, so a bad
``SEKAT_*`` variable stops it with a message naming the variable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import orjson

from sekat.errors import ConfigError, SekatError
from sekat.settings import Settings

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
KAFKA_AND_REDIS = ("kafka", "redis")


def _configure_logging(settings: Settings) -> None:
    from sekat.redaction import install, secrets_of

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Every record, ours or a library's, at any level: secrets scrubbed, bare phone/account numbers masked.
    install(secrets_of(settings), logging.getLogger().level)
    # kafka-python narrates every connection at INFO; its warnings are what matter here.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.streams.app import create_app

    app = create_app(settings)
    logging.getLogger("sekat").info("starting worker with %s", settings.redacted())
    try:
        faust_worker(app, settings).execute_from_commandline()
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    # Faust's orderly stop is over (its services stopped, its loop closed). A thread it could not stop in time
    # (its consumer's, with the broker gone) would keep the interpreter waiting at exit for its own retries
    # (15 s more, measured): leave now, with the logs flushed.
    logging.shutdown()
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def faust_worker(app: Any, settings: Settings) -> Any:
    """Faust's worker for ``app``, without its terminal spinner.

    At SEKAT_LOG_LEVEL warning or error, Faust shows a spinner that "spins for every log message":
    it sets the root logger to DEBUG, so every library's debug call (one per message sent, in Faust)
    builds a record, which redaction then scans, only for the handler to drop it.
    """
    import faust

    worker = faust.Worker(app, loglevel=settings.log_level.upper())
    worker.spinner = None
    return worker


def cmd_acls(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.streams.acls import acl_plan, kafka_acls_commands

    institutions: dict[str, str] = {}
    for item in args.institution or ():
        code, sep, principal = item.partition("=")
        if not sep or not code.strip() or not principal.strip():
            raise SekatError(f"--institution takes CODE=PRINCIPAL, e.g. MBBEMYKL=User:bank-mbbe; got {item!r}")
        institutions[code.strip().upper()] = principal.strip()
    plan = acl_plan(settings, args.sekat_principal, args.api_principal, institutions)
    print("\n".join(kafka_acls_commands(plan, settings.kafka_bootstrap, args.command_config)))
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.streams.topics import create_topics

    created = create_topics(settings)
    print(f"topics: created {', '.join(created) if created else 'none (all exist)'}")
    return 0


def _stack(settings: Settings) -> tuple[object | None, object | None]:
    """The local servers the settings point at: one broker or a KRaft cluster (several bootstrap
    addresses), one Redis or a Redis Cluster (``redis+cluster://``); None for a remote server."""
    from sekat.localstack.kafka_servers import KafkaBroker, KafkaCluster
    from sekat.localstack.redis_servers import RedisClusterServers, RedisServer
    from sekat.redis_url import cluster_seeds, is_cluster

    base = Path(settings.stack_dir).resolve()
    addresses = [a.strip().rpartition(":") for a in settings.kafka_bootstrap.split(",")]
    kafka: object | None = None
    if all(host in LOCAL_HOSTS for host, _, _ in addresses):
        ports = [int(port) for _, _, port in addresses]
        kafka = KafkaBroker(base / "kafka", ports[0], ports[0] + 1) if len(ports) == 1 else \
            KafkaCluster(base / "kafka-cluster", ports)
    url = urlparse(settings.redis_url)
    redis: object | None = None
    if is_cluster(settings.redis_url):
        seeds = cluster_seeds(settings.redis_url)
        # fewer than 3 addresses name an existing cluster by a seed: used, not started
        if all(host in LOCAL_HOSTS for host, _ in seeds) and len(seeds) >= 3 and "@" not in url.netloc:
            redis = RedisClusterServers(base / "redis-cluster", [port for _, port in seeds])
    elif url.scheme == "redis" and (url.hostname or "127.0.0.1") in LOCAL_HOSTS and not url.password:
        redis = RedisServer(base / "redis", url.port or 6379)
    return kafka, redis


def _check_cluster_flags(settings: Settings, args: argparse.Namespace) -> None:
    """``--brokers N`` / ``--redis-cluster`` say what the settings must describe; a mismatch names the setting."""
    from sekat.redis_url import is_cluster

    addresses = [a.strip().rpartition(":")[0] for a in settings.kafka_bootstrap.split(",")]
    count = len(addresses)
    if args.brokers is not None:
        if args.brokers < 1 or count != args.brokers:
            raise SekatError(f"--brokers {args.brokers}: SEKAT_KAFKA_BOOTSTRAP must list {args.brokers} local "
                             f"address(es), one per broker, e.g. 127.0.0.1:19092,127.0.0.1:29092,127.0.0.1:39092 "
                             f"(each broker's controller listens on the next port); it lists {count}")
        if args.brokers >= 3 and settings.topic_replication < 3:
            raise SekatError(f"--brokers {args.brokers}: set SEKAT_TOPIC_REPLICATION=3 so that topics are replicated "
                             f"on the cluster (min.insync.replicas=2)")
    if settings.topic_replication > count and all(host in LOCAL_HOSTS for host in addresses):
        raise SekatError(f"SEKAT_TOPIC_REPLICATION={settings.topic_replication} needs as many local brokers; "
                         f"SEKAT_KAFKA_BOOTSTRAP lists {count}")
    if args.redis_cluster and not is_cluster(settings.redis_url):
        raise SekatError("--redis-cluster: SEKAT_REDIS_URL must be redis+cluster://host:port,host:port,host:port "
                         "(3 or more local masters)")


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.localstack.processes import StackError, port_open

    _check_cluster_flags(settings, args)
    kafka, redis = _stack(settings)
    for name, server in (("Kafka", kafka), ("Redis", redis)):
        ports = getattr(server, "ports", None) or [getattr(server, "port", 0)]
        where = ", ".join(f"127.0.0.1:{p}" for p in ports)
        if server is None:
            print(f"{name}: using the configured external server")
        elif server.running():  # type: ignore[attr-defined]
            print(f"{name}: already running on {where}")
        elif len(ports) == 1 and port_open(ports[0]):
            print(f"{name}: something already answers on {where}; using it")
        else:
            kind = f" cluster of {len(ports)}" if len(ports) > 1 else ""
            print(f"{name}{kind}: starting on {where} (data in {server.data_dir})", flush=True)  # type: ignore[attr-defined]
            try:
                server.start()  # type: ignore[attr-defined]
            except StackError as exc:  # a taken port, a missing binary: a message, not a traceback
                raise SekatError(f"{name}: {exc}") from None
    if not args.no_topics:
        cmd_topics(settings, args)
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    kafka, redis = _stack(settings)
    for name, server in (("Kafka", kafka), ("Redis", redis)):
        if server is not None:
            stopped = server.stop()  # type: ignore[attr-defined]
            print(f"{name}: {'stopped' if stopped else 'was not running'}")
    return 0


def _identifier(args: argparse.Namespace) -> tuple[str, str, str | None]:
    if args.phone:
        return "phone", args.phone, None
    if not args.bank:
        raise SekatError("--account needs --bank (the BIC of the account's bank)")
    return "account", args.account, args.bank


def _link(text: str) -> dict[str, str]:
    """``--link phone:NUMBER`` or ``--link account:BIC:NUMBER`` as a link object."""
    kind, _, rest = text.partition(":")
    if kind == "account":
        bank, _, number = rest.partition(":")
        return {"kind": kind, "bank": bank, "value": number}
    return {"kind": kind, "value": rest}


def _field_error(exc: Exception) -> SekatError:
    """InvalidReport names the report field; on the command line that is an option."""
    from sekat.errors import InvalidReport

    if isinstance(exc, InvalidReport):
        option = {"value": "--phone/--account", "ttl_days": "--ttl-days", "case_ref": "--case-ref"}.get(
            exc.field, "--link" if exc.field.startswith("links") else f"--{exc.field.replace('_', '-')}")
        message = str(exc).split(": ", 1)[-1]
        if exc.reason == "protected":
            message = message.replace("can never be listed", "can never be blocked")
        return SekatError(f"{option}: {message}")
    return SekatError(str(exc))


async def _blocklist(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.blocklist.bulk import publish_one
    from sekat.blocklist.filing import file_report, identifier
    from sekat.blocklist.store import BlocklistStore
    from sekat.errors import InvalidReport

    kind, value, bank = _identifier(args)
    if args.cmd == "show":
        try:
            bank_code, number = identifier(kind, value, bank, settings.phone_region)
        except InvalidReport as exc:
            if exc.reason != "protected":
                raise _field_error(exc) from None
            print("not listed (protected: can never be listed)")
            return 1
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        try:
            shown = await store.get(f"phone:{number}" if kind == "phone" else f"account:{bank_code}:{number}")
        finally:
            await store.close()
        if shown is None:
            print("not listed")
            return 1
        print(orjson.dumps(shown.to_json(), option=orjson.OPT_INDENT_2).decode())
        return 0
    status = "revoked" if args.cmd == "revoke" else args.status
    try:
        report = file_report(kind, value, status, args.source, datetime.now(timezone.utc), bank=bank,
                             case_ref=args.case_ref, reason=args.reason, ttl_days=getattr(args, "ttl_days", 0),
                             filed_by="cli", region=settings.phone_region, protected=settings.protected_keys(),
                             links=[_link(text) for text in getattr(args, "link", None) or ()],
                             expiry=settings.expiry_policy())
    except InvalidReport as exc:
        raise _field_error(exc) from None
    meta = publish_one(settings, report)
    body = report.to_json()
    body.update(topic=meta.topic, partition=meta.partition, offset=meta.offset)
    print(orjson.dumps(body, option=orjson.OPT_INDENT_2).decode())
    return 0


def cmd_blocklist(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_blocklist(settings, args))


def cmd_top(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.metrics.top import run

    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::") else settings.web_host
    urls = args.url or [f"http://{host}:{settings.web_port}/metrics"]
    return run(urls, args.interval, args.once, lambda text: (sys.stdout.write(text), sys.stdout.flush()))


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
    import time

    from sekat.blocklist.bulk import import_rows, read_rows

    path = Path(args.file)
    if not path.is_file():
        raise SekatError(f"no such file: {path}")
    started = time.perf_counter()
    result = import_rows(settings, read_rows(path), datetime.now(timezone.utc), args.source or "",
                         settings.protected_keys(),
                         progress=lambda n: print(f"import: {n} sent", file=sys.stderr, flush=True))
    elapsed = time.perf_counter() - started
    for line, message in result.errors[:args.max_errors]:
        print(f"{path.name}:{line}: {message}", file=sys.stderr)
    if len(result.errors) > args.max_errors:
        print(f"... and {len(result.errors) - args.max_errors} more bad rows", file=sys.stderr)
    print(f"import: {result.sent} reports acknowledged by Kafka, {len(result.errors)} bad rows skipped, "
          f"{result.read} rows in {elapsed:.1f}s ({result.sent / elapsed if elapsed else 0:,.0f} reports/s)")
    return 0 if not result.errors else 3


def cmd_export(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.blocklist.bulk import write_export
    from sekat.blocklist.store import BlocklistStore

    async def go() -> int:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        out = sys.stdout if args.output == "-" else open(args.output, "w", encoding="utf-8", newline="")
        count, first = 0, True
        try:
            async for batch in store.scan_entries():
                count += write_export(batch, out, args.format, header=first)
                first = False
        finally:
            await store.close()
            if out is not sys.stdout:
                out.close()
        print(f"export: {count} entries", file=sys.stderr)
        return 0
    return asyncio.run(go())


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.api.app import serve

    logging.getLogger("sekat").info("starting agency API on %s:%d", settings.api_host, settings.api_port)
    serve(settings)
    return 0


def cmd_apikey(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.api.keys import ApiKeyStore, parse_scopes
    from sekat.blocklist.store import BlocklistStore

    async def go() -> int:
        store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
        keys = ApiKeyStore(store.client, settings.redis_prefix)
        try:
            if args.cmd == "create":
                key, token = await keys.create(args.agency, parse_scopes(args.scopes))
                print(f"key id {key.key_id} for {key.agency}, scopes {','.join(key.scopes)}", file=sys.stderr)
                print("this key is shown once; only its hash is stored:", file=sys.stderr)
                print(token)
            elif args.cmd == "list":
                for key in await keys.all():
                    print(orjson.dumps(key.public()).decode())
            elif not await keys.disable(args.key_id):
                print(f"no key with id {args.key_id}", file=sys.stderr)
                return 1
            else:
                logging.getLogger("sekat.apikey").warning("API key %s disabled: refused from its next request",
                                                          args.key_id)
            return 0
        finally:
            await store.close()
    return asyncio.run(go())


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sekat", description="Sekat: stops scams while they happen.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run the screening worker (Faust) in the foreground").set_defaults(
        func=cmd_worker, needs=KAFKA_AND_REDIS)
    sub.add_parser("topics", help="create Sekat's Kafka topics if missing").set_defaults(func=cmd_topics,
                                                                                        needs=("kafka",))
    acls = sub.add_parser("acls", help="print the kafka-acls.sh commands for least-privilege access to "
                          "Sekat's topics (per-institution routing: each bank reads only its own commands)")
    acls.add_argument("--sekat-principal", default="User:sekat", help="the worker's principal (default User:sekat)")
    acls.add_argument("--api-principal", default="User:sekat-api",
                      help="the agency API's and CLI's principal: writes reports only (default User:sekat-api)")
    acls.add_argument("--institution", action="append", metavar="CODE=PRINCIPAL",
                      help="a routed bank (BIC8) or operator and its principal, e.g. MBBEMYKL=User:bank-mbbe; repeat")
    acls.add_argument("--command-config", default="admin.properties",
                      help="the admin client properties file named in the commands")
    acls.set_defaults(func=cmd_acls)
    up = sub.add_parser("up", help="start local Kafka and Redis on 127.0.0.1 (if not running) and create topics; "
                        "clusters with --brokers 3 --redis-cluster")
    up.add_argument("--no-topics", action="store_true", help="do not create topics")
    up.add_argument("--brokers", type=int, help="start a KRaft cluster of N brokers at the N addresses of "
                    "SEKAT_KAFKA_BOOTSTRAP (3: replication factor 3, min.insync.replicas=2; `make up-cluster`)")
    up.add_argument("--redis-cluster", action="store_true", help="start a Redis Cluster (all masters) at the "
                    "addresses of SEKAT_REDIS_URL=redis+cluster://host:port,host:port,host:port")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the local Kafka and Redis (or clusters) started by `sekat up`, "
                   "found from the same settings").set_defaults(func=cmd_down)
    top = sub.add_parser("top", help="live view of workers' events/s, p99 latency, commands, dead letters and lag")
    top.add_argument("--url", action="append", help="a worker's /metrics URL; repeat for several "
                     "(default: http://SEKAT_WEB_HOST:SEKAT_WEB_PORT/metrics)")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes (default 2)")
    top.add_argument("--once", action="store_true", help="print one frame (two scrapes --interval apart) and exit")
    top.set_defaults(func=cmd_top)

    sub.add_parser("api", help="run the agency HTTP API (uvicorn) in the foreground").set_defaults(
        func=cmd_api, needs=KAFKA_AND_REDIS)

    bl = sub.add_parser("blocklist", help="file, revoke, show, import, export or rebuild blocklist entries")
    bl_sub = bl.add_subparsers(dest="cmd", required=True)
    for name, help_text in (("add", "file a report on a phone number or account (to sekat.reports)"),
                            ("revoke", "revoke an entry (appeal upheld; to sekat.reports)"),
                            ("show", "show one entry of the index, with its history")):
        p = bl_sub.add_parser(name, help=help_text)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--phone", help="phone number in any common format")
        who.add_argument("--account", help="account number (spaces and dashes allowed); needs --bank")
        p.add_argument("--bank", help="BIC of the account's bank, e.g. CIBBMYKL")
        if name != "show":
            p.add_argument("--source", required=True, help="reporting agency, e.g. PDRM, NSRC, MBBEMYKL")
            p.add_argument("--reason", required=name == "revoke", default="", help="why")
            p.add_argument("--case-ref", default="", help="the agency's case reference")
        if name == "add":
            p.add_argument("--status", choices=("reported", "confirmed"), default="reported")
            p.add_argument("--ttl-days", type=int, default=None,
                           help="expire after this many days (0: never; default: SEKAT_EXPIRY_DAYS)")
            p.add_argument("--link", action="append", metavar="phone:NUMBER|account:BIC:NUMBER",
                           help="another identifier of the same scam; repeat for several")
        p.set_defaults(func=cmd_blocklist, needs=("redis",) if name == "show" else ("kafka",))
    imp = bl_sub.add_parser("import", help="file reports in bulk from a CSV or JSONL file")
    imp.add_argument("file", help="a .csv (with a header row) or .jsonl file")
    imp.add_argument("--source", help="agency for rows without a source column")
    imp.add_argument("--max-errors", type=int, default=50, help="bad rows to print (all are counted)")
    imp.set_defaults(func=cmd_import, needs=("kafka",))
    exp = bl_sub.add_parser("export", help="write every index entry as JSONL or CSV")
    exp.add_argument("--format", choices=("jsonl", "csv"), default="jsonl")
    exp.add_argument("--output", "-o", default="-", help="file to write ('-': standard output)")
    exp.set_defaults(func=cmd_export, needs=("redis",))
    bl_sub.add_parser("rebuild", help="wipe the Redis index and replay sekat.reports into it").set_defaults(
        func=cmd_rebuild, needs=KAFKA_AND_REDIS)

    ak = sub.add_parser("apikey", help="create, list or disable agency API keys")
    ak.set_defaults(needs=("redis",))
    ak_sub = ak.add_subparsers(dest="cmd", required=True)
    create = ak_sub.add_parser("create", help="create a key (printed once; only its hash is stored)")
    create.add_argument("--agency", required=True, help="the agency the key files for, e.g. PDRM")
    create.add_argument("--scopes", required=True, help="comma-separated: report,confirm,revoke,read,rearm")
    create.set_defaults(func=cmd_apikey)
    ak_sub.add_parser("list", help="list keys (never the secrets)").set_defaults(func=cmd_apikey)
    disable = ak_sub.add_parser("disable", help="disable a key by its id")
    disable.add_argument("key_id")
    disable.set_defaults(func=cmd_apikey)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_environ()
    except ConfigError as exc:
        print(f"sekat: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    needs = getattr(args, "needs", ())
    if needs:
        from sekat.preflight import check

        try:  # refused credentials stop here, naming the setting, instead of as retries or a traceback
            check(settings, kafka="kafka" in needs, redis="redis" in needs)
        except ConfigError as exc:
            print(f"sekat: invalid configuration: {exc}", file=sys.stderr)
            return 2
    try:
        return int(args.func(settings, args))
    except SekatError as exc:
        print(f"sekat: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
