"""Release commands (release/sweep.py): who acted on an entry, and what each of them is sent when it ends."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sekat.release.sweep import ACTED, recording_who_acted, release, release_ended_lien, who_acted
import yaml
from sekat.rules.engine import Verdict, decide_transfer
from sekat.rules.policy import DEFAULT_POLICY_FILE, parse_policy

from sekat.records import Action, Command, Decision, Entry, Match, Status
from tests.unit.events import ctx, transfer

NOW = datetime(2026, 11, 29, 8, 0, tzinfo=timezone.utc)
MULE = "account:CIBBMYKL:8001234567"
PHONE = "phone:+60123456789"


def command(action: Action, institution: str, target: str) -> Command:
    return Command(action, institution, target, "t-1", "payee-on-blocklist", ("why",), NOW)


def decision(matches: tuple[Match, ...], commands: tuple[Command, ...]) -> Decision:
    return Decision("t-1", "transfers", "BLOCK", NOW, matches=matches, commands=commands)


LISTED_PAYEE = Match("blocklist_match", 3, "payee account confirmed", MULE, "confirmed", "PDRM")
LISTED_PROXY = Match("blocklist_match", 3, "payee proxy confirmed", PHONE, "confirmed", "PDRM")


def test_a_hold_is_remembered_for_every_listed_identifier_and_a_freeze_for_its_own_account() -> None:
    found = who_acted(decision((LISTED_PAYEE, LISTED_PROXY),
                          (command(Action.HOLD_TRANSFER, "MBBEMYKL", "5140"),
                           command(Action.FREEZE_ACCOUNT, "CIBBMYKL", "CIBBMYKL:8001234567"))))
    assert found == [(MULE, "RELEASE_ACCOUNT|MBBEMYKL"), (PHONE, "RELEASE_ACCOUNT|MBBEMYKL"),
                     (MULE, "RELEASE_ACCOUNT|CIBBMYKL")]


def test_calls_are_remembered_as_unblock_and_behaviour_rules_or_shadow_matches_are_not() -> None:
    caller = Match("blocklist_match", 3, "caller confirmed", PHONE, "confirmed", "PDRM")
    assert who_acted(decision((caller,), (command(Action.BLOCK_CALL, "CELCOM", "+60123456789"),))) == [
        (PHONE, "UNBLOCK_NUMBER|CELCOM")]
    burst = Match("call_burst", 1, "burst", PHONE)  # no blocklist entry behind it
    assert who_acted(decision((burst,), (command(Action.LABEL_CALL, "CELCOM", "+60123456789"),))) == []
    shadow = Match("blocklist_match", 3, "caller confirmed", PHONE, "confirmed", mode="shadow")
    assert who_acted(decision((shadow,), (command(Action.BLOCK_CALL, "CELCOM", "+60123456789"),))) == []


def test_recording_who_acted_adds_acted_writes_only_when_a_listed_entry_made_someone_act() -> None:
    with_command = decision((LISTED_PAYEE,), (command(Action.FREEZE_ACCOUNT, "CIBBMYKL", "CIBBMYKL:8001234567"),))
    decide = recording_who_acted(lambda record, ctx, policy: Verdict(record))
    assert [(w.kind, w.key, w.member) for w in decide(with_command, None, None).writes] == [
        (ACTED, MULE, "RELEASE_ACCOUNT|CIBBMYKL")]
    quiet = Decision("t-2", "transfers", "ALLOW", NOW)
    assert decide(quiet, None, None).writes == ()


def test_a_revocation_releases_each_institution_once_with_deterministic_ids() -> None:
    entry = Entry(MULE, Status.REVOKED, "NSRC", "appeal upheld", "NSRC/A/1", "r-9")
    commands, audit = release(entry, ["RELEASE_ACCOUNT|CIBBMYKL", "RELEASE_ACCOUNT|MBBEMYKL", "bogus"], NOW)
    bodies = [c.to_json() for c in commands]
    assert [(b["action"], b["bank"], b["account"]) for b in bodies] == [
        ("RELEASE_ACCOUNT", "CIBBMYKL", "CIBBMYKL:8001234567"), ("RELEASE_ACCOUNT", "MBBEMYKL", "CIBBMYKL:8001234567")]
    assert all(b["released"] == "revoked" and b["report_id"] == "r-9" and b["identifier"] == MULE for b in bodies)
    assert bodies[0]["reasons"] == ["account revoked by NSRC (NSRC/A/1): appeal upheld"]
    again, _ = release(entry, ["RELEASE_ACCOUNT|CIBBMYKL", "RELEASE_ACCOUNT|MBBEMYKL"], NOW)
    assert [c.command_id for c in again] == [c.command_id for c in commands] == audit["command_ids"]
    assert len(set(audit["command_ids"])) == 2 and audit["event_id"] == "release:r-9"


def test_an_expiry_unblocks_the_number_and_a_later_expiry_gets_new_ids() -> None:
    first = Entry(PHONE, Status.CONFIRMED, "PDRM", report_id="r-1", expires_at="2026-11-29T07:00:00.000Z")
    [unblock], audit = release(first, ["UNBLOCK_NUMBER|CELCOM"], NOW)
    assert (unblock.to_json()["operator"], unblock.to_json()["caller"], audit["released"]) == (
        "CELCOM", "+60123456789", "expired")
    renewed = Entry(PHONE, Status.CONFIRMED, "PDRM", report_id="r-1", expires_at="2026-12-29T07:00:00.000Z")
    [later], _ = release(renewed, ["UNBLOCK_NUMBER|CELCOM"], NOW)
    assert later.command_id != unblock.command_id


def _follow_decision() -> Decision:
    """The shipped policy's decision on money leaving the confirmed mule A (MBBEMYKL) to B (CIBBMYKL)."""
    policy = parse_policy(yaml.safe_load(DEFAULT_POLICY_FILE.read_text()))
    origin = Entry(PAYER, Status.CONFIRMED, "PDRM", "mule", "KL/2026/7", "r-1", sources=("PDRM",))
    return decide_transfer(transfer(amount="700.00"), ctx(lookups={PAYER: origin}), policy).decision


