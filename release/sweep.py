"""Release, not just freeze: when an entry is revoked or expires, tell every institution that acted on it.

    screening batch ─ commands acked ─> remember who acted (release/acted.py: one script call per batch; on a
                                        Redis Cluster one per hash-tagged group it touches)
    revoked entry written ───────────> marked due in the same MULTI (BlocklistStore.put_many; on a cluster
                                        right after the entry and its announcement)
    release sweep (group leader, every SEKAT_RELEASE_INTERVAL_S):
        due entries (sorted set by next check) ─> still active? move to its expiry
                                               └> revoked / expired: RELEASE_ACCOUNT to each bank that froze or
                                                  held, UNBLOCK_NUMBER to each telco that blocked or labelled
                                                  calls, UNBLOCK_SMS to each that blocked or labelled SMS,
                                                  on the command topics, plus one audit record on sekat.decisions;
                                                  once Kafka has acknowledged them, remember each as sent
                                                  (so institutions' feedback on it is matched, api/feedback.py)
                                                  and forget exactly those who acted

Remembering who acted rides on the screening shell's own state write (after
the batch's output is acknowledged, one round trip per batch, only for batches
that issued commands): ``recording_who_acted`` adds ``acted`` writes to a
decision's verdict, ``writing_who_acted`` sends them to ``ActedStore.record``
next to the rule state. Nothing is read on the hot path.

Command ids are deterministic — uuid5 of ``release:<ref>:<institution>``,
action and target, where ``ref`` is the revoking report's id or
``expired@<expires_at>`` — so a sweep repeated after a crash, or by a new
leader, sends the same ids. A member that acts between the read and the
forget is kept and released at the next sweep.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime, timezone
from typing import Any

import msgspec
import orjson
from sekat.blocklist.feedback import FeedbackStore, SentCommand
from sekat.blocklist.store import BlocklistStore
from sekat.metrics.worker import WorkerMetrics
from sekat.release.acted import ActedStore
from sekat.release.metrics import ReleaseMetrics
from sekat.rules.engine import Verdict
from sekat.rules.registry import StateWrite
from sekat.streams.output import OutputBatch, OutputTopics

from sekat.clock import Clock
from sekat.identifiers import mask
from sekat.records import Action, Command, Decision, Entry, Status, iso

log = logging.getLogger(__name__)

ACTED = "acted"  # StateWrite kind: (entry key, ACTION|INSTITUTION)
LISTED = ("reported", "confirmed")
RECHECK_MISSING_S = 60.0  # an acted-on key missing from the index (e.g. during a rebuild): look again later
SWEEP_LIMIT = 500
RELEASES = (Action.RELEASE_ACCOUNT, Action.UNBLOCK_NUMBER, Action.UNBLOCK_SMS)


def release_action(action: Action) -> Action:
    if action.for_sms:
        return Action.UNBLOCK_SMS
    return Action.RELEASE_ACCOUNT if action.for_bank else Action.UNBLOCK_NUMBER


def lien_member(command: Command) -> str:
    """The ``acted`` member of a lien: ``RELEASE_ACCOUNT|<bank>|<liened account>|<hold_until, epoch s>``."""
    until = dict(command.details).get("hold_until", "")
    ends = math.ceil(datetime.fromisoformat(until).timestamp()) if until else 0  # never before hold_until
    return f"{Action.RELEASE_ACCOUNT.value}|{command.institution}|{command.target}|{ends}"


def lien_of(member: str) -> tuple[str, str, float] | None:
    """(bank, liened account, hold ends at epoch s) of a lien member, None for any other member."""
    parts = member.split("|")
    if len(parts) != 4 or parts[0] != Action.RELEASE_ACCOUNT.value:
        return None
    try:
        return parts[1], parts[2], float(parts[3])
    except ValueError:
        return None


def who_acted(decision: Decision) -> list[tuple[str, str]]:
    """(entry key, ``RELEASE_ACTION|INSTITUTION``) for each listed identifier behind each of the decision's commands.

    A freeze is tied to the account it freezes; a hold or a call command to every listed identifier the
    enforce rules cited. A lien (HOLD_AMOUNT) is tied to the entries its rule named as its causes (else to the
    listed identifiers), with the liened account and the end of the hold in its member (``lien_member``).
    """
    listed = [m.identifier for m in decision.matches
              if m.mode == "enforce" and m.status in LISTED and m.identifier]
    found: list[tuple[str, str]] = []
    for command in decision.commands:
        if command.action is Action.HOLD_AMOUNT:
            member = lien_member(command)
            found.extend((key, member) for key in command.causes or listed or (f"account:{command.target}",))
            continue
        if command.action in RELEASES or not listed:
            continue
        member = f"{release_action(command.action).value}|{command.institution}"
        if command.action is Action.FREEZE_ACCOUNT:
            keys = [k for k in listed if k == f"account:{command.target}"]
        else:
            keys = listed
        found.extend((key, member) for key in keys)
    return list(dict.fromkeys(found))


Decide = Callable[[Any, Any, Any], Verdict]
WriteState = Callable[[Sequence[StateWrite]], Awaitable[None]]


def recording_who_acted(decide: Decide) -> Decide:
    """``decide``, with an ``acted`` state write for each institution a blocklist entry made act."""
    def decide_and_remember(record: Any, ctx: Any, policy: Any) -> Verdict:
        verdict = decide(record, ctx, policy)
        if not verdict.decision.commands:  # the common case costs one attribute test
            return verdict
        found = who_acted(verdict.decision)
        if not found:
            return verdict
        return msgspec.structs.replace(verdict, writes=verdict.writes + tuple(StateWrite(ACTED, k, m) for k, m in found))
    return decide_and_remember


def writing_who_acted(write_state: WriteState, acted: ActedStore, clock: Clock) -> WriteState:
    """The shell's state write, with the ``acted`` writes going to ``ActedStore.record`` alongside."""
    async def write(writes: Sequence[StateWrite]) -> None:
        mine = [(w.key, w.member) for w in writes if w.kind == ACTED]
        rest = [w for w in writes if w.kind != ACTED]
        pending = [acted.record(mine, clock().timestamp())] if mine else []
        if rest or not mine:
            pending.append(write_state(rest))
        await asyncio.gather(*pending)
    return write


