"""``sekat up``/``down`` (the local Kafka and Redis the settings point at), ``sekat topics``, ``sekat acls`` (Kafka)
and ``sekat redis-acls``."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

from sekat.cli.command import add_command
from sekat.errors import SekatError
from sekat.settings import Settings

if TYPE_CHECKING:
    from sekat.localstack.processes import LocalServer

LOCAL_HOSTS = ("127.0.0.1", "localhost", "::1")
TOPIC_SETTINGS = ("topic_transfers", "topic_calls", "topic_sms", "topic_reports", "topic_freeze", "topic_block",
                  "topic_decisions", "topic_deadletter", "topic_appeals", "command_topics")
CREATES_TOPICS = (*TOPIC_SETTINGS, "topic_undelivered", "topic_feedback", "topic_notices", "topic_institutions",
                  "topic_audit", "topic_partitions", "topic_replication", "retention_decisions_days",
                  "retention_commands_days", "retention_deadletter_days", "retention_audit_days", "kafka_client_config")


def cmd_acls(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.streams.acls import acl_plan, kafka_acls_commands

    institutions: dict[str, str] = {}
    for item in args.institution or ():
        code, sep, principal = item.partition("=")
        if not sep or not code.strip() or not principal.strip():
            raise SekatError(f"--institution takes CODE=PRINCIPAL, e.g. MBBEMYKL=User:bank-mbbe; got {item!r}")
        institutions[code.strip().upper()] = principal.strip()
    plan = acl_plan(settings, args.sekat_principal, args.api_principal, institutions, args.relay_principal)
    print("\n".join(kafka_acls_commands(plan, settings.kafka_bootstrap, args.command_config)))
    return 0


def cmd_redis_acls(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.redis_acl import acl_lines, redis_acl_plan

    try:
        plan = redis_acl_plan({"worker": args.worker_user, "api": args.api_user, "admin": args.admin_user})
    except ValueError as exc:
        raise SekatError(str(exc)) from None
    print("\n".join(acl_lines(plan, settings.redis_prefix)))
    return 0


def cmd_topics(settings: Settings, args: argparse.Namespace) -> int:
    from sekat.streams.topics import apply_retention, create_topics

    created = create_topics(settings)
    print(f"topics: created {', '.join(created) if created else 'none (all exist)'}")
    kept = apply_retention(settings)
    print(f"topics: retention set on {len(kept)} topics (SEKAT_RETENTION_*_DAYS)")
    return 0


def local_servers(settings: Settings) -> tuple[LocalServer | None, LocalServer | None]:
    """The local servers the settings point at: one broker or a KRaft cluster (several bootstrap
    addresses), one Redis or a Redis Cluster (``redis+cluster://``); None for a remote server."""
    from sekat.localstack.kafka_servers import KafkaBroker, KafkaCluster
    from sekat.localstack.redis_servers import RedisClusterServers, RedisServer
    from sekat.redis_url import cluster_seeds, is_cluster

    base = Path(settings.stack_dir).resolve()
    addresses = [a.strip().rpartition(":") for a in settings.kafka_bootstrap.split(",")]
    kafka: LocalServer | None = None
    if all(host in LOCAL_HOSTS for host, _, _ in addresses):
        ports = [int(port) for _, _, port in addresses]
        kafka = KafkaBroker(base / "kafka", ports[0], ports[0] + 1) if len(ports) == 1 else \
            KafkaCluster(base / "kafka-cluster", ports)
    url = urlparse(settings.redis_url)
    redis: LocalServer | None = None
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
    kafka, redis = local_servers(settings)
    for name, server in (("Kafka", kafka), ("Redis", redis)):
        ports = getattr(server, "ports", None) or [getattr(server, "port", 0)]
        where = ", ".join(f"127.0.0.1:{p}" for p in ports)
        if server is None:
            print(f"{name}: using the configured external server")
        elif server.running():
            print(f"{name}: already running on {where}")
        elif len(ports) == 1 and port_open(ports[0]):
            print(f"{name}: something already answers on {where}; using it")
        else:
            kind = f" cluster of {len(ports)}" if len(ports) > 1 else ""
            print(f"{name}{kind}: starting on {where} (data in {server.data_dir})", flush=True)
            try:
                server.start()
            except StackError as exc:  # a taken port, a missing binary: a message, not a traceback
                raise SekatError(f"{name}: {exc}") from None
    if not args.no_topics:
        cmd_topics(settings, args)
    return 0


def cmd_down(settings: Settings, args: argparse.Namespace) -> int:
    kafka, redis = local_servers(settings)
    for name, server in (("Kafka", kafka), ("Redis", redis)):
        if server is not None:
            stopped = server.stop()
            print(f"{name}: {'stopped' if stopped else 'was not running'}")
    return 0


def add_topics(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "topics", cmd_topics, "create Sekat's Kafka topics if missing",
                "Create whichever of Sekat's Kafka topics are missing (inputs, reports, commands, decisions, "
                "dead letters, audit, and each routed institution's command topic), then set the configured "
                "retention (SEKAT_RETENTION_*_DAYS) on the decisions, command, dead-letter and audit topics.",
                reads=CREATES_TOPICS, needs=("kafka",))


def add_acls(sub: argparse._SubParsersAction) -> None:
    acls = add_command(sub, "acls", cmd_acls, "print the kafka-acls.sh commands for least-privilege access to "
                       "Sekat's topics (per-institution routing: each bank reads only its own commands)",
                       "Print the kafka-acls.sh commands that give the worker, the agency API and each routed bank "
                       "or operator least-privilege access to Sekat's topics. Nothing is sent to Kafka.",
                       reads=("kafka_bootstrap", "app_id", *TOPIC_SETTINGS, "topic_undelivered", "topic_feedback",
                              "topic_notices", "topic_institutions", "topic_audit"))
    acls.add_argument("--sekat-principal", default="User:sekat", help="the worker's principal (default User:sekat)")
    acls.add_argument("--api-principal", default="User:sekat-api",
                      help="the agency API's and CLI's principal: writes reports only (default User:sekat-api)")
    acls.add_argument("--relay-principal", help="the webhook relay's principal (sekat relay), e.g. User:sekat-relay: "
                      "reads the command topics, writes the undelivered topic (default: none, no relay)")
    acls.add_argument("--institution", action="append", metavar="CODE=PRINCIPAL",
                      help="a routed bank (BIC8) or operator and its principal, e.g. MBBEMYKL=User:bank-mbbe; repeat")
    acls.add_argument("--command-config", default="admin.properties",
                      help="the admin client properties file named in the commands")


def add_redis_acls(sub: argparse._SubParsersAction) -> None:
    acls = add_command(sub, "redis-acls", cmd_redis_acls, "print the Redis ACL users for least-privilege access: "
                       "the worker, the agency API and the operators' CLI",
                       "Print one `user` line per Redis ACL user (worker, agency API, operators' CLI), each limited "
                       "to its commands and its keys under SEKAT_REDIS_PREFIX, for users.acl or redis.conf on Redis "
                       "7.0 or later (docs/security.md). Replace PASSWORD in each line; nothing is sent to Redis.",
                       reads=("redis_prefix",))
    acls.add_argument("--worker-user", default="sekat", help="the worker's user (default sekat)")
    acls.add_argument("--api-user", default="sekat-api", help="the agency API's user, in SEKAT_API_REDIS_URL "
                      "(default sekat-api)")
    acls.add_argument("--admin-user", default="sekat-admin", help="the operators' user for the CLI: API keys, "
                      "rebuilds (default sekat-admin)")


def add_up(sub: argparse._SubParsersAction) -> None:
    up = add_command(sub, "up", cmd_up, "start local Kafka and Redis on 127.0.0.1 (if not running) and create "
                     "topics; clusters with --brokers 3 --redis-cluster",
                     "Start the local Kafka and Redis the settings point at on 127.0.0.1, unless they run already, "
                     "and create the topics. Remote servers are used as they are, never started.",
                     reads=("stack_dir", "kafka_bootstrap", "redis_url", *CREATES_TOPICS))
    up.add_argument("--no-topics", action="store_true", help="do not create topics")
    up.add_argument("--brokers", type=int, help="start a KRaft cluster of N brokers at the N addresses of "
                    "SEKAT_KAFKA_BOOTSTRAP (3: replication factor 3, min.insync.replicas=2; `make up-cluster`)")
    up.add_argument("--redis-cluster", action="store_true", help="start a Redis Cluster (all masters) at the "
                    "addresses of SEKAT_REDIS_URL=redis+cluster://host:port,host:port,host:port")


def add_down(sub: argparse._SubParsersAction) -> None:
    add_command(sub, "down", cmd_down, "stop the local Kafka and Redis (or clusters) started by `sekat up`, "
                "found from the same settings",
                "Stop the local Kafka and Redis (or clusters) that `sekat up` started, found by their pid files "
                "under SEKAT_STACK_DIR from the same settings.",
                reads=("stack_dir", "kafka_bootstrap", "redis_url"))
