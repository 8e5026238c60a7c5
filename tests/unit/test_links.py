"""Linked identifiers (sekat.blocklist.links + lifecycle): a confirmation on any member reaches every member.

The reports agent is simulated by a pure loop: apply a report to its key's entry (``lifecycle.merge``),
publish what ``propagate`` derives, apply those in turn, until nothing new is derived.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

from sekat.blocklist.lifecycle import consolidated, entry_from_history, merge, union
from sekat.blocklist.links import derived_id, propagate
from sekat.records import Entry, Report, Status

T0 = datetime(2026, 11, 1, tzinfo=timezone.utc)
PHONE = "phone:+60123456789"
MULE = "account:CIBBMYKL:8001234567"
MULE2 = "account:MBBEMYKL:514012345678"
PROXY = "phone:+60198765432"


def report(rid: str, key: str, status: str, minutes: int = 0, links: tuple[str, ...] = (), source: str = "PDRM",
           ttl_days: int = 0) -> Report:
    kind, _, rest = key.partition(":")
    bank, value = rest.split(":", 1) if kind == "account" else ("", rest)
    return Report(rid, T0 + timedelta(minutes=minutes), kind, value, Status(status), source, bank, "KL/1",
                  "macau scam", ttl_days, "test", links=links)


class Agent:
    """The index and the topic, as the reports agent sees them: apply, publish derived, repeat."""

    def __init__(self) -> None:
        self.index: dict[str, Entry] = {}
        self.published: list[Report] = []

    def file(self, *reports: Report) -> int:
        queue = list(reports)
        steps = 0
        while queue:
            steps += 1
            assert steps < 1000, "propagation does not terminate"
            r = queue.pop(0)
            before = self.index.get(r.key)
            after = merge(before, r)
            self.index[r.key] = after
            if before is None or after.to_json() != before.to_json():
                derived = propagate(before, after)
                self.published.extend(derived)
                queue.extend(derived)
        return steps

    def status(self, key: str) -> str:
        entry = self.index.get(key)
        return entry.status.value if entry else "absent"


def test_a_confirmed_phone_report_lists_its_linked_account_as_confirmed() -> None:
    agent = Agent()
    agent.file(report("r-1", PHONE, "confirmed", links=(MULE,)))
    assert agent.status(MULE) == "confirmed"
    mule = agent.index[MULE]
    assert [link.key for link in mule.links] == [PHONE]
    assert mule.links[0].via == PHONE and mule.links[0].source == "PDRM"
    assert mule.history[0].report_id == derived_id("r-1", MULE) and mule.history[0].origin == "r-1"
    assert [link.key for link in agent.index[PHONE].links] == [MULE]  # symmetric


def test_a_later_confirmation_of_any_member_reaches_every_member_transitively() -> None:
    agent = Agent()
    agent.file(report("r-1", MULE, "reported", links=(PHONE,), source="CIBBMYKL"))
    agent.file(report("r-2", PHONE, "reported", 1, links=(MULE2,), source="CELCOM"))
    assert {agent.status(k) for k in (MULE, PHONE, MULE2)} == {"reported"}
    agent.file(report("r-3", MULE2, "confirmed", 2))  # no links named: the group is already known
    assert {k: agent.status(k) for k in (MULE, PHONE, MULE2)} == {MULE: "confirmed", PHONE: "confirmed",
                                                                  MULE2: "confirmed"}


def test_a_new_member_joining_a_confirmed_group_is_listed_at_once() -> None:
    agent = Agent()
    agent.file(report("r-1", PHONE, "confirmed", links=(MULE,)))
    agent.file(report("r-2", PROXY, "reported", 5, links=(MULE,), source="MBBEMYKL"))
    assert agent.status(PROXY) == "confirmed"  # the account's confirmation reaches the new member


def test_a_revoked_member_is_not_relisted_by_the_group_nor_relays() -> None:
    agent = Agent()
    agent.file(report("r-1", PHONE, "confirmed", links=(MULE, MULE2)))
    agent.file(report("r-2", MULE, "revoked", 5, source="NSRC"))
    agent.file(report("r-3", PHONE, "confirmed", 10))  # re-confirmed by the police later
    assert agent.status(MULE) == "revoked" and agent.status(MULE2) == "confirmed"
    agent.file(report("r-4", MULE, "confirmed", 20))  # only a confirmation of the account itself re-lists it
    assert agent.status(MULE) == "confirmed"


def test_redelivery_derives_nothing_new_and_ids_are_deterministic() -> None:
    agent = Agent()
    first = report("r-1", PHONE, "confirmed", links=(MULE, MULE2))
    agent.file(first)
    published = list(agent.published)
    assert agent.file(first) == 1 and agent.published == published
    assert {r.report_id for r in published} == {derived_id("r-1", MULE), derived_id("r-1", MULE2)}


def test_expiry_and_ttl_travel_with_the_link() -> None:
    agent = Agent()
    agent.file(report("r-1", PHONE, "confirmed", links=(MULE,), ttl_days=30))
    assert agent.index[MULE].expires_at == agent.index[PHONE].expires_at != ""


def test_the_last_record_of_a_linked_key_rebuilds_its_entry() -> None:
    agent = Agent()
    agent.file(report("r-1", MULE, "reported", links=(PHONE,), source="CIBBMYKL"))
    agent.file(report("r-2", PHONE, "confirmed", 1))
    entry = agent.index[MULE]
    last = consolidated(entry.history[-1], entry)
    rebuilt = entry_from_history(MULE, union(last.history, (last,)))
    assert rebuilt.to_json() == entry.to_json()
    assert Entry.from_json(entry.to_json()).to_json() == entry.to_json()


def test_a_revocation_does_not_travel() -> None:
    agent = Agent()
    agent.file(report("r-1", PHONE, "confirmed", links=(MULE,)))
    agent.file(report("r-2", PHONE, "revoked", 5, source="NSRC"))
    assert agent.status(PHONE) == "revoked" and agent.status(MULE) == "confirmed"


def test_an_unlink_takes_a_gone_identifier_out_of_every_linked_entry_and_nothing_re_adds_it() -> None:
    """PHONE, MULE and MULE2 are one scam's group; PHONE is purged. The unlinks its own links name reach MULE and
    MULE2: neither entry, nor any report it keeps (link groups, origins), nor its summary names PHONE afterwards,
    and they stay linked to each other and listed. Propagation derives nothing from the unlink, a re-delivered
    report that named PHONE does not bring it back, and an unlink applied twice changes nothing."""
    from sekat.blocklist.lifecycle import bounded, known_reports, unlinked
    from sekat.blocklist.links import unlinks
    from sekat.decode.reports import decode_report
    import orjson

    agent = Agent()
    filed = report("r-1", PHONE, "confirmed", links=(MULE, MULE2))
    agent.file(filed, report("r-2", MULE, "confirmed", minutes=5), report("r-3", MULE2, "reported", minutes=6))
    # MULE keeps only its newest report in full: the one naming PHONE is folded into its summary.
    agent.index[MULE] = bounded(MULE, known_reports(agent.index[MULE]), None, keep=1)
    assert agent.index[MULE].summary is not None
    digits = PHONE.split("+")[1]
    assert all(digits in orjson.dumps(agent.index[k].to_json()).decode() for k in (MULE, MULE2))

    sent = unlinks({PHONE: agent.index[PHONE]}, T0 + timedelta(days=40), "purge", "retention purge")
    assert sorted(r.key for r in sent) == sorted([MULE, MULE2])
    for unlink in sent:
        wire = orjson.dumps(unlink.to_json())
        decoded = decode_report(wire, unlink.key.encode())
        assert isinstance(decoded, Report) and decoded.unlinks == (PHONE,)
        before = agent.index[unlink.key]
        after = unlinked(before, decoded.unlinks)
        assert digits not in orjson.dumps(after.to_json()).decode()
        assert (after.status, after.report_count, after.history[-1].report_id) == (
            before.status, before.report_count, before.history[-1].report_id)
        assert propagate(before, after) == []
        assert unlinked(after, decoded.unlinks) is after
        redelivered = before.history[0]
        again = merge(after, redelivered)
        assert digits not in orjson.dumps(again.to_json()).decode()
        # ... nor the record the reports agent writes for it (the entry's own copy, consolidated).
        assert digits not in orjson.dumps(consolidated(redelivered, again).to_json()).decode()
        # The entry's consolidated record (what the reports agent publishes after an unlink) reads back the same.
        record = decode_report(orjson.dumps(consolidated(known_reports(after)[-1], after).to_json()),
                               unlink.key.encode())
        assert isinstance(record, Report) and merge(None, record) == after
        agent.index[unlink.key] = after
    assert [link.key for link in agent.index[MULE].links] == [MULE2]
    assert [link.key for link in agent.index[MULE2].links] == [MULE]
    assert agent.status(MULE) == "confirmed" and agent.status(MULE2) == "confirmed"
