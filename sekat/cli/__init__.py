"""The ``sekat`` command: the worker, the agency API, the local stack, topics, the blocklist, API keys,
and records in and out of Sekat's topics.

``main`` builds ``Settings`` from the environment first, so a bad ``SEKAT_*`` variable stops every
subcommand with a message naming the variable; a subcommand that needs Kafka or Redis then checks
the configured credentials (``sekat.preflight``) before it runs. One module per group of subcommands:

    processes  worker, relay, api, top        stack      topics, acls, redis-acls, up, down
    blocklist  blocklist ...            apikey     apikey ...
    appeals    appeals restore
    privacy    privacy erase, audit-export
    send       send                     tail       tail
    command    how a subcommand declares what it does and the settings it reads
"""

from __future__ import annotations

import argparse
import logging
import sys

from sekat import __version__
from sekat.cli.apikey import add_apikey
from sekat.cli.appeals import add_appeals
from sekat.cli.blocklist import add_blocklist
from sekat.cli.privacy import add_privacy
from sekat.cli.processes import add_api, add_relay, add_top, add_worker
from sekat.cli.send import add_send
from sekat.cli.stack import add_acls, add_down, add_redis_acls, add_topics, add_up
from sekat.cli.tail import add_tail
from sekat.errors import ConfigError, SekatError
from sekat.settings import Settings


def _configure_logging(settings: Settings) -> None:
    from sekat.redaction import install, secrets_of

    logging.basicConfig(level=settings.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # Every record, ours or a library's, at any level: secrets scrubbed, bare phone/account numbers masked.
    install(secrets_of(settings), logging.getLogger().level)
    # kafka-python narrates every connection at INFO; its warnings are what matter here.
    logging.getLogger("kafka").setLevel(max(logging.WARNING, logging.getLogger().level))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="sekat", description="Sekat: stops scams while they happen.")
    parser.add_argument("--version", action="version", version=f"sekat {__version__}")
    sub = parser.add_subparsers(dest="command", required=True)
    for add in (add_worker, add_relay, add_topics, add_acls, add_redis_acls, add_up, add_down, add_top, add_api, add_blocklist, add_apikey,
                add_appeals, add_send, add_tail, add_privacy):
        add(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        settings = Settings.from_environ()
    except ConfigError as exc:
        print(f"sekat: invalid configuration: {exc}", file=sys.stderr)
        return 2
    _configure_logging(settings)
    if args.needs:
        from sekat.preflight import check

        try:  # refused credentials stop here, naming the setting, instead of as retries or a traceback
            check(settings, kafka="kafka" in args.needs, redis="redis" in args.needs,
                  api_redis="api_redis" in args.needs)
        except ConfigError as exc:
            print(f"sekat: invalid configuration: {exc}", file=sys.stderr)
            return 2
    try:
        return int(args.func(settings, args))
    except SekatError as exc:
        print(f"sekat: {exc}", file=sys.stderr)
        return 1
