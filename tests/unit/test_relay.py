"""The relay's pure parts: the institutions file, Standard Webhooks signatures, backoff and the breaker."""

from __future__ import annotations

import asyncio
import base64
import json
from datetime import datetime, timezone

import pytest
from standardwebhooks import Webhook
from standardwebhooks.webhooks import WebhookVerificationError

from sekat.errors import ConfigError
from sekat.relay.breaker import Breaker, backoff
from sekat.institutions import parse_institutions
from sekat.relay.signing import webhook_headers
from sekat.settings import Settings

SECRET = "whsec_" + base64.b64encode(b"k" * 32).decode()
NEW_SECRET = "whsec_" + base64.b64encode(b"n" * 32).decode()
BODY = b'{"command_id": "2e7e8232-b7c0-5520-90e1-38015c5ab0eb", "action": "FREEZE_ACCOUNT"}'


def entry(**fields: object) -> dict[str, object]:
    return {"id": "MBBEMYKL", "url": "https://hooks.example/sekat", "secrets": [SECRET]} | fields


def test_an_institution_verifies_the_signature_with_the_standard_webhooks_library() -> None:
    [inst] = parse_institutions({"institutions": [entry()]}, loopback_http=False).values()
    now = int(datetime.now(timezone.utc).timestamp())
    headers = webhook_headers("2e7e8232-b7c0-5520-90e1-38015c5ab0eb", now, BODY, inst.keys)
    assert Webhook(SECRET).verify(BODY, headers) == json.loads(BODY)
    assert headers["webhook-id"] == "2e7e8232-b7c0-5520-90e1-38015c5ab0eb"
    with pytest.raises(WebhookVerificationError):
        Webhook(SECRET).verify(BODY.replace(b"FREEZE", b"UNFREEZE"), headers)


def test_while_a_secret_is_rotated_both_the_old_and_the_new_secret_verify() -> None:
    [inst] = parse_institutions({"institutions": [entry(secrets=[NEW_SECRET, SECRET])]}, False).values()
    headers = webhook_headers("c-1", int(datetime.now(timezone.utc).timestamp()), BODY, inst.keys)
    assert len(headers["webhook-signature"].split(" ")) == 2
    Webhook(SECRET).verify(BODY, headers)
    Webhook(NEW_SECRET).verify(BODY, headers)


@pytest.mark.parametrize("bad, message", [
    (entry(url="http://hooks.example/sekat"), "entry 2 (MBBEMYKL): url must be https"),
    (entry(url="http://127.0.0.1:8000/x"), "entry 2 (MBBEMYKL): http://127.0.0.1 needs SEKAT_RELAY_LOOPBACK_HTTP=1"),
    (entry(url="https://user:pw@hooks.example/"), "entry 2 (MBBEMYKL): url must not carry credentials"),
    (entry(secrets=["not-a-secret-value"]), "entry 2 (MBBEMYKL): secret 1 must start with whsec_"),
    (entry(secrets=["whsec_!!!"]), "entry 2 (MBBEMYKL): secret 1 is not whsec_ followed by base64"),
    (entry(secrets=[SECRET, SECRET, SECRET]), "entry 2 (MBBEMYKL): secrets must be one or two"),
    (entry(id="bad id!"), "entry 2: id must be a BIC8 or an operator code"),
    (entry(id="CELCOM"), "entry 2 (CELCOM): the id is listed twice"),
    (entry(scope="x"), "entry 2 (MBBEMYKL): unknown field(s) scope"),
])
def test_a_bad_entry_stops_start_up_naming_the_setting_and_the_entry_but_not_the_secret(
        bad: dict[str, object], message: str) -> None:
    first = entry(id="CELCOM", secrets=[NEW_SECRET])
    with pytest.raises(ConfigError) as raised:
        parse_institutions({"institutions": [first, bad]}, loopback_http=False)
    assert "SEKAT_INSTITUTIONS_FILE" in str(raised.value)
    assert message in str(raised.value)
    assert SECRET[6:] not in str(raised.value) and NEW_SECRET[6:] not in str(raised.value)