def release(entry: Entry, members: Sequence[str], now: datetime) -> tuple[list[Command], dict[str, Any]]:
    """Release commands for everyone in ``members`` who acted on ``entry`` (revoked or expired), and the audit record.

    A lien's release names the liened account; any other release names the entry's own identifier.
    """
    why = "revoked" if entry.status is Status.REVOKED else "expired"
    ref = entry.report_id if why == "revoked" else f"expired@{entry.expires_at}"
    kind, _, target = entry.key.partition(":")
    if why == "revoked":
        text = f"{kind} revoked by {entry.source}" + (f" ({entry.case_ref})" if entry.case_ref else "")
        text += f": {entry.reason}" if entry.reason else ""
    else:
        text = f"{kind} listing expired at {entry.expires_at}"
    details = (("identifier", entry.key), ("kind", kind), ("released", why), ("report_id", entry.report_id))
    commands: list[Command] = []
    for member in members:
        lien = lien_of(member)
        if lien is not None:
            bank, account, _ = lien
            commands.append(Command(Action.RELEASE_ACCOUNT, bank, account, f"release:{ref}:{bank}", f"entry-{why}",
                                    (f"lien on {account}: {text}",), now, details))
            continue
        action, _, institution = member.partition("|")
        if action not in (a.value for a in RELEASES) or not institution or "|" in institution:
            continue  # not written by Sekat: nothing to release
        commands.append(Command(Action(action), institution, target, f"release:{ref}:{institution}",
                                f"entry-{why}", (text,), now, details))
    audit = {"event_id": f"release:{ref}", "stream": "releases", "outcome": "RELEASE", "decided_at": iso(now),
             "identifier": entry.key, "released": why, "report_id": entry.report_id, "source": entry.source,
             "case_ref": entry.case_ref, "reason": entry.reason, "expires_at": entry.expires_at,
             "reasons": [text], "institutions": [f"{c.action.value}|{c.institution}" for c in commands],
             "command_ids": [c.command_id for c in commands]}
    return commands, audit


def release_ended_lien(member: str, now: datetime) -> tuple[Command, dict[str, Any]] | None:
    """The release of a lien whose hold ended (``hold_until`` passed) while its causes are still listed.

    Its ids depend only on the lien (bank, account, end): the same lien recorded under two entries is
    released by one command id, however many of them the sweep finds it under.
    """
    lien = lien_of(member)
    if lien is None:
        return None
    bank, account, ends = lien
    until = iso(datetime.fromtimestamp(ends, tz=timezone.utc))
    ref = f"hold-ended@{until}"
    key = f"account:{account}"
    text = f"lien on {account} ended at {until} (hold_until)"
    command = Command(Action.RELEASE_ACCOUNT, bank, account, f"release:{ref}:{bank}", "hold-ended", (text,), now,
                      (("identifier", key), ("kind", "account"), ("released", "hold_ended"), ("report_id", "")))
    audit = {"event_id": f"release:{ref}:{account}", "stream": "releases", "outcome": "RELEASE",
             "decided_at": iso(now), "identifier": key, "released": "hold_ended", "report_id": "", "source": "",
             "case_ref": "", "reason": "", "expires_at": until, "reasons": [text],
             "institutions": [f"{Action.RELEASE_ACCOUNT.value}|{bank}"], "command_ids": [command.command_id]}
    return command, audit


