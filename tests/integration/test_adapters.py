"""End to end: a worker configured for ISO 20022 transfers and CDR CSV calls, on the real broker and Redis.

Given listed accounts and numbers, when a bank sends a multi-transaction pacs.008 and a telco a CDR line, then
each listed transaction gets its own HOLD_TRANSFER carrying the ISO end-to-end and transaction ids, the CDR's
caller is blocked, and a malformed document or a bad transaction goes to the dead letters naming the fault.
"""

from __future__ import annotations

import asyncio
import base64
import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from sekat.blocklist.store import BlocklistStore
from sekat.records import Status
from sekat.redaction import mask_identifiers
from tests.support import (Collector, Producer, Stack, WorkerProcess, file_report, for_event, isolated_env, unique,
                           wait_until)

pytestmark = pytest.mark.integration
FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
MSG_ID = "MBBEMYKL20261128000123"  # GrpHdr/MsgId of pacs008_v08_multi.xml


@pytest.fixture(scope="module")
def adapted(stack: Stack, logs_dir: Path) -> Iterator[tuple[WorkerProcess, Collector, Producer]]:
    name = unique("adp")
    env = isolated_env(stack, name, SEKAT_TRANSFERS_FORMAT="pacs008", SEKAT_CALLS_FORMAT="cdr-csv",
                       SEKAT_MEMBER_DIRECTORY=str(FIXTURES / "member_directory.csv"))
    worker = WorkerProcess(env, logs_dir / f"{name}.log").start()
    s = worker.settings

    async def listing() -> None:
        store = BlocklistStore.from_url(s.redis_url, s.redis_prefix)
        try:
            await file_report(store, "account:CIBBMYKL:8001234567", Status.CONFIRMED, "PDRM", "mule", "KL/2026/9")
            await file_report(store, "phone:+60123456789", Status.REPORTED, "NSRC", "proxy mule", "NSRC/1")
            await file_report(store, "phone:+60376543210", Status.CONFIRMED, "PDRM", "macau scam", "KL/2026/1")
            await file_report(store, "account:RHBBMYKL:218077665544", Status.CONFIRMED, "PDRM", "mule", "KL/2026/7")
        finally:
            await store.close()

    asyncio.run(listing())
    worker.wait_replica()
    collector = Collector(s, [s.topic_freeze, s.topic_block, s.topic_decisions, s.topic_deadletter])
    producer = Producer(s)
    try:
        yield worker, collector, producer
    finally:
        producer.close()
        collector.close()
        worker.stop()


def test_each_listed_transaction_of_a_pacs008_is_held_with_its_iso_ids(adapted) -> None:
    worker, out, producer = adapted
    s = worker.settings
    producer.send(s.topic_transfers, (FIXTURES / "pacs008_v08_multi.xml").read_bytes(), key=b"MBBEMYKL")

    first = {c.json["action"]: c.json for c in out.wait_for(for_event(f"{MSG_ID}/1", s.topic_freeze), count=2)}
    assert first["HOLD_TRANSFER"]["bank"] == "MBBEMYKL"
    assert first["HOLD_TRANSFER"]["end_to_end_id"] == "E2E-20261128-0001"
    assert first["HOLD_TRANSFER"]["tx_id"] == "TX-20261128-0001"
    assert first["HOLD_TRANSFER"]["uetr"] == "7a562c67-ca16-48ba-b074-65581be6f001"
    assert first["FREEZE_ACCOUNT"]["account"] == "CIBBMYKL:8001234567"
    assert first["FREEZE_ACCOUNT"]["end_to_end_id"] == "E2E-20261128-0001"

    [third] = out.wait_for(for_event(f"{MSG_ID}/3", s.topic_freeze))
    assert third.json["action"] == "HOLD_TRANSFER" and third.json["rule"] == "payee-proxy-on-blocklist"
    assert third.json["end_to_end_id"] == "E2E-20261128-0003" and "tx_id" not in third.json
    # The clean second transaction (IBANs, not listed) produced nothing.
    assert not out.matching(for_event(f"{MSG_ID}/2", s.topic_freeze))


def test_banks_named_by_member_id_get_their_commands_at_the_mapped_bic(adapted) -> None:
    # Both agents named by clearing-system member id (SEKAT_MEMBER_DIRECTORY maps RPP 021000021 → HLBBMYKL,
    # RPP RHBB0218 → RHBBMYKL); the payee account is listed under RHBBMYKL.
    worker, out, producer = adapted
    s = worker.settings
    producer.send(s.topic_transfers, (FIXTURES / "pacs008_v10_member_ids.xml").read_bytes(), key=b"RPP")

    commands = out.wait_for(for_event("RPP-10-MBR-1/1", s.topic_freeze), count=2)
    by_action = {c.json["action"]: c for c in commands}
    hold, freeze = by_action["HOLD_TRANSFER"], by_action["FREEZE_ACCOUNT"]
    assert (hold.key, hold.json["bank"], hold.json["account"]) == (b"HLBBMYKL", "HLBBMYKL", "HLBBMYKL:3300112244")
    assert (freeze.key, freeze.json["bank"], freeze.json["account"]) == (b"RHBBMYKL", "RHBBMYKL",
                                                                         "RHBBMYKL:218077665544")
    # The member the directory does not list is dead-lettered naming the element.
    [unlisted] = out.wait_for(lambda r: r.topic == s.topic_deadletter and r.json["reason"] == "invalid_bank"
                              and r.json["field"].endswith("CdtTrfTxInf[3]/CdtrAgt/FinInstnId/ClrSysMmbId/MmbId"))
    assert "UNLISTED9" in unlisted.json["message"]


