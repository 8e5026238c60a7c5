"""``sekat send`` and ``sekat tail`` on the real broker and Redis, with a worker: the README's "Try it".

Given a phone number listed with ``sekat blocklist add`` and a mule account listed with
``sekat send reports``, when ``sekat send`` puts a call from the number and a transfer paying the
account on the input topics, then ``sekat tail`` prints the BLOCK_CALL, HOLD_TRANSFER and
FREEZE_ACCOUNT commands. A line that is not a JSON object stops ``send`` there; ``tail`` starts at the
end unless told otherwise and leaves with status 0 at Ctrl-C.
"""

from __future__ import annotations

import signal
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import orjson
import pytest

from sekat.records import iso
from tests.support import Stack, WorkerProcess, child_env, isolated_env, sekat, unique, wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def worker(stack: Stack, logs_dir: Path) -> Iterator[WorkerProcess]:
    name = unique("cli")
    worker = WorkerProcess(isolated_env(stack, name), logs_dir / f"{name}.log").start()
    try:
        yield worker
    finally:
        worker.stop()


def send(worker: WorkerProcess, kind: str, *lines: dict[str, Any] | str) -> subprocess.CompletedProcess[str]:
    """``sekat send KIND`` with ``lines`` (objects as JSON, text as it is) on its standard input."""
    text = "".join((line if isinstance(line, str) else orjson.dumps(line).decode()) + "\n" for line in lines)
    return subprocess.run([sys.executable, "-m", "sekat.cli", "send", kind], input=text, env=child_env(worker.env),
                          capture_output=True, text=True, timeout=120)


def tail(worker: WorkerProcess, *args: str) -> list[dict[str, Any]]:
    done = sekat(worker.env, "tail", *args)
    assert done.returncode == 0, done.stderr
    return [orjson.loads(line) for line in done.stdout.splitlines()]


def wait_listed(worker: WorkerProcess, *identifier: str) -> None:
    """Until ``sekat blocklist show`` finds ``identifier`` (the reports agent applied the report) and the
    worker's replica has it."""
    wait_until(f"{' '.join(identifier)} listed",
               lambda: sekat(worker.env, "blocklist", "show", *identifier, "--purpose", "case check").returncode,
               lambda status: status == 0)
    worker.wait_replica()


def now() -> str:
    return iso(datetime.now(timezone.utc))


def test_a_call_from_a_number_listed_with_blocklist_add_is_blocked(worker: WorkerProcess, tmp_path: Path) -> None:
    digits = str(int(unique("")[:8], 16))[-7:].rjust(7, "0")
    national, caller = f"012-{digits[:3]} {digits[3:]}", f"+6012{digits}"
    added = sekat(worker.env, "blocklist", "add", "--phone", national, "--status", "confirmed", "--source", "PDRM",
                  "--reason", "impersonates the police")
    assert added.returncode == 0, added.stderr
    wait_listed(worker, "--phone", caller)
    event_id = unique("c-")
    calls = tmp_path / "calls.jsonl"
    calls.write_bytes(orjson.dumps({
        "event_id": event_id, "occurred_at": now(), "call_id": unique("call-"), "operator": "CELCOM",
        "type": "voice", "caller": caller, "callee": "+60123456789", "caller_network": "domestic"}) + b"\n")

    sent = sekat(worker.env, "send", "calls", str(calls))

    assert sent.returncode == 0, sent.stderr
    assert sent.stdout.startswith(f"{worker.settings.topic_calls} partition=") and f'key="{caller}"' in sent.stdout
    [command] = tail(worker, "block", "--from-beginning", "--count", "1", "--timeout", "30")
    assert (command["action"], command["event_id"], command["operator"]) == ("BLOCK_CALL", event_id, "CELCOM")


def test_a_transfer_to_a_mule_listed_with_send_reports_is_held_and_the_mule_frozen(worker: WorkerProcess) -> None:
    listed = send(worker, "reports", {"kind": "account", "bank": "CIBBMYKL", "value": "800-123 4567",
                                      "status": "confirmed", "source": "PDRM", "case_ref": "KL/2026/123",
                                      "reason": "investment scam mule"})
    assert listed.returncode == 0, listed.stderr
    assert 'key="account:CIBBMYKL:8001234567"' in listed.stdout
    wait_listed(worker, "--account", "8001234567", "--bank", "CIBBMYKL")
    event_id = unique("t-")

    sent = send(worker, "transfers", {
        "event_id": event_id, "occurred_at": now(), "transfer_id": unique("DN"), "channel": "DUITNOW",
        "amount": "1500.00", "currency": "MYR",
        "payer": {"bank": "MBBEMYKL", "account": "5140 1234 5678", "phone": "+60123456789"},
        "payee": {"bank": "CIBBMYKL", "account": "8001234567"}})

    assert sent.returncode == 0, sent.stderr
    assert 'key="5140 1234 5678"' in sent.stdout
    commands = tail(worker, "freeze", "--from-beginning", "--count", "2", "--timeout", "30")
    assert {c["action"] for c in commands} == {"HOLD_TRANSFER", "FREEZE_ACCOUNT"}
    assert {c["event_id"] for c in commands} == {event_id}


def test_a_line_that_is_not_a_json_object_stops_send_and_nothing_after_it_is_sent(worker: WorkerProcess) -> None:
    before, after = unique("c-"), unique("c-")

    sent = send(worker, "calls", {"event_id": before, "caller": "+60376543210"}, "", "[1, 2]",
                {"event_id": after, "caller": "+60376543210"})

    assert sent.returncode == 2
    assert "line 3: not a JSON object; 1 record(s) sent before it" in sent.stderr
    assert len(sent.stdout.splitlines()) == 1
    on_topic = [c.get("event_id") for c in tail(worker, "calls", "--from-beginning", "--timeout", "3")]
    assert before in on_topic and after not in on_topic


def test_tail_starts_at_the_end_and_leaves_with_status_0_at_ctrl_c(worker: WorkerProcess) -> None:
    proc = subprocess.Popen([sys.executable, "-m", "sekat.cli", "tail", "calls"], env=child_env(worker.env),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stderr is not None and proc.stdout is not None
        while "tail: " not in (line := proc.stderr.readline()):  # ready: where it starts is fixed
            assert line, f"tail exited with {proc.wait()}"
        event_id = unique("c-")
        assert send(worker, "calls", {"event_id": event_id, "caller": "+60376543210"}).returncode == 0
        assert orjson.loads(proc.stdout.readline())["event_id"] == event_id  # nothing sent before it started
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        proc.kill()
        proc.wait()


def test_tail_names_a_topic_that_does_not_exist_and_does_not_create_it(worker: WorkerProcess) -> None:
    env = {**worker.env, "SEKAT_TOPIC_DEADLETTER": unique("missing.")}
    for _ in range(2):  # the first asking created nothing
        done = sekat(env, "tail", "deadletter", "--timeout", "1")
        assert done.returncode == 1 and f"no topic {env['SEKAT_TOPIC_DEADLETTER']} on Kafka" in done.stderr
