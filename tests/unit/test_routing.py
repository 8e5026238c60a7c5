"""Per-institution command routing: which topic each command goes to, and the settings behind it."""

from datetime import datetime, timezone

import pytest
from sekat.streams.output import OutputBatch, OutputTopics
from sekat.streams.topics import topic_specs

from sekat.errors import ConfigError
from sekat.records import Action, Command
from sekat.settings import Settings

PER_INSTITUTION = {"SEKAT_COMMAND_ROUTING": "per-institution", "SEKAT_ROUTE_BANKS": "MBBEMYKL, cibbmyklxxx",
                   "SEKAT_ROUTE_OPERATORS": "celcom,MAXIS"}


def command(action: Action, institution: str) -> Command:
    return Command(action, institution, "target", "e-1", "payee-on-blocklist", ("r",), datetime.now(timezone.utc))


def outputs(settings: Settings) -> OutputTopics:
    # Topic names stand in for Faust topic objects: routing only picks one, it never sends.
    topics: dict = {name: getattr(settings, f"topic_{name}") for name in
                    ("freeze", "block", "decisions", "deadletter", "reports")}
    return OutputTopics(**topics, routes=settings.command_topics())


def test_shared_routing_is_the_default_and_uses_the_two_shared_topics() -> None:
    s = Settings.from_environ({})
    assert s.command_topics() == {}
    out = outputs(s)
    assert out.for_command(command(Action.FREEZE_ACCOUNT, "MBBEMYKL")) == "sekat.commands.freeze"
    assert out.for_command(command(Action.BLOCK_CALL, "CELCOM")) == "sekat.commands.block"


def test_each_listed_institution_gets_its_own_topic_and_others_stay_shared() -> None:
    s = Settings.from_environ(PER_INSTITUTION)
    assert s.command_topics() == {
        (True, "MBBEMYKL"): "sekat.commands.freeze.MBBEMYKL", (True, "CIBBMYKL"): "sekat.commands.freeze.CIBBMYKL",
        (False, "CELCOM"): "sekat.commands.block.CELCOM", (False, "MAXIS"): "sekat.commands.block.MAXIS"}
    out = outputs(s)
    assert out.for_command(command(Action.HOLD_TRANSFER, "MBBEMYKL")) == "sekat.commands.freeze.MBBEMYKL"
    assert out.for_command(command(Action.FREEZE_ACCOUNT, "CIBBMYKL")) == "sekat.commands.freeze.CIBBMYKL"
    assert out.for_command(command(Action.LABEL_CALL, "MAXIS")) == "sekat.commands.block.MAXIS"
    # Not listed: the shared topic, never a topic named after whatever the input said.
    assert out.for_command(command(Action.HOLD_TRANSFER, "RHBBMYKL")) == "sekat.commands.freeze"
    assert out.for_command(command(Action.BLOCK_CALL, "DIGI")) == "sekat.commands.block"
    # A bank code listed only as a bank does not capture a telco command of the same name.
    assert out.for_command(command(Action.BLOCK_CALL, "MBBEMYKL")) == "sekat.commands.block"


def test_a_batch_sends_each_command_to_its_institution_keyed_by_institution() -> None:
    batch = OutputBatch(outputs(Settings.from_environ(PER_INSTITUTION)))
    batch.command(command(Action.HOLD_TRANSFER, "MBBEMYKL"))
    batch.command(command(Action.BLOCK_CALL, "CELCOM"))
    assert [(topic, key) for topic, key, _ in batch.messages] == [
        ("sekat.commands.freeze.MBBEMYKL", b"MBBEMYKL"), ("sekat.commands.block.CELCOM", b"CELCOM")]


def test_sekat_topics_creates_the_per_institution_topics() -> None:
    names = {t.name for t in topic_specs(Settings.from_environ(PER_INSTITUTION | {"SEKAT_TOPIC_FREEZE": "f"}))}
    assert {"f.MBBEMYKL", "f.CIBBMYKL", "sekat.commands.block.CELCOM", "sekat.commands.block.MAXIS", "f"} <= names


@pytest.mark.parametrize("env,setting", [
    ({"SEKAT_COMMAND_ROUTING": "by-bank"}, "SEKAT_COMMAND_ROUTING"),
    ({"SEKAT_COMMAND_ROUTING": "per-institution"}, "SEKAT_ROUTE_BANKS"),
    ({"SEKAT_COMMAND_ROUTING": "per-institution", "SEKAT_ROUTE_BANKS": "MAYBANK"}, "SEKAT_ROUTE_BANKS"),
    ({"SEKAT_COMMAND_ROUTING": "per-institution", "SEKAT_ROUTE_OPERATORS": "U MOBILE"}, "SEKAT_ROUTE_OPERATORS"),
])
def test_bad_routing_settings_name_the_variable(env: dict[str, str], setting: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.from_environ(env)
    assert err.value.setting == setting