def test_cdr_line_of_a_listed_caller_is_blocked(adapted) -> None:
    worker, out, producer = adapted
    s = worker.settings
    call_id = unique("CDR-")
    producer.send(s.topic_calls, f"{call_id},20261128101402,60376543210,012-345 6789,MOC,celcom,international,1"
                  .encode())
    [cmd] = out.wait_for(for_event(call_id, s.topic_block))
    assert cmd.key == b"CELCOM"
    assert (cmd.json["action"], cmd.json["caller"], cmd.json["call_id"]) == ("BLOCK_CALL", "+60376543210", call_id)


def test_malformed_document_and_bad_transaction_go_to_the_dead_letters(adapted) -> None:
    worker, out, producer = adapted
    s = worker.settings
    malformed = (FIXTURES / "pacs008_malformed.xml").read_bytes()
    producer.send(s.topic_transfers, malformed)
    producer.send(s.topic_transfers, (FIXTURES / "pacs008_v09_one_bad_tx.xml").read_bytes())

    def dead(reason: str):
        return lambda r: r.topic == s.topic_deadletter and r.json["reason"] == reason

    [broken] = out.wait_for(dead("not_xml"))
    assert base64.b64decode(broken.json["original_b64"]) == mask_identifiers(malformed)
    assert broken.json["source"]["topic"] == s.topic_transfers
    bic_field = "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf[2]/CdtrAgt/FinInstnId/BICFI"
    [bad_tx] = out.wait_for(lambda r: dead("invalid_bank")(r) and r.json["field"] == bic_field)
    assert bad_tx.json["source"]["topic"] == s.topic_transfers
    # The good transaction of the same message was decided all the same (its payee is listed).
    out.wait_for(for_event("MIX-09-1/1", s.topic_freeze), count=2)


def test_status_report_is_counted_as_skipped_and_the_worker_keeps_going(adapted) -> None:
    worker, out, producer = adapted
    s = worker.settings
    producer.send(s.topic_transfers, (FIXTURES / "pacs002_v10.xml").read_bytes())
    sample = 'sekat_events_total{outcome="SKIPPED",stream="transfers"} 1.0'
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and sample not in worker.get("/metrics")[1].decode():
        time.sleep(0.2)
    assert sample in worker.get("/metrics")[1].decode()
    assert worker.alive()
    assert not out.matching(lambda r: r.topic == s.topic_deadletter and b"FIToFIPmtStsRpt" in
                            base64.b64decode(r.json.get("original_b64", "")))


def _decode_processes(worker: WorkerProcess) -> list[int]:
    assert worker.proc is not None
    children = Path(f"/proc/{worker.proc.pid}/task/{worker.proc.pid}/children").read_text().split()
    return [int(pid) for pid in children
            if b"sekat.decode.processes" in Path(f"/proc/{pid}/cmdline").read_bytes()]


def test_pacs008_is_parsed_in_decode_processes_and_a_killed_one_loses_nothing(adapted) -> None:
    """SEKAT_DECODE_PROCESSES (default 2): the parse runs in child processes; one killed is replaced, and the part of
    a batch it held is decoded in the worker instead: every listed transaction is still held."""
    worker, out, producer = adapted
    s = worker.settings
    first = wait_until("two decode processes", lambda: _decode_processes(worker), lambda pids: len(pids) == 2)
    for child in first:
        assert b"SEKAT_" not in Path(f"/proc/{child}/environ").read_bytes()  # no settings, so no secret either
    os.kill(first[0], signal.SIGKILL)
    producer.send(s.topic_transfers, (FIXTURES / "pacs008_v08_multi.xml").read_bytes().replace(
        MSG_ID.encode(), b"KILLED-CHILD-1"), key=b"MBBEMYKL")
    out.wait_for(for_event("KILLED-CHILD-1/1", s.topic_freeze), count=2)
    out.wait_for(for_event("KILLED-CHILD-1/3", s.topic_freeze))
    again = wait_until("a new decode process", lambda: _decode_processes(worker),
                       lambda pids: len(pids) == 2 and first[0] not in pids)
    assert first[1] in again
    producer.send(s.topic_transfers, (FIXTURES / "pacs008_v08_multi.xml").read_bytes().replace(
        MSG_ID.encode(), b"KILLED-CHILD-2"), key=b"MBBEMYKL")
    out.wait_for(for_event("KILLED-CHILD-2/1", s.topic_freeze), count=2)
    assert worker.alive() and sorted(_decode_processes(worker)) == sorted(again)
    assert "decode process" in worker.log_tail(20000)
