"""Decoding beside the worker's thread: a stream's decoder in child processes (SEKAT_DECODE_PROCESSES).

A pacs.008 costs the worker's one thread several times what a contract JSON event costs to decode, and
nearly all of it is libxml2's parse and reading the fields, which need nothing of the worker. So the
transfers decoder runs here, in child processes, and the worker's thread only rebuilds the records they
send back (``FlatTransfer``). Threads cannot do this: lxml gives the GIL back while it parses, but each
parse then waits for the busy event loop to hand the GIL back at Python's 5 ms switch interval
(docs/input-formats.md, "Cost").

The protocol, one pipe pair per child: the worker writes a batch's values as one msgpack array (4-byte
length first), the child answers with one ``DecodedChunk`` (msgpack) holding what the decoder gave for each
value, in order: a Transfer as a flat array of its fields, a Rejection or a Skipped as theirs. A batch
is split across the children in contiguous chunks and put back together in order. The child is
``python -m sekat.decode.processes SETTINGS``, SETTINGS being the JSON of what its decoder needs (format,
size limit, region, member directory file: ``decoder_settings``); it reads nothing else, gets no secrets (a minimal environment),
logs to stderr with identifiers masked, and exits when its input closes (so it dies with the worker,
whichever way the worker ends).

Nothing is lost if a child dies (killed, out of memory, a crash in a C library on some input): its
unanswered chunks are decoded on the worker's thread instead, counted in
``sekat_decode_fallback_events_total``, and the child is started again a second later. The consumer
overlaps the two sides: it hands batch N+1 to the children before it decides batch N (``ScreeningConsumer``).
"""

from __future__ import annotations

import asyncio
import fcntl
import logging
import os
import struct
import sys
import time
from collections import deque
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any

import msgspec
import orjson

from sekat.identifiers import AccountId, PhoneNumber
from sekat.records import Party, PaymentStatus, Proxy, Rejection, Skipped, Transfer

log = logging.getLogger(__name__)

_LENGTH = struct.Struct("<I")
RESTART_AFTER_S = 1.0
RESTART_MAX_S = 60.0
PIPE_BYTES = 1 << 20
STOP_WAIT_S = 2.0
ROOT = Path(__file__).resolve().parent.parent


def decoder_settings(stream: str, settings: Any) -> dict[str, Any]:
    """What a child needs to build ``stream``'s decoder as the worker has it."""
    return {"stream": stream, "transfers_format": settings.transfers_format,
            "max_event_bytes": settings.max_event_bytes, "phone_region": settings.phone_region,
            "member_directory": settings.member_directory}


def build_decoder(given: dict[str, Any]) -> Callable[[bytes | None], Any]:
    """The decoder a child runs: the worker's own, built from the same settings (``decoder_settings``)."""
    from sekat.decode.formats import transfer_decoder
    from sekat.settings import Settings

    if given["stream"] != "transfers":
        raise ValueError(f"no decode processes for the {given['stream']!r} stream")
    return transfer_decoder(Settings(transfers_format=given["transfers_format"],
                                     max_event_bytes=int(given["max_event_bytes"]), phone_region=given["phone_region"],
                                     member_directory=given.get("member_directory", "")))


# A Transfer on the pipe: its fields flat, the parties' and the proxy's spelled out. The offset of
# occurred_at is kept (ISO text); the amount is exact (decimal text). Rebuilt by ``rebuild_transfer``, which
# tests hold to equality with the decoder's own records (tests/unit/test_decode_processes.py).
class FlatTransfer(msgspec.Struct, array_like=True):
    event_id: str
    occurred_at: str  # ISO text: msgpack's own timestamp would drop the offset
    transfer_id: str
    amount: Decimal
    payer_bank: str
    payer_account: tuple[str, str] | None
    payer_phone: tuple[str, bool] | None
    payee_bank: str
    payee_account: tuple[str, str] | None
    payee_phone: tuple[str, bool] | None
    proxy: tuple[str, str, tuple[str, bool] | None] | None
    channel: str | None
    currency: str | None
    end_to_end_id: str | None
    tx_id: str | None
    uetr: str | None


def _flat_account(account: AccountId | None) -> tuple[str, str] | None:
    return None if account is None else (account.bank, account.number)


def _flat_phone(phone: PhoneNumber | None) -> tuple[str, bool] | None:
    return None if phone is None else (phone.e164, phone.protected)