PAYER = "account:MBBEMYKL:514012345678"  # events.transfer()'s payer
LIENED = "CIBBMYKL:8001234567"  # its payee


def test_every_hold_carries_hold_until_from_the_policy() -> None:
    """Counted from when the transfer happened, so that a redelivered transfer's commands are the same."""
    made = {c.action: c.to_json() for c in _follow_decision().commands}
    happened = transfer(amount="700.00").occurred_at
    assert datetime.fromisoformat(made[Action.HOLD_TRANSFER]["hold_until"]) - happened == timedelta(hours=24)
    assert datetime.fromisoformat(made[Action.HOLD_AMOUNT]["hold_until"]) - happened == timedelta(hours=72)
    assert made[Action.HOLD_AMOUNT]["account"] == LIENED


def test_a_follow_the_money_lien_is_released_naming_the_liened_account_when_its_cause_is_revoked() -> None:
    decision = _follow_decision()
    [lien] = [c for c in decision.commands if c.action is Action.HOLD_AMOUNT]
    found = who_acted(decision)
    lien_keys = sorted(k for k, m in found if m.startswith(f"RELEASE_ACCOUNT|CIBBMYKL|{LIENED}|"))
    assert lien_keys == sorted([PAYER, f"account:{LIENED}"])  # the listing it followed and its own follow entry
    members = [m for k, m in found if k == PAYER]
    revoked = Entry(PAYER, Status.REVOKED, "PDRM", "wrong account", "KL/2026/7", "r-2")
    commands, audit = release(revoked, members, NOW)
    released = {(c.institution, c.target) for c in commands if c.action is Action.RELEASE_ACCOUNT}
    assert ("CIBBMYKL", LIENED) in released  # the liened account, to its bank
    assert ("CIBBMYKL", PAYER.partition(":")[2]) not in released  # never the listed payer's account there
    assert lien.to_json()["hold_until"]
    assert audit["identifier"] == PAYER and audit["released"] == "revoked"


def test_a_lien_whose_hold_ended_is_released_once_by_one_id_under_every_entry() -> None:
    member = f"RELEASE_ACCOUNT|CIBBMYKL|{LIENED}|{int(NOW.timestamp())}"
    command, audit = release_ended_lien(member, NOW)
    body = command.to_json()
    assert (body["action"], body["bank"], body["account"], body["released"], body["identifier"]) == (
        "RELEASE_ACCOUNT", "CIBBMYKL", LIENED, "hold_ended", f"account:{LIENED}")
    again, _ = release_ended_lien(member, NOW + timedelta(minutes=3))
    assert again.command_id == command.command_id == audit["command_ids"][0]
    assert release_ended_lien("RELEASE_ACCOUNT|CIBBMYKL", NOW) is None
