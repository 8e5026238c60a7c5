"""Decode processes (``sekat.decode.processes``): the records that cross the pipe are the decoder's own, in
order, and a child that dies loses nothing.

The children here are real processes running ``python -m sekat.decode.processes``, as the worker starts them.
"""

from __future__ import annotations

import asyncio
import os
import random
import signal
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path

import msgspec
import pytest

from load_tests.adapters_bench import contract_message, harness_message, pacs008_xml
from sekat.decode.formats import transfer_decoder
from sekat.decode.processes import DecodedChunk, DecodeProcesses, decoder_settings, pack_chunk, unpack_chunk
from sekat.decode.transfers import decode_transfer
from sekat.identifiers import normalise_account, normalise_phone
from sekat.records import Party, PaymentStatus, Proxy, Rejection, Skipped, Transfer
from sekat.settings import Settings

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
SETTINGS = Settings.from_environ({"SEKAT_TRANSFERS_FORMAT": "pacs008"})
DECODE = transfer_decoder(SETTINGS)


def samples() -> list[bytes | None]:
    """Every pacs.008 fixture (multi-transaction, JSON rendering, bad transaction, DTD, malformed, pacs.002) and
    generated messages, plus values that are no message at all."""
    rng = random.Random(7)
    values: list[bytes | None] = [p.read_bytes() for p in sorted(FIXTURES.glob("pacs*"))]
    values += [harness_message(i) for i in range(50)]
    values += [pacs008_xml(rng, i, n) for i, n in ((1, 1), (2, 3), (3, 10))]
    return values + [b"", None, b"<not-closed", b"{}", b"[1]", b"\xff\xfe<"]


def crossed(results: list[object]) -> list[object]:
    return unpack_chunk(msgspec.msgpack.decode(msgspec.msgpack.encode(pack_chunk(results)), type=DecodedChunk))


def test_every_result_crosses_the_pipe_unchanged() -> None:
    results = [DECODE(v) for v in samples()]
    kinds = {type(item) for result in results for item in result}
    assert kinds == {Transfer, Rejection, Skipped}
    assert crossed(results) == results


def test_a_status_reports_payment_statuses_cross_the_pipe() -> None:
    report = [Skipped("pacs.002", (PaymentStatus("STS-1", "RJCT", "FRAD", "E2E-1", "TX-1", "8a562c67-ca16"),
                                   PaymentStatus("STS-1", "ACSC", end_to_end_id="E2E-2")))]
    assert crossed([report, [Skipped("pacs.002")]]) == [report, [Skipped("pacs.002")]]


def test_a_transfer_keeps_its_offset_exact_amount_phones_and_proxy() -> None:
    mobile = normalise_phone("+60123456789")
    t = Transfer("e-1", datetime(2026, 11, 28, 18, 15, 0, 123456, tzinfo=timezone(timedelta(hours=8))), "t-1",
                 Decimal("1234567.8900"), Party("MBBEMYKL", normalise_account("MBBEMYKL", "5140-0000 0000"), mobile),
                 Party("CIBBMYKL", None), Proxy("MOBILE", "+60123456789", mobile), "DUITNOW", "MYR", "E2E", "TX",
                 "7a562c67-ca16-48ba-b074-000000000001")
    single = decode_transfer(contract_message(random.Random(1), 1))  # the contract decoder gives one, not a list
    [back, back_single] = crossed([[t], single])
    assert back == [t] and back_single == single
    assert back[0].occurred_at.utcoffset() == timedelta(hours=8)
    assert str(back[0].amount) == "1234567.8900"
    assert back[0].payer.phone.key == "phone:+60123456789" and back[0].payer.account.key == t.payer.account.key


@pytest.fixture
def decode_processes() -> Iterator[tuple[DecodeProcesses, list[int], asyncio.AbstractEventLoop]]:
    """Two decode processes, as SEKAT_DECODE_PROCESSES=2 starts them; the events decoded in the worker instead."""
    fallbacks: list[int] = []
    procs = DecodeProcesses("transfers", decoder_settings("transfers", SETTINGS), 2, DECODE, fallbacks.append)
    loop = asyncio.new_event_loop()
    loop.run_until_complete(procs.start())
    try:
        yield procs, fallbacks, loop
    finally:
        loop.run_until_complete(procs.stop())
        loop.close()


async def ask(procs: DecodeProcesses, values: list[bytes | None]) -> list[object]:
    return await procs.submit(values)


def test_two_processes_answer_a_batch_in_order_as_the_worker_would(decode_processes) -> None:
    procs, fallbacks, loop = decode_processes
    values = samples() * 5
    got = loop.run_until_complete(ask(procs, values))
    assert got == [DECODE(v) for v in values]
    assert len(procs.pids()) == 2 and fallbacks == []


def test_a_child_killed_mid_batch_loses_nothing_and_is_replaced(decode_processes) -> None:
    procs, fallbacks, loop = decode_processes
    values = [harness_message(i) for i in range(20_000)]  # ~0.2-0.5 s of parsing each half: still at it
    first = procs.pids()

    async def killed_while_decoding() -> list[object]:
        answer = procs.submit(values)
        os.kill(first[0], signal.SIGKILL)
        return await answer

    got = loop.run_until_complete(killed_while_decoding())
    assert got == [DECODE(v) for v in values]
    assert fallbacks == [10_000]  # the killed child's half, decoded in the worker

    async def replaced() -> list[int]:
        for _ in range(100):
            if len(procs.pids()) == 2 and first[0] not in procs.pids():
                break
            await asyncio.sleep(0.05)
        return procs.pids()

    pids = loop.run_until_complete(replaced())
    assert len(pids) == 2 and first[0] not in pids and first[1] in pids
    again = loop.run_until_complete(ask(procs, values[:100]))
    assert again == [DECODE(v) for v in values[:100]] and fallbacks == [10_000]


def test_children_exit_when_stopped(decode_processes) -> None:
    procs, _, loop = decode_processes
    pids = procs.pids()
    loop.run_until_complete(procs.stop())
    for pid in pids:
        assert not Path(f"/proc/{pid}").exists() or "Z" in Path(f"/proc/{pid}/stat").read_text().split()[2]
