"""Kafka ACL plan: least privilege from the settings; each institution reads only its own command topic."""

import os
import subprocess
import sys

import pytest

from sekat.errors import ConfigError
from sekat.settings import Settings
from sekat.streams.acls import Acl, acl_plan, kafka_acls_commands

ENV = {"SEKAT_COMMAND_ROUTING": "per-institution", "SEKAT_ROUTE_BANKS": "MBBEMYKL,CIBBMYKL",
       "SEKAT_ROUTE_OPERATORS": "CELCOM"}
INSTITUTIONS = {"MBBEMYKL": "User:bank-mbbe", "CIBBMYKL": "User:bank-cibb", "CELCOM": "User:telco-celcom"}


def plan() -> list[Acl]:
    return acl_plan(Settings.from_environ(ENV), "User:sekat", "User:sekat-api", INSTITUTIONS)


def test_a_bank_reads_only_its_own_command_topic_and_writes_only_transfers() -> None:
    mine = [a for a in plan() if a.principal == "User:bank-mbbe"]
    reads = {a.name for a in mine if "Read" in a.operations and a.resource == "topic"}
    writes = {a.name for a in mine if "Write" in a.operations}
    assert reads == {"sekat.commands.freeze.MBBEMYKL"} and writes == {"bank.transfers"}
    assert all(a.pattern == "literal" for a in mine if a.resource == "topic")
    telco = [a for a in plan() if a.principal == "User:telco-celcom"]
    assert {a.name for a in telco if "Read" in a.operations and a.resource == "topic"} == {
        "sekat.commands.block.CELCOM"}


def test_the_api_principal_only_writes_reports_and_nobody_else_reads_the_shared_command_topics() -> None:
    # reports, the decisions topic for the audit record a brake re-arm (or a review) writes before it takes
    # effect, appeals, institutions' feedback and the notices it leads to, and the audit topic for entry reads and
    # erasures
    assert [(a.name, a.pattern, a.operations) for a in plan() if a.principal == "User:sekat-api"] == [
        ("sekat.reports", "literal", ("Write", "Describe")), ("sekat.decisions", "literal", ("Write", "Describe")),
        ("sekat.appeals", "literal", ("Write", "Describe")), ("sekat.feedback", "literal", ("Write", "Describe")), ("sekat.notices", "literal", ("Write", "Describe")),
        ("sekat.institutions", "literal", ("Write", "Describe")),
        ("sekat.audit", "literal", ("Write", "Describe"))]
    shared = [a for a in plan() if a.name in ("sekat.commands.freeze", "sekat.commands.block")]
    assert all(a.principal == "User:sekat" and "Read" not in a.operations for a in shared)


def test_an_institution_without_its_own_topic_cannot_be_granted() -> None:
    with pytest.raises(ConfigError) as err:
        acl_plan(Settings.from_environ(ENV), "User:sekat", "User:sekat-api", {"RHBBMYKL": "User:bank-rhb"})
    assert err.value.setting == "SEKAT_ROUTE_BANKS"
    with pytest.raises(ConfigError):  # shared routing: no institution has a topic of its own
        acl_plan(Settings.from_environ({}), "User:sekat", "User:sekat-api", {"MBBEMYKL": "User:bank-mbbe"})


def test_sekat_acls_prints_one_kafka_acls_command_per_acl() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SEKAT_")} | ENV
    result = subprocess.run([sys.executable, "-m", "sekat.cli", "acls", "--institution", "MBBEMYKL=User:bank-mbbe"],
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    expected = kafka_acls_commands(acl_plan(Settings.from_environ(ENV), "User:sekat", "User:sekat-api",
                                            {"MBBEMYKL": "User:bank-mbbe"}), "127.0.0.1:9092")
    assert result.stdout.splitlines() == expected
    assert ("kafka-acls.sh --bootstrap-server 127.0.0.1:9092 --command-config admin.properties --add "
            "--allow-principal User:bank-mbbe --operation Read --operation Describe "
            "--topic 'sekat.commands.freeze.MBBEMYKL' --resource-pattern-type literal") in expected


def test_the_relay_reads_every_command_topic_writes_only_undelivered_and_owns_only_its_group() -> None:
    settings = Settings.from_environ(ENV)
    with_relay = acl_plan(settings, "User:sekat", "User:sekat-api", INSTITUTIONS, relay="User:sekat-relay")
    relay = sorted((a.resource, a.name, a.pattern, a.operations) for a in with_relay
                   if a.principal == "User:sekat-relay")
    assert relay == sorted([
        ("topic", settings.topic_freeze, "prefixed", ("Read", "Describe")),  # shared and per-institution
        ("topic", settings.topic_block, "prefixed", ("Read", "Describe")),
        ("topic", settings.topic_undelivered, "literal", ("Write", "Describe")),
        ("topic", settings.topic_institutions, "literal", ("Read", "Describe")),  # the secrets: its alone to read
        ("group", f"{settings.app_id}.relay", "literal", ("Read", "Describe")),
    ])
    assert [a for a in with_relay if a.principal != "User:sekat-relay"] == plan()  # the rest unchanged
    assert not [a for a in with_relay if a.name == settings.topic_institutions and "Read" in a.operations
                and a.principal != "User:sekat-relay"]
