"""``sekat relay`` on the real broker, delivering to real HTTP servers on loopback.

Given commands for three institutions on the freeze topic (one endpoint answers slowly, one fails 30 % of
requests, one is down for the first 10 s), when two relays share the topic's partitions, then every command
is accepted by its institution, every request verifies with the ``standardwebhooks`` library and carries the
command's id as ``webhook-id`` (retries too), and no institution receives a command before the one before it
was accepted; no secret is in the relays' logs. A command an institution never accepts is given up after SEKAT_RELAY_GIVE_UP_S to the
undelivered topic with the last error, and the commands after it are delivered.
"""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from tests.support import Collector, Producer, RelayProcess, Stack, isolated_env, unique, wait_until
from tests.webhooks import Institution, check_deliveries, command, institutions_file

pytestmark = pytest.mark.integration
COMMANDS = 40


def relay_env(stack: Stack, name: str, file: str, **overrides: str) -> dict[str, str]:
    return isolated_env(stack, name, SEKAT_INSTITUTIONS_FILE=file, SEKAT_RELAY_LOOPBACK_HTTP="1",
                        SEKAT_RELAY_RETRY_BASE_MS="100", SEKAT_RELAY_RETRY_MAX_MS="1000",
                        SEKAT_RELAY_TIMEOUT_MS="2000", SEKAT_RELAY_BREAKER_FAILURES="5",
                        SEKAT_RELAY_BREAKER_OPEN_S="2", **overrides)


def test_slow_flaky_and_down_institutions_each_get_every_command_signed_and_in_order(
        stack: Stack, logs_dir: Path, tmp_path: Path) -> None:
    name = unique("relay")
    slow = Institution("SLOWMYKL", delay_s=0.1)
    flaky = Institution("FLAKMYKL", fail_ratio=0.3)
    down = Institution("DOWNMYKL", down_for_s=10)
    institutions = [slow, flaky, down]
    env = relay_env(stack, name, institutions_file(tmp_path / "institutions.json", institutions))
    relays = [RelayProcess(env, logs_dir / f"{name}-{n}.log") for n in (1, 2)]
    try:
        for institution in institutions:
            institution.start()
        for relay in relays:
            relay.start()
        producer = Producer(relays[0].settings)
        for seq in range(COMMANDS):
            for institution in institutions:
                key, value = command(institution.id, seq, name)
                producer.send(relays[0].settings.topic_freeze, value, key=key)
        producer.close()
        for institution in institutions:
            wait_until(f"{institution.id} accepted every command", lambda i=institution: len(i.accepted_ids()),
                       lambda n: n == COMMANDS, timeout=90)
        for institution in institutions:
            check_deliveries(institution, COMMANDS)
        assert any(d.status == 503 for d in flaky.deliveries())  # it did fail, and was retried
        delivered = sum(r.sample('sekat_relay_delivered_total{institution="DOWNMYKL"') for r in relays)
        assert delivered >= COMMANDS
        assert sum(r.sample("sekat_relay_retries_total") for r in relays) > 0
        logs = "".join(r.log_path.read_text() for r in relays)
        assert "FLAKMYKL refused command" in logs  # retries are logged, naming the institution ...
        assert not any(secret[6:] in logs for i in institutions for secret in i.secrets)  # ... never a secret
    finally:
        for relay in relays:
            relay.stop()
        for institution in institutions:
            institution.stop()


def test_a_command_never_accepted_is_given_up_with_the_last_error_and_the_next_one_goes(
        stack: Stack, logs_dir: Path, tmp_path: Path) -> None:
    name = unique("relaygiveup")
    refusing = Institution("REFUMYKL", always_fail=True).start()
    env = relay_env(stack, name, institutions_file(tmp_path / "institutions.json", [refusing]),
                    SEKAT_RELAY_GIVE_UP_S="2", SEKAT_TOPIC_UNDELIVERED=f"{name}.undelivered")
    relay = RelayProcess(env, logs_dir / f"{name}.log")
    collector = Collector(relay.settings, [relay.settings.topic_undelivered])
    try:
        relay.start()
        producer = Producer(relay.settings)
        sent = [command(refusing.id, seq, name) for seq in range(2)]
        for key, value in sent:
            producer.send(relay.settings.topic_freeze, value, key=key)
        producer.close()
        dead = collector.wait_for(lambda r: True, count=2, timeout=30)
        assert [r.key for r in dead] == [b"REFUMYKL", b"REFUMYKL"]
        bodies = [r.json for r in dead]
        assert [base64.b64decode(b["command_b64"]) for b in bodies] == [value for _, value in sent]
        assert bodies[0]["error"] == "HTTP 500" and bodies[0]["attempts"] >= 2
        assert "HTTP 500" in bodies[1]["error"]  # its own, or the breaker's last while it held attempts back
        assert all(b["source"]["topic"] == relay.settings.topic_freeze for b in bodies)
        ids = [d.webhook_id for d in refusing.deliveries()]
        order = [b["command_id"] for b in bodies]
        assert ids == sorted(ids, key=order.index)  # the second only once the first was given up
        assert relay.sample('sekat_relay_given_up_total{institution="REFUMYKL"') == 2
    finally:
        collector.close()
        relay.stop()
        refusing.stop()
