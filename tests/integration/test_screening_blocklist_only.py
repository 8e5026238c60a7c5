"""End to end on a real broker and Redis, under a policy of the blocklist alone: the worker's fast path.

Given a policy whose only rule is ``blocklist_match``, events with no listed identifier are counted as ALLOW
without the engine; the one naming a listed account still gets its commands and its decision record, and a
bad event still goes to the dead letters.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from sekat.rules.policy import DEFAULT_POLICY_FILE
from tests.integration.test_screening import World, random_account
from tests.support import Collector, Producer, Stack, WorkerProcess, for_event, isolated_env, unique

pytestmark = pytest.mark.integration
ALLOWED = r'sekat_events_total\{(?=[^}]*stream="transfers")(?=[^}]*outcome="ALLOW")'


@pytest.fixture(scope="module")
def world(stack: Stack, logs_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[World]:
    name = unique("blo")
    policy = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())
    policy["rules"] = {"blocklist_match": policy["rules"]["blocklist_match"]}
    path = tmp_path_factory.mktemp("policy") / "policy.yaml"
    path.write_text(yaml.safe_dump(policy))
    worker = WorkerProcess(isolated_env(stack, name, SEKAT_POLICY_FILE=str(path)), logs_dir / f"{name}.log").start()
    s = worker.settings
    collector = Collector(s, [s.topic_freeze, s.topic_block, s.topic_decisions, s.topic_deadletter])
    producer = Producer(s)
    try:
        yield World(worker, collector, producer)
    finally:
        producer.close()
        collector.close()
        worker.stop()


def test_only_the_listed_payee_is_acted_on_and_the_rest_are_counted_as_allowed(world: World) -> None:
    written, digits = random_account()
    world.list(f"account:CIBBMYKL:{digits}")
    before = world.worker.sample(ALLOWED)
    clean = [world.transfer(payee_account=random_account()[0]) for _ in range(20)]
    listed = world.transfer(payee_account=written)
    world.producer.send(world.settings.topic_transfers, {"event_id": "bad-" + unique(""), "amount": "1"})
    commands = world.commands(listed, count=2)
    assert sorted(c.json["action"] for c in commands) == ["FREEZE_ACCOUNT", "HOLD_TRANSFER"]
    [decision] = world.out.wait_for(lambda r: r.topic == world.settings.topic_decisions and for_event(listed)(r))
    assert decision.json["outcome"] == "BLOCK"
    assert world.out.wait_for(lambda r: r.topic == world.settings.topic_deadletter)
    deadline = time.monotonic() + 20
    while world.worker.sample(ALLOWED) - before < 20:
        assert time.monotonic() < deadline, "the clean transfers were not all counted as ALLOW"
        time.sleep(0.2)
    assert all(world.no_commands(event_id) for event_id in clean)
    assert not world.out.matching(lambda r: r.topic == world.settings.topic_decisions
                                  and any(for_event(e)(r) for e in clean))
