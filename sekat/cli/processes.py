"""``sekat worker``, ``sekat relay`` and ``sekat api``, the processes that run in the foreground, and
``sekat top``, which watches workers."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from dataclasses import fields
from typing import Any

from sekat.cli.command import KAFKA_AND_REDIS, add_command
from sekat.settings import Settings

# Settings only the agency API, the local stack or filing from the CLI read: the worker reads every other one.
NOT_READ_BY_WORKER = ("api_redis_url", "api_host", "api_port", "api_max_body_bytes", "api_trusted_proxies", "api_tls_certfile",
                      "api_tls_keyfile", "status_rate_per_minute",
                      "status_global_rate_per_minute", "filing_rate_per_minute", "stack_dir", "expiry_days",
                      "renewals_max", "topic_undelivered", "institutions_file", "relay_loopback_http", "relay_web_port", "relay_timeout_ms",
                      "relay_retry_base_ms", "relay_retry_max_ms", "relay_give_up_s", "relay_breaker_failures",
                      "relay_breaker_open_s", "appeal_rate_per_minute", "appeal_acknowledge_s",
                      "appeal_decide_s", "appeal_reappeal_days", "appeal_rule", "topic_institutions",
                      "topic_audit", "retention_deadletter_days", "retention_decisions_days",
                      "retention_commands_days", "retention_audit_days", "audit_key", "operator")


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
    # (its consumer's, with the broker gone) would keep the interpreter waiting at exit for its own retries:
    # leave now, with the logs flushed.
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


CONFIGURED_READ_S = 30.0  # how long a starting relay waits to read SEKAT_TOPIC_INSTITUTIONS


def cmd_relay(settings: Settings, args: argparse.Namespace) -> int:
    import asyncio

    from sekat.relay.app import run_relay
    from sekat.relay.configured import merged, read_configured

    # The file is checked at start-up with the other settings; the API's institutions are read from Kafka.
    from_file = settings.institutions()
    try:
        from_topic, read_to = asyncio.run(asyncio.wait_for(read_configured(settings), CONFIGURED_READ_S))
    except Exception as exc:  # noqa: BLE001 - Kafka away: the file's institutions are served meanwhile
        logging.getLogger("sekat").warning("relay: the institutions configured through the API could not be read "
                                           "from %s (%s); delivering to the file's, and to the API's as the "
                                           "topic is followed", settings.topic_institutions, type(exc).__name__)
        from_topic, read_to = {}, {}
    institutions = merged(from_file, from_topic)
    if not institutions:
        print("sekat: invalid configuration: SEKAT_INSTITUTIONS_FILE: must name the institutions file (YAML or "
              "JSON) the relay delivers to, unless institutions are configured through the agency API "
              "(PUT /v1/institutions/{id})", file=sys.stderr)
        return 2
    logging.getLogger("sekat").info("starting relay with %s", settings.redacted())
    asyncio.run(run_relay(settings, institutions, from_file, read_to))
    return 0


def cmd_api(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.api.app import serve

    scheme = "https" if settings.api_tls() else "http"
    logging.getLogger("sekat").info("starting agency API on %s://%s:%d", scheme, settings.api_host,
                                    settings.api_port)
    serve(settings)
    return 0


def cmd_top(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.metrics.top import run

    host = "127.0.0.1" if settings.web_host in ("0.0.0.0", "::") else settings.web_host
    urls = args.url or [f"http://{host}:{settings.web_port}/metrics"]
    return run(urls, args.interval, args.once, lambda text: (sys.stdout.write(text), sys.stdout.flush()))


def add_worker(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "worker", cmd_worker, "run the screening worker (Faust) in the foreground",
                "Run the screening worker in the foreground: it reads transfers, calls and reports, decides on "
                "each event, and sends freeze and block commands, decisions and dead letters. Stop it with Ctrl-C.",
                reads=[f.name for f in fields(Settings) if f.name not in NOT_READ_BY_WORKER], needs=KAFKA_AND_REDIS)


def add_relay(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "relay", cmd_relay, "deliver commands to institutions' HTTPS endpoints (webhooks)",
                "Deliver freeze and block commands to the institutions of SEKAT_INSTITUTIONS_FILE and those "
                "configured through the agency API (SEKAT_TOPIC_INSTITUTIONS, read at start and followed) as signed "
                "webhooks (Standard Webhooks), retrying until SEKAT_RELAY_GIVE_UP_S, then writing them to "
                "SEKAT_TOPIC_UNDELIVERED. Run several to share the command topics' partitions.",
                reads=("app_id", "aiokafka_config", "kafka_offset_reset", "topic_freeze", "topic_block",
                       "topic_institutions", "relay_loopback_http",
                       "topic_undelivered", "command_topics", "web_host", "institutions",
                       "relay_web_port", "relay_timeout_ms", "relay_retry_base_ms", "relay_retry_max_ms",
                       "relay_give_up_s", "relay_breaker_failures", "relay_breaker_open_s"),
                needs=("kafka",))


def add_api(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "api", cmd_api, "run the agency HTTP API (uvicorn) in the foreground",
                "Run the agency HTTP API in the foreground: agencies file, revoke and look up reports with their "
                "API keys; the public status check answers listed or not listed; listed people appeal, and agencies decide "
                "their appeals.",
                reads=("api_host", "api_port", "api_max_body_bytes", "trusted_proxies", "api_tls",
                       "status_rate_per_minute",
                       "status_global_rate_per_minute", "filing_rate_per_minute", "redis_prefix",
                       "topic_reports", "topic_decisions", "topic_audit", "audit_key", "brake_window_s", "phone_region", "protected_keys",
                       "expiry_policy", "aiokafka_config", "topic_appeals", "appeal_rate_per_minute",
                       "appeal_acknowledge_s", "appeal_decide_s", "appeal_reappeal_days", "appeal_rule", "topic_feedback",
                       "topic_notices", "feedback_window_days", "feedback_false_positive_institutions",
                       "topic_institutions", "relay_loopback_http", "proxy_hasher"),
                needs=("kafka", "api_redis"))


def add_top(sub: argparse._SubParsersAction) -> None:
    top = add_command(sub, "top", cmd_top,
                      "live view of workers' events/s, p99 latency, commands, dead letters and lag",
                      "Show a live view of running workers, scraped from their /metrics: events per second, p99 "
                      "decision latency, commands, dead letters and consumer lag.",
                      reads=("web_host", "web_port"))
    top.add_argument("--url", action="append", help="a worker's /metrics URL; repeat for several, and add the "
                     "agency API's to see the time to act on commands "
                     "(default: http://SEKAT_WEB_HOST:SEKAT_WEB_PORT/metrics)")
    top.add_argument("--interval", type=float, default=2.0, help="seconds between scrapes (default 2)")
    top.add_argument("--once", action="store_true", help="print one frame (two scrapes --interval apart) and exit")