def flatten_transfer(t: Transfer) -> tuple[Any, ...]:
    """A Transfer as ``FlatTransfer``'s array (a tuple encodes as the same msgpack array, for less work)."""
    payer, payee, proxy = t.payer, t.payee, t.payee_proxy
    return (t.event_id, t.occurred_at.isoformat(), t.transfer_id, t.amount,
            payer.bank, _flat_account(payer.account), _flat_phone(payer.phone),
            payee.bank, _flat_account(payee.account), _flat_phone(payee.phone),
            None if proxy is None else (proxy.type, proxy.value, _flat_phone(proxy.phone)),
            t.channel, t.currency, t.end_to_end_id, t.tx_id, t.uetr)


# Accounts and numbers repeat (a few customers make most transfers): one object each, as the decoder's own
# cached normalisers give.
@lru_cache(maxsize=1 << 16)
def _account(bank: str, number: str) -> AccountId:
    return AccountId(bank, number)


@lru_cache(maxsize=1 << 16)
def _phone(e164: str, protected: bool) -> PhoneNumber:
    return PhoneNumber(e164, protected)


def _party(bank: str, account: tuple[str, str] | None, phone: tuple[str, bool] | None) -> Party:
    return Party(bank, None if account is None else _account(*account), None if phone is None else _phone(*phone))


def rebuild_transfer(w: FlatTransfer) -> Transfer:
    proxy = w.proxy
    return Transfer(w.event_id, datetime.fromisoformat(w.occurred_at), w.transfer_id, w.amount,
                    _party(w.payer_bank, w.payer_account, w.payer_phone),
                    _party(w.payee_bank, w.payee_account, w.payee_phone),
                    None if proxy is None else Proxy(proxy[0], proxy[1], None if proxy[2] is None else _phone(*proxy[2])),
                    w.channel, w.currency, w.end_to_end_id, w.tx_id, w.uetr)


class DecodedChunk(msgspec.Struct, array_like=True):
    """A child's answer for one chunk: each value's results, by kind."""

    shape: list[int]  # per value: -1 for one result, n >= 0 for a list of n
    kinds: bytes  # per result: T (transfer), R (rejection), S (skipped)
    transfers: list[FlatTransfer]  # sent as tuples (``flatten_transfer``), read back as structs
    rejections: list[tuple[str, str, str]]
    skipped: list[tuple[str, list[tuple[str, str, str, str, str, str]]]]  # message, its payment statuses


def pack_chunk(results: Sequence[Any]) -> DecodedChunk:
    """What the decoder gave for each value of a chunk, for the pipe."""
    shape: list[int] = []
    kinds = bytearray()
    transfers: list[Any] = []
    rejections: list[tuple[str, str, str]] = []
    skipped: list[tuple[str, list[tuple[str, str, str, str, str, str]]]] = []
    for result in results:
        items = result if type(result) is list else (result,)
        shape.append(len(items) if type(result) is list else -1)
        for item in items:
            if isinstance(item, Transfer):
                kinds.append(84)  # T
                transfers.append(flatten_transfer(item))
            elif isinstance(item, Rejection):
                kinds.append(82)  # R
                rejections.append((item.reason, item.message, item.field))
            elif isinstance(item, Skipped):
                kinds.append(83)  # S
                skipped.append((item.message, [(p.message_id, p.status, p.reason, p.end_to_end_id, p.tx_id, p.uetr)
                                               for p in item.statuses]))
            else:
                raise TypeError(f"cannot send {type(item).__name__} from a decode process")
    return DecodedChunk(shape, bytes(kinds), transfers, rejections, skipped)


def unpack_chunk(chunk: DecodedChunk) -> list[Any]:
    """The decoder's results for each value, rebuilt from a ``DecodedChunk``."""
    transfers = iter(chunk.transfers)
    rejections = iter(chunk.rejections)
    skipped = iter(chunk.skipped)
    kinds = iter(chunk.kinds)

    def item() -> Any:
        kind = next(kinds)
        if kind == 84:
            return rebuild_transfer(next(transfers))
        if kind == 82:
            return Rejection(*next(rejections))
        message, statuses = next(skipped)
        return Skipped(message, tuple(PaymentStatus(*status) for status in statuses))

    return [item() if n < 0 else [item() for _ in range(n)] for n in chunk.shape]


