"""Institutions configured through the agency API, on the real broker, a real ``sekat api`` and ``sekat relay``.

Given an authority's key with the ``institutions`` scope, when it configures two institutions with their
signing secrets (one of them then removed) and one with an http URL to another host, then the API never
returns or logs a secret and refuses the bad URL naming the field, a key without the scope gets 403, and a
relay started with no institutions file delivers commands, signed with the configured secret, to the
institution still configured, and nothing to the removed one. While the relay runs, an institution added, a
secret rotated and an institution removed through the API are each served so from the next command.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from tests.support import ApiProcess, Producer, RelayProcess, Stack, isolated_env, sekat, unique, wait_until
from tests.webhooks import Institution, command, new_secret

pytestmark = pytest.mark.integration


def call(api: ApiProcess, method: str, path: str, key: str, body: dict[str, Any] | None = None) -> tuple[int, Any]:
    request = urllib.request.Request(api.url + path, method=method, headers={
        "X-API-Key": key, "content-type": "application/json"},
        data=json.dumps(body).encode() if body is not None else None)
    try:
        with urllib.request.urlopen(request, timeout=15) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_institutions_put_through_the_api_get_their_commands_from_a_relay(stack: Stack, logs_dir: Path) -> None:
    name = unique("inst")
    env = isolated_env(stack, name, SEKAT_RELAY_LOOPBACK_HTTP="1", SEKAT_RELAY_RETRY_BASE_MS="100",
                       SEKAT_RELAY_RETRY_MAX_MS="500", SEKAT_TOPIC_INSTITUTIONS=f"{name}.institutions")
    keys = {}
    for who, scopes in (("authority", "institutions"), ("reader", "read")):
        made = sekat(env, "apikey", "create", "--agency", "NSRC", "--scopes", scopes)
        assert made.returncode == 0, made.stderr
        keys[who] = made.stdout.strip()
    kept, removed = Institution("KEPTMYKL").start(), Institution("GONEMYKL").start()
    late = Institution("LATEMYKL").start()
    api = ApiProcess(env, logs_dir / f"{name}-api.log")
    relay = RelayProcess(env, logs_dir / f"{name}-relay.log")
    from sekat.streams.topics import create_topics

    create_topics(relay.settings)
    api.start()
    try:
        for institution in (kept, removed):
            status, body = call(api, "PUT", f"/v1/institutions/{institution.id.lower()}", keys["authority"],
                                {"url": institution.url, "secrets": institution.secrets})
            assert status == 202, body
            assert (body["id"], body["url"], body["secrets"]) == (institution.id, institution.url, 1)
            assert "whsec_" not in json.dumps(body)
        status, body = call(api, "DELETE", f"/v1/institutions/{removed.id}", keys["authority"])
        assert status == 202 and body["removed"] is True, body
        status, body = call(api, "PUT", "/v1/institutions/BADHMYKL", keys["authority"],
                            {"url": "http://hooks.example/sekat", "secrets": kept.secrets})
        assert status == 422 and body["detail"]["field"] == "url", body
        status, body = call(api, "PUT", "/v1/institutions/BADSMYKL", keys["authority"],
                            {"url": kept.url, "secrets": ["not-a-secret"]})
        assert status == 422 and body["detail"]["field"] == "secrets" and "not-a-secret" not in json.dumps(body)
        status, body = call(api, "PUT", f"/v1/institutions/{kept.id}", keys["reader"],
                            {"url": kept.url, "secrets": kept.secrets})
        assert status == 403, body

        relay.start()  # no SEKAT_INSTITUTIONS_FILE: the API's institutions only
        producer = Producer(relay.settings)
        for seq, institution in enumerate((kept, removed, kept)):
            key, value = command(institution.id, seq, name)
            producer.send(relay.settings.topic_freeze, value, key=key)
        producer.close()
        wait_until("the configured institution accepted its two commands", lambda: len(kept.accepted_ids()),
                   lambda n: n == 2, timeout=60)
        assert all(d.verified for d in kept.deliveries())  # signed with the secret configured through the API
        assert removed.deliveries() == []
        logs = api.log_path.read_text() + relay.log_path.read_text()
        assert "KEPTMYKL configured for the relay" in logs
        assert not any(secret[6:] in logs for i in (kept, removed) for secret in i.secrets)

        # While the relay runs: an institution added, a secret rotated, an institution removed, each served so
        # from the next command, without a restart.
        def configured(what: str) -> None:
            wait_until(what, lambda: relay.log_path.read_text(), lambda log: what in log, timeout=30)

        status, body = call(api, "PUT", f"/v1/institutions/{late.id}", keys["authority"],
                            {"url": late.url, "secrets": late.secrets})
        assert status == 202, body
        configured(f"institution {late.id} configured through the API")
        kept.secrets = [new_secret(), *kept.secrets]  # the endpoint checks the newest secret
        status, body = call(api, "PUT", f"/v1/institutions/{kept.id}", keys["authority"],
                            {"url": kept.url, "secrets": kept.secrets})
        assert status == 202 and body["secrets"] == 2, body
        configured(f"institution {kept.id} configured through the API")
        producer = Producer(relay.settings)
        for seq, institution in ((3, late), (4, kept)):
            key, value = command(institution.id, seq, name)
            producer.send(relay.settings.topic_freeze, value, key=key)
        wait_until("the added institution and the rotated one accepted", lambda: (
            len(late.accepted_ids()), len(kept.accepted_ids())), lambda n: n == (1, 3), timeout=60)
        assert all(d.verified for d in late.deliveries() + kept.deliveries()[2:])

        status, body = call(api, "DELETE", f"/v1/institutions/{late.id}", keys["authority"])
        assert status == 202 and body["removed"] is True, body
        configured(f"institution {late.id} removed through the API")
        for seq, institution in ((5, late), (6, kept)):
            key, value = command(institution.id, seq, name)
            producer.send(relay.settings.topic_freeze, value, key=key)
        producer.close()
        wait_until("the kept institution accepted", lambda: len(kept.accepted_ids()), lambda n: n == 4, timeout=60)
        assert len(late.deliveries()) == 1
        logs = relay.log_path.read_text()
        assert not any(secret[6:] in logs for i in (kept, late) for secret in i.secrets)
    finally:
        relay.stop()
        api.stop()
        kept.stop()
        removed.stop()
        late.stop()
