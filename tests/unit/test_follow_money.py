"""follow_money: money leaving a listed or just-held account is followed hop by hop, within a window."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import pytest
import yaml

from sekat.records import Action, Entry, Status
from sekat.rules import engine, follow_money
from sekat.rules.outcome import Outcome
from sekat.rules.policy import DEFAULT_POLICY_FILE, parse_policy
from sekat.rules.follow_money import TrailMark
from sekat.rules.registry import Finding
from tests.unit.events import T0, ctx, ms, transfer

P = follow_money.Params(depth=2, window_minutes=10)
A = "account:MBBEMYKL:514012345678"  # the payer of events.transfer()
B = "account:CIBBMYKL:8001234567"  # its payee
ACTIONS = yaml.safe_load(DEFAULT_POLICY_FILE.read_text())["actions"]
POLICY = parse_policy({"version": "t", "rules": {"follow_money": {"params": {"depth": 2, "window_minutes": 10}}},
                       "actions": ACTIONS})


def listed(key: str, source: str = "PDRM", status: Status = Status.CONFIRMED) -> Entry:
    return Entry(key=key, status=status, source=source, case_ref="KL/2026/7", sources=(source,))


def mark(hop: int, minutes_before: float, amount: str = "1000.00", parent: str = "account:X:1",
         currency: str = "") -> TrailMark:
    return TrailMark(hop, ms(T0 - timedelta(minutes=minutes_before)), Decimal(amount), currency, parent, "t-0")


def test_money_leaving_a_listed_account_reports_and_liens_the_payee_at_hop_one() -> None:
    [f] = follow_money.evaluate(transfer(amount="700.00"), ctx(lookups={A: listed(A)}), P)
    assert f.outcome is Outcome.HOLD and f.code == "follow-the-money" and f.identifier == B
    assert f.amount == Decimal("700.00") and f.report is not None
    assert f.report.source == "sekat-follow"
    assert A in f.report.reason and "hop 1" in f.report.reason and "t-1" in f.report.reason  # cites the parent


def test_an_unlisted_unmarked_payer_is_not_followed() -> None:
    assert follow_money.evaluate(transfer(), ctx(), P) == []
    revoked = Entry(key=A, status=Status.REVOKED, source="PDRM", sources=("PDRM",))
    assert follow_money.evaluate(transfer(), ctx(lookups={A: revoked}), P) == []


def test_a_payer_marked_on_the_trail_is_followed_within_the_window_only() -> None:
    inside = follow_money.evaluate(transfer(), ctx(trail={A: mark(1, 9)}), P)
    assert [f.identifier for f in inside] == [B] and inside[0].report is not None
    assert "hop 2" in inside[0].report.reason
    assert follow_money.evaluate(transfer(), ctx(trail={A: mark(1, 11)}), P) == []  # left after the window
    assert follow_money.evaluate(transfer(at=T0 - timedelta(minutes=5)), ctx(trail={A: mark(1, 1)}), P) == []


def test_at_the_depth_the_transfer_is_held_but_the_payee_is_not_reported() -> None:
    [f] = follow_money.evaluate(transfer(), ctx(trail={A: mark(2, 1)}), P)
    assert f.outcome is Outcome.HOLD and f.identifier == A and f.report is None and f.amount is None


def test_an_entry_this_rule_filed_is_not_an_origin_after_its_window() -> None:
    mine = listed(A, source="SEKAT-FOLLOW", status=Status.REPORTED)
    assert follow_money.evaluate(transfer(), ctx(lookups={A: mine}), P) == []
    assert follow_money.evaluate(transfer(), ctx(lookups={A: mine}, trail={A: mark(1, 2)}), P)


def test_the_disputed_amount_is_capped_by_what_the_payer_received() -> None:
    [f] = follow_money.evaluate(transfer(amount="5000.00"), ctx(trail={A: mark(1, 1, amount="1200.00")}), P)
    assert f.amount == Decimal("1200.00")
    [g] = follow_money.evaluate(transfer(amount="300.00"), ctx(trail={A: mark(1, 1, amount="1200.00")}), P)
    assert g.amount == Decimal("300.00")
    [other] = follow_money.evaluate(transfer(amount="5000.00"),
                                    ctx(trail={A: mark(1, 1, amount="1200.00", currency="SGD")}), P)
    assert other.amount == Decimal("5000.00")  # another currency: no cap


def test_a_payee_reached_before_is_held_but_not_reported_again() -> None:
    [f] = follow_money.evaluate(transfer(), ctx(lookups={A: listed(A)}, trail={B: mark(1, 1)}), P)
    assert f.identifier == B and f.report is None


def test_marks_put_the_reached_payee_one_hop_further_and_a_held_payee_at_hop_zero() -> None:
    t = transfer(amount="800.00")
    c = ctx(trail={A: mark(1, 2)})
    [f] = follow_money.evaluate(t, c, P)
    [w] = follow_money.marks(t, c, P, [(follow_money.ID, f)])
    reached = TrailMark.decode(w.member)
    assert w.kind == "trail" and w.key == B and w.ttl_s >= 20 * 60
    assert reached == TrailMark(2, ms(T0), Decimal("800.00"), "", A, "t-1")
    held = Finding(Outcome.HOLD, "mule-inflow", "many payers", identifier=B)
    [h] = follow_money.marks(t, ctx(), P, [("mule_inflow", held)])
    assert TrailMark.decode(h.member).hop == 0  # type: ignore[union-attr]
    labelled = Finding(Outcome.LABEL, "x", "y", identifier=B)
    assert follow_money.marks(t, ctx(), P, [("mule_inflow", labelled)]) == []
    assert follow_money.marks(t, ctx(trail={B: mark(0, 1)}), P, [("mule_inflow", held)]) == []  # marked already


def test_engine_holds_the_transfer_liens_the_payee_and_files_a_follow_report() -> None:
    verdict = engine.decide_transfer(transfer(amount="700.00"), ctx(lookups={A: listed(A)}), POLICY)
    d = verdict.decision
    commands = {c.action: c for c in d.commands}
    assert set(commands) == {Action.HOLD_TRANSFER, Action.HOLD_AMOUNT}
    lien = commands[Action.HOLD_AMOUNT].to_json()
    assert (lien["bank"], lien["account"], lien["amount"], lien["rule"]) == \
        ("CIBBMYKL", "CIBBMYKL:8001234567", "700.00", "follow-the-money")
    assert lien["rules"] == ["follow_money@1"] and lien["transfer_id"] == "DNt-1"
    [report] = d.reports
    assert (report.source, report.status, report.case_ref) == ("sekat-follow", Status.REPORTED, "follow/t-1")
    assert (report.kind, report.bank, report.value) == ("account", "CIBBMYKL", "8001234567")
    assert [w.kind for w in verdict.writes].count("trail") == 1


def test_without_hold_amount_in_the_actions_table_no_lien_is_sent() -> None:
    actions = {**ACTIONS, "transfers": {**ACTIONS["transfers"], "HOLD": ["HOLD_TRANSFER"]}}
    policy = parse_policy({"version": "t", "rules": {"follow_money": {}}, "actions": actions})
    d = engine.decide_transfer(transfer(), ctx(lookups={A: listed(A)}), policy).decision
    assert [c.action for c in d.commands] == [Action.HOLD_TRANSFER]


@pytest.mark.parametrize("params,field", [({"depth": 0}, "params.depth"), ({"window_minutes": 0},
                                                                             "params.window_minutes")])
def test_bad_parameters_are_refused(params: dict, field: str) -> None:
    from sekat.errors import PolicyError

    with pytest.raises(PolicyError) as exc:
        parse_policy({"version": "t", "rules": {"follow_money": {"params": params}}, "actions": ACTIONS})
    assert exc.value.field == field


def test_a_trail_mark_survives_its_encoding_and_a_foreign_one_is_ignored() -> None:
    m = TrailMark(1, 1700000000000, Decimal("12.50"), "MYR", A, "t-9")
    assert TrailMark.decode(m.encode()) == m
    assert TrailMark.decode("not a mark") is None and TrailMark.decode("x|1|2|MYR|p|e") is None


def test_a_lien_names_the_listing_the_trail_started_from_and_the_payee_as_its_causes() -> None:
    [hop1] = follow_money.evaluate(transfer(), ctx(lookups={A: listed(A)}), P)
    assert hop1.causes == (A, B)
    root = "account:PBBEMYKL:1234567890"
    far = TrailMark(1, ms(T0 - timedelta(minutes=2)), Decimal("900.00"), "", "account:X:1", "t-0", root)
    t = transfer()
    c = ctx(trail={A: far})
    [hop2] = follow_money.evaluate(t, c, P)
    assert hop2.causes == (root, B)  # two hops on, the lien still ends with the listing of hop 0
    [w] = follow_money.marks(t, c, P, [(follow_money.ID, hop2)])
    assert TrailMark.decode(w.member).root == root  # type: ignore[union-attr]
    assert TrailMark.decode("1|1700000000000|12.50|MYR|p|e").root == ""  # type: ignore[union-attr]
