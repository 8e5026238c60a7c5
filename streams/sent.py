"""Remembering what was sent to whom, so that an institution's feedback can be matched to its command.

    screening batch ─ commands acked ─> one ``SentCommand`` per command (blocklist/feedback.py: one pipeline of
                                        SETs per batch, expiring after SEKAT_FEEDBACK_WINDOW_DAYS)

It rides on the screening shell's state write as remembering who acted does (``release.sweep``):
``recording_sent`` adds a ``sent`` write to a decision's verdict for each command, ``writing_sent`` sends them
to ``FeedbackStore.record_sent`` beside the rest. Only batches that issued commands pay for it; nothing is
read on the hot path.

The entries behind a command are the listed or flagged identifiers its enforce rules cited; a freeze or a
lien is tied to the account it acts on when that account is one of them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from typing import Any

import msgspec

from sekat.blocklist.feedback import PAYMENT_IDS, FeedbackStore, SentCommand
from sekat.records import Action, Command, Decision, iso
from sekat.release.sweep import Decide, WriteState
from sekat.rules.engine import Verdict
from sekat.rules.registry import StateWrite

SENT = "sent"  # StateWrite kind: (command_id, JSON of the SentCommand)
_ENCODE = msgspec.json.Encoder()
_TIED_TO_ACCOUNT = (Action.FREEZE_ACCOUNT, Action.HOLD_AMOUNT)


def sent_commands(decision: Decision) -> list[SentCommand]:
    """A ``SentCommand`` for each of the decision's commands, with the entries behind it."""
    cited = list(dict.fromkeys(m.identifier for m in decision.matches if m.mode == "enforce" and m.identifier))
    out = []
    for command in decision.commands:
        entries = cited
        if command.action in _TIED_TO_ACCOUNT and f"account:{command.target}" in cited:
            entries = [f"account:{command.target}"]
        out.append(SentCommand(command.command_id, command.action.value, command.institution,
                               iso(command.issued_at), tuple(entries), payment_ids(command)))
    return out


def payment_ids(command: Command) -> dict[str, str]:
    """The ISO 20022 ids a hold named (what a pacs.002 for the payment carries back)."""
    if command.action is not Action.HOLD_TRANSFER:
        return {}
    return {name: value for name, value in command.details if name in PAYMENT_IDS and value}


def recording_sent(decide: Decide) -> Decide:
    """``decide``, with a ``sent`` state write for each command of the decision."""
    def decide_and_remember(record: Any, ctx: Any, policy: Any) -> Verdict:
        verdict = decide(record, ctx, policy)
        if not verdict.decision.commands:  # the common case costs one attribute test
            return verdict
        writes = tuple(StateWrite(SENT, c.command_id, _ENCODE.encode(c).decode())
                       for c in sent_commands(verdict.decision))
        return msgspec.structs.replace(verdict, writes=verdict.writes + writes)
    return decide_and_remember


def writing_sent(write_state: WriteState, store: FeedbackStore, window_s: int) -> WriteState:
    """The shell's state write, with the ``sent`` writes going to ``FeedbackStore.record_sent`` alongside."""
    decode = msgspec.json.Decoder(SentCommand)

    async def write(writes: Sequence[StateWrite]) -> None:
        mine = [decode.decode(w.member) for w in writes if w.kind == SENT]
        rest = [w for w in writes if w.kind != SENT]
        pending = [store.record_sent(mine, window_s)] if mine else []
        if rest or not mine:
            pending.append(write_state(rest))
        await asyncio.gather(*pending)
    return write