def test_the_file_is_read_as_yaml_or_json_at_start_up_and_loopback_http_needs_the_setting(tmp_path) -> None:
    path = tmp_path / "institutions.json"
    path.write_text(json.dumps({"institutions": [entry(url="http://127.0.0.1:9000/hook")]}))
    settings = Settings.from_environ({"SEKAT_INSTITUTIONS_FILE": str(path), "SEKAT_RELAY_LOOPBACK_HTTP": "1"})
    assert settings.institutions()["MBBEMYKL"].url == "http://127.0.0.1:9000/hook"
    with pytest.raises(ConfigError, match=r"SEKAT_INSTITUTIONS_FILE.*entry 1 \(MBBEMYKL\).*LOOPBACK_HTTP=1"):
        Settings.from_environ({"SEKAT_INSTITUTIONS_FILE": str(path)})
    yaml_file = tmp_path / "institutions.yaml"
    yaml_file.write_text(f"institutions:\n  - id: celcom\n    url: https://hooks.example/c\n    secrets: {SECRET}\n")
    assert list(Settings.from_environ({"SEKAT_INSTITUTIONS_FILE": str(yaml_file)}).institutions()) == ["CELCOM"]
    with pytest.raises(ConfigError, match="SEKAT_INSTITUTIONS_FILE"):
        Settings.from_environ({"SEKAT_INSTITUTIONS_FILE": str(tmp_path / "missing.yaml")})
    with pytest.raises(ConfigError, match="SEKAT_RELAY_LOOPBACK_HTTP"):
        Settings.from_environ({"SEKAT_RELAY_LOOPBACK_HTTP": "2"})


def test_backoff_doubles_up_to_the_cap_and_keeps_at_least_half_of_each_step() -> None:
    assert [backoff(n, 0.5, 8.0, rand=lambda: 1.0) for n in (1, 2, 3, 4, 5, 6)] == [0.5, 1.0, 2.0, 4.0, 8.0, 8.0]
    assert [backoff(n, 0.5, 8.0, rand=lambda: 0.0) for n in (1, 2, 5)] == [0.25, 0.5, 4.0]
    assert backoff(500, 0.5, 8.0) <= 8.0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_the_breaker_opens_after_consecutive_failures_then_lets_one_probe_through() -> None:
    clock = Clock()
    breaker = Breaker(failures=3, open_s=30, clock=clock)
    for ok in (False, False, True, False, False):  # a success in between resets the count
        assert breaker.may_try()
        breaker.record(ok)
    assert not breaker.is_open
    breaker.record(False)
    assert breaker.is_open and not breaker.may_try()
    clock.now += 30
    assert breaker.may_try()  # the probe
    assert not breaker.may_try()  # everyone else waits for it
    breaker.record(False)  # the probe failed: open again for another 30 s
    assert not breaker.may_try()
    clock.now += 30
    assert breaker.may_try()
    breaker.record(True)
    assert not breaker.is_open and breaker.may_try() and breaker.may_try()


async def test_waiting_for_an_open_breaker_ends_at_the_give_up_deadline() -> None:
    loop = asyncio.get_running_loop()
    breaker = Breaker(failures=1, open_s=60, clock=loop.time)
    breaker.record(False)
    assert await breaker.wait_turn(deadline=loop.time() + 0.05) is False


def test_the_verification_example_in_docs_webhooks_md_accepts_a_relay_webhook_once_and_refuses_a_forgery() -> None:
    import re
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "docs" / "webhooks.md").read_text()
    [code] = re.findall(r"```python\n(.*?)```", text, re.S)
    acted: list[object] = []
    namespace: dict[str, object] = {"act_on": acted.append}
    exec(code, namespace)  # noqa: S102 - the document's own example
    receive = namespace["receive"]
    secret = re.search(r'Webhook\("(whsec_[^"]+)"\)', code).group(1)  # type: ignore[union-attr]
    [inst] = parse_institutions({"institutions": [entry(secrets=[secret])]}, False).values()
    headers = webhook_headers("c-7", int(datetime.now(timezone.utc).timestamp()), BODY, inst.keys)
    assert receive(BODY, headers) == 204 and receive(BODY, headers) == 204  # type: ignore[operator]
    assert acted == [json.loads(BODY)]  # the repeat was not acted on twice
    assert receive(BODY.replace(b"FREEZE", b"UNFREEZE"), headers) == 401  # type: ignore[operator]