_READ_CHUNK = msgspec.msgpack.Decoder(DecodedChunk)


def _widen_pipe(fd: int) -> None:
    """Make a pipe hold a whole batch (Linux: up to fs.pipe-max-size, 1 MiB by default); the child widens both
    of its pipes as it starts.

    With the default 64 KiB, a batch of 1,000 pacs.008 messages (~800 KB) leaves the worker's event loop 64 KiB
    at a time, one piece each time the loop comes round, and the loop is busy deciding the previous batch for
    tens of milliseconds: the child would spend most of its time waiting for its input, and answers would come
    back the same way. With the pipe as large as a batch, each side's write is one call.
    """
    if not hasattr(fcntl, "F_SETPIPE_SZ"):
        return
    try:
        limit = int(Path("/proc/sys/fs/pipe-max-size").read_text())
    except (OSError, ValueError):
        limit = PIPE_BYTES
    try:
        fcntl.fcntl(fd, fcntl.F_SETPIPE_SZ, min(PIPE_BYTES, limit))
    except OSError as exc:  # another system's limit: the default pipe still works, more slowly
        log.warning("decode process pipe left at its default size: %s", exc)


class ChildGone(Exception):
    """A decode process ended before it answered."""


class _Child:
    def __init__(self, proc: asyncio.subprocess.Process, on_gone: Callable[[], None]) -> None:
        self.proc = proc
        self.on_gone = on_gone
        self.started = time.monotonic()
        self.stopping = False
        self.waiting: deque[asyncio.Future[list[Any]]] = deque()
        self.reader = asyncio.ensure_future(self._read())

    @property
    def alive(self) -> bool:
        return self.proc.returncode is None and not self.reader.done()

    def ask(self, values: list[bytes | None]) -> asyncio.Future[list[Any]]:
        answer: asyncio.Future[list[Any]] = asyncio.get_running_loop().create_future()
        payload = msgspec.msgpack.encode(values)
        stdin = self.proc.stdin
        assert stdin is not None
        try:
            stdin.write(_LENGTH.pack(len(payload)) + payload)
        except (ConnectionError, RuntimeError) as exc:  # the pipe closed under us: the child is gone
            answer.set_exception(ChildGone(str(exc)))
            return answer
        self.waiting.append(answer)
        return answer

    async def _read(self) -> None:
        stdout = self.proc.stdout
        assert stdout is not None
        try:
            while True:
                (size,) = _LENGTH.unpack(await stdout.readexactly(_LENGTH.size))
                results = unpack_chunk(_READ_CHUNK.decode(await stdout.readexactly(size)))
                answer = self.waiting.popleft()
                if not answer.done():
                    answer.set_result(results)
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        except asyncio.CancelledError:
            raise
        except Exception:  # noqa: BLE001 - a garbled answer: treat the child as gone
            log.exception("decode process sent an unreadable answer")
        finally:
            while self.waiting:
                answer = self.waiting.popleft()
                if not answer.done():
                    answer.set_exception(ChildGone("decode process ended"))
            if not self.stopping:
                self.on_gone()

    async def stop(self) -> None:
        self.stopping = True
        proc = self.proc
        if proc.stdin is not None and not proc.stdin.is_closing():
            proc.stdin.close()  # the child exits when its input closes
        try:
            await asyncio.wait_for(proc.wait(), STOP_WAIT_S)
        except asyncio.TimeoutError:
            proc.kill()
            await proc.wait()
        self.reader.cancel()


