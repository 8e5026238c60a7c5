"""The ``sekat`` command: worker, local stack, topics and blocklist administration.

Every sub-command builds ``Settings`` from the environment first, so a bad
``SEKAT_*`` variable stops it with a message naming the variable.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from urllib.parse import urlparse

import orjson

from sekat.errors import ConfigError, SekatError
from sekat.settings import Settings

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")


def _configure_logging(settings: Settings) -> None:
    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # kafka-python narrates every connection at INFO; its warnings are what matter here.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))


def cmd_worker(settings: Settings, args: argparse.Namespace) -> int:
    import faust

    from streams.app import create_app

    app = create_app(settings)
    logging.getLogger("sekat").info("starting worker with %s", settings.redacted())
    worker = faust.Worker(app, loglevel=settings.log_level.upper())
    worker.execute_from_commandline()
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from streams.topics import create_topics

    created = create_topics(settings)
    print(f"topics: created {', '.join(created) if created else 'none (all exist)'}")
    return 0


def _stack(settings: Settings) -> tuple[object | None, object | None]:
    from sekat.localstack import KafkaBroker, RedisServer

    base = Path(settings.stack_dir).resolve()
    host, _, port = settings.kafka_bootstrap.split(",")[0].strip().rpartition(":")
    kafka = KafkaBroker(base / "kafka", int(port), int(port) + 1) if host in LOCAL_HOSTS else None
    url = urlparse(settings.redis_url)
    redis = (RedisServer(base / "redis", url.port or 6379)
             if url.scheme == "redis" and (url.hostname or "127.0.0.1") in LOCAL_HOSTS and not url.password
             else None)
    return kafka, redis


def cmd_up(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.localstack import port_open

    kafka, redis = _stack(settings)
    for name, server, port in (("Kafka", kafka, getattr(kafka, "port", 0)), ("Redis", redis, getattr(redis, "port", 0))):
        if server is None:
            print(f"{name}: using the configured external server")
        elif server.running():  # type: ignore[attr-defined]
            print(f"{name}: already running on 127.0.0.1:{port}")
        elif port_open(port):
            print(f"{name}: something already answers on 127.0.0.1:{port}; using it")
        else:
            print(f"{name}: starting on 127.0.0.1:{port} (data in {server.data_dir})", flush=True)  # type: ignore[attr-defined]
            server.start()  # type: ignore[attr-defined]
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


def _identifier_key(args: argparse.Namespace, settings: Settings) -> str:
    from blocklist.identifiers import listable_phone, normalise_account, normalise_phone

    if args.phone:
        phone = listable_phone(args.phone, settings.phone_region) if args.cmd == "add" else \
            normalise_phone(args.phone, settings.phone_region)
        return phone.key
    if not args.bank:
        raise SekatError("--account needs --bank (the BIC of the account's bank)")
    return normalise_account(args.bank, args.account).key


async def _blocklist(settings: Settings, args: argparse.Namespace) -> int:
    from blocklist.store import BlocklistStore
    from sekat.records import Status, iso

    store = BlocklistStore.from_url(settings.redis_url, settings.redis_prefix)
    try:
        key = _identifier_key(args, settings)
        now = datetime.now(timezone.utc)
        if args.cmd == "add":
            expires = iso(now + timedelta(days=args.ttl_days)) if args.ttl_days else ""
            entry = await store.report(key, Status(args.status), args.source, args.reason, args.case_ref,
                                       now=now, expires_at=expires)
        elif args.cmd == "revoke":
            found = await store.revoke(key, args.source, args.reason, now=now)
            if found is None:
                print(f"{key.split(':')[0]} is not on the blocklist", file=sys.stderr)
                return 1
            entry = found
        else:
            shown = await store.get(key)
            if shown is None:
                print("not listed")
                return 1
            entry = shown
        print(orjson.dumps(entry.to_json(), option=orjson.OPT_INDENT_2).decode())
        return 0
    finally:
        await store.close()


def cmd_blocklist(settings: Settings, args: argparse.Namespace) -> int:
    return asyncio.run(_blocklist(settings, args))


def cmd_top(settings: Settings, args: argparse.Namespace) -> int:
    from metrics.top import run

    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::") else settings.web_host
    urls = args.url or [f"http://{host}:{settings.web_port}/metrics"]
    return run(urls, args.interval, args.once, lambda text: (sys.stdout.write(text), sys.stdout.flush()))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sekat", description="Sekat: stops scams while they happen.")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("worker", help="run the screening worker (Faust) in the foreground").set_defaults(func=cmd_worker)
    sub.add_parser("topics", help="create Sekat's Kafka topics if missing").set_defaults(func=cmd_topics)
    up = sub.add_parser("up", help="start local Kafka and Redis on 127.0.0.1 (if not running) and create topics")
    up.add_argument("--no-topics", action="store_true", help="do not create topics")
    up.set_defaults(func=cmd_up)
    sub.add_parser("down", help="stop the local Kafka and Redis started by `sekat up`").set_defaults(func=cmd_down)
    top = sub.add_parser("top", help="live view of workers' events/s, p99 latency, commands, dead letters and lag")
    top.add_argument("--url", action="append", help="a worker's /metrics URL; repeat for several "
                     "(default: http://SEKAT_WEB_HOST:SEKAT_WEB_PORT/metrics)")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes (default 2)")
    top.add_argument("--once", action="store_true", help="print one frame (two scrapes --interval apart) and exit")
    top.set_defaults(func=cmd_top)

    bl = sub.add_parser("blocklist", help="add, revoke or show blocklist entries")
    bl_sub = bl.add_subparsers(dest="cmd", required=True)
    for name, help_text in (("add", "list a phone number or account"), ("revoke", "revoke an entry (appeal upheld)"),
                            ("show", "show one entry")):
        p = bl_sub.add_parser(name, help=help_text)
        who = p.add_mutually_exclusive_group(required=True)
        who.add_argument("--phone", help="phone number in any common format")
        who.add_argument("--account", help="account number (spaces and dashes allowed); needs --bank")
        p.add_argument("--bank", help="BIC of the account's bank, e.g. CIBBMYKL")
        if name != "show":
            p.add_argument("--source", required=True, help="reporting agency, e.g. PDRM, NSRC, MBBEMYKL")
            p.add_argument("--reason", required=name == "revoke", default="", help="why")
        if name == "add":
            p.add_argument("--status", choices=("reported", "confirmed"), default="reported")
            p.add_argument("--case-ref", default="", help="the agency's case reference")
            p.add_argument("--ttl-days", type=int, default=0, help="expire after this many days (0: never)")
        p.set_defaults(func=cmd_blocklist)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_environ()
    except ConfigError as exc:
        print(f"sekat: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    try:
        return int(args.func(settings, args))
    except SekatError as exc:
        print(f"sekat: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