def sent_release(command: Command, entry_key: str) -> SentCommand:
    """A release command as feedback matches it: addressed to its institution, acting on the released entry
    (an ended lien: the liened account)."""
    return SentCommand(command.command_id, command.action.value, command.institution, iso(command.issued_at),
                       (entry_key,))


def _expiry(entry: Entry) -> float:
    return datetime.fromisoformat(entry.expires_at).timestamp() if entry.expires_at else float("inf")


class Releaser:
    """The release sweep; the worker runs it on the group leader every SEKAT_RELEASE_INTERVAL_S."""

    def __init__(self, acted: ActedStore, store: BlocklistStore, topics: OutputTopics, metrics: WorkerMetrics,
                 release_metrics: ReleaseMetrics, clock: Clock, sent: FeedbackStore | None = None,
                 sent_ttl_s: int = 0) -> None:
        """``sent``: where the release commands are remembered as sent for ``sent_ttl_s`` (the feedback window),
        so that an institution's feedback on a release is matched to it."""
        self.acted = acted
        self.sent = sent
        self.sent_ttl_s = sent_ttl_s
        self.store = store
        self.topics = topics
        self.metrics = metrics
        self.release_metrics = release_metrics
        self.clock = clock

    async def run_once(self) -> int:
        """One sweep; a failure is counted and logged, and the next sweep retries (same command ids)."""
        try:
            return await self.sweep()
        except Exception as exc:  # noqa: BLE001 - Redis or Kafka unavailable: nothing was forgotten
            self.release_metrics.errors.inc()
            log.warning("release sweep failed (%s: %s); retrying at the next sweep", type(exc).__name__, exc)
            return 0

    async def sweep(self) -> int:
        """Release the due entries that are revoked or expired and the liens whose hold ended; move the
        others to their next check (the entry's expiry or its earliest lien's end, whichever comes first)."""
        now = self.clock()
        ts = now.timestamp()
        due = await self.acted.due(ts, SWEEP_LIMIT)
        if not due:
            return 0
        keys = [key for key, _ in due]
        entries = await self.store.lookup_many(keys)
        members = await self.acted.members(keys)
        moves: list[tuple[str, float, float]] = []
        ending: list[Entry] = []
        held: list[tuple[str, list[str]]] = []  # (entry key, its liens whose hold ended)
        for key, seen in due:
            entry = entries.get(key)
            if entry is not None and not entry.active_at(now):
                ending.append(entry)
                continue
            ends = [(m, lien[2]) for m in members[key] if (lien := lien_of(m)) is not None]
            ended = [m for m, at in ends if at <= ts]
            if ended:
                held.append((key, ended))
            later = min((at for _, at in ends if at > ts), default=float("inf"))
            moves.append((key, seen, min(ts + RECHECK_MISSING_S if entry is None else _expiry(entry), later)))
        out = OutputBatch(self.topics)
        issued: list[Command] = []
        remembered: list[SentCommand] = []
        lifted: set[str] = set()  # ended liens released by this sweep
        released: dict[str, int] = {}
        for entry in ending:
            commands, audit = release(entry, members[entry.key], now)
            if not commands:
                continue
            for command in commands:
                out.command(command)
                remembered.append(sent_release(command, entry.key))
            out.record(self.topics.decisions, audit["event_id"].encode(), orjson.dumps(audit))
            issued.extend(commands)
            released[audit["released"]] = released.get(audit["released"], 0) + 1
            log.info("releasing %s %s: %d command(s) (%s)", entry.key.partition(":")[0],
                     mask(entry.key.rpartition(":")[2]), len(commands), audit["released"])
        for key, ended in held:
            for member in ended:
                made = release_ended_lien(member, now)
                if made is None or made[0].command_id in lifted:
                    continue  # not a lien; or one remembered under several entries, released once
                command, audit = made
                lifted.add(command.command_id)
                out.command(command)
                remembered.append(sent_release(command, f"account:{command.target}"))
                out.record(self.topics.decisions, audit["event_id"].encode(), orjson.dumps(audit))
                issued.append(command)
                released["hold_ended"] = released.get("hold_ended", 0) + 1
                log.info("releasing a lien on %s: its hold ended", mask(command.target.rpartition(":")[2]))
        await out.send()  # acknowledged by Kafka before anything is forgotten
        if self.sent is not None and remembered:
            await self.sent.record_sent(remembered, self.sent_ttl_s)
        for entry in ending:
            await self.acted.forget(entry.key, members[entry.key])
        for key, ended in held:
            await self.acted.forget(key, ended)
        await self.acted.reschedule(moves)
        if issued:
            self.metrics.count_commands(issued)
        for why, n in released.items():
            self.release_metrics.released_by[why].inc(n)
        return len(released)