class DecodeProcesses:
    """``processes`` children running a stream's decoder; ``submit`` a batch's values, await its results in order.

    ``settings`` is what the children build the decoder from (``decoder_settings``); ``decode`` is the worker's
    own copy of the decoder, for the values a child cannot answer.
    """

    def __init__(self, name: str, settings: dict[str, Any], processes: int, decode: Callable[[bytes | None], Any],
                 on_fallback: Callable[[int], None] = lambda n: None) -> None:
        self.name = name
        self.settings = settings
        self.decode = decode
        self.processes = processes
        self.on_fallback = on_fallback
        self._children: list[_Child | None] = [None] * processes
        self._restarting: set[int] = set()
        self._failures = [0] * processes  # quick deaths in a row, per slot
        self._stopped = False

    async def start(self) -> None:
        for slot in range(self.processes):
            await self._spawn(slot)

    async def _spawn(self, slot: int) -> None:
        env = {"PATH": os.environ.get("PATH", ""), "LANG": os.environ.get("LANG", "C.UTF-8"),
               "PYTHONPATH": str(ROOT)}
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "sekat.decode.processes", orjson.dumps(self.settings).decode(),
            stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE, env=env, cwd=str(ROOT))
        self._children[slot] = _Child(proc, lambda: self._gone(slot))
        log.info("%s decode process %d started (pid %d)", self.name, slot, proc.pid)

    def submit(self, values: list[bytes | None]) -> asyncio.Future[list[Any]]:
        """What the decoder gives for each value, in order; decoded here for any part a child cannot answer."""
        live = [child for child in self._children if child is not None and child.alive]
        if not live:
            return asyncio.ensure_future(self._local(values))
        size = -(-len(values) // len(live))
        parts = [(values[i:i + size], child.ask(values[i:i + size]))
                 for i, child in zip(range(0, len(values), size), live)]
        return asyncio.ensure_future(self._gather(parts))

    async def _local(self, values: Sequence[bytes | None]) -> list[Any]:
        self.on_fallback(len(values))
        decode = self.decode
        return [decode(value) for value in values]

    async def _gather(self, parts: list[tuple[list[bytes | None], asyncio.Future[list[Any]]]]) -> list[Any]:
        out: list[Any] = []
        for values, answer in parts:
            try:
                out.extend(await answer)
            except ChildGone:
                log.warning("%s decode process ended with %d events unanswered: decoded in the worker instead",
                            self.name, len(values))
                out.extend(await self._local(values))
        return out

    def _gone(self, slot: int) -> None:
        """A child ended without being asked to: start another, a second later, and later still each time one
        dies within a minute of starting (a crash loop does not spin; the worker decodes meanwhile)."""
        child = self._children[slot]
        if slot in self._restarting or self._stopped:
            return
        quick = child is not None and time.monotonic() - child.started < 60
        self._failures[slot] = self._failures[slot] + 1 if quick else 0
        self._restarting.add(slot)
        asyncio.ensure_future(self._restart(slot, child))

    async def _restart(self, slot: int, child: _Child | None) -> None:
        delay = min(RESTART_AFTER_S * 2 ** self._failures[slot], RESTART_MAX_S)
        try:
            if child is not None:
                log.warning("%s decode process %d (pid %d) ended with code %s; starting another in %.0f s",
                            self.name, slot, child.proc.pid, child.proc.returncode, delay)
                await child.stop()
            self._children[slot] = None
            while not self._stopped:
                await asyncio.sleep(delay)
                try:
                    await self._spawn(slot)
                    return
                except Exception:  # noqa: BLE001 - the worker decodes meanwhile; try again, later each time
                    log.exception("%s decode process %d could not be started", self.name, slot)
                    delay = min(delay * 2, RESTART_MAX_S)
        finally:
            self._restarting.discard(slot)

    def pids(self) -> list[int]:
        return [child.proc.pid for child in self._children if child is not None and child.alive]

    async def stop(self) -> None:
        self._stopped = True
        await asyncio.gather(*(child.stop() for child in self._children if child is not None),
                             return_exceptions=True)
        self._children = [None] * self.processes


def serve(settings: dict[str, Any]) -> None:
    """The child: batches in on stdin, the decoder's results out on stdout, until stdin closes."""
    decode_value = build_decoder(settings)
    _widen_pipe(sys.stdin.fileno())
    _widen_pipe(sys.stdout.fileno())
    read, write = sys.stdin.buffer.read, sys.stdout.buffer
    encode, decode = msgspec.msgpack.Encoder().encode, msgspec.msgpack.Decoder(list[bytes | None]).decode
    while True:
        head = read(_LENGTH.size)
        if len(head) < _LENGTH.size:
            return
        (size,) = _LENGTH.unpack(head)
        body = read(size)
        if len(body) < size:
            return
        answer = encode(pack_chunk([decode_value(value) for value in decode(body)]))
        write.write(_LENGTH.pack(len(answer)) + answer)
        write.flush()


if __name__ == "__main__":
    from sekat.redaction import install

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s decode-process %(name)s: %(message)s")
    install((), logging.WARNING)  # no bare phone or account number in a traceback either (it has no secrets)
    try:
        serve(orjson.loads(sys.argv[1]))
    except (KeyboardInterrupt, BrokenPipeError):
        pass
