"""wangiri: one-ring calls (unanswered, a ring or two) to many distinct callees, or from a premium-rate prefix.

The windows themselves (event time, distinct callees) are the shell's; here: which calls they count, and what
the rule makes of their answers.
"""

import pytest

from sekat.errors import PolicyError
from sekat.rules import wangiri
from sekat.rules.outcome import Outcome
from sekat.rules.policy import parse_policy
from tests.unit.events import call, ctx

P = wangiri.Params(min_callees=3, premium_min_callees=2)
CALLER = "phone:+60376543210"
PREMIUM_CALLER = "+979123456789"


def ring(**kw: object) -> object:
    return call(duration=kw.pop("duration", 1.5), answered=kw.pop("answered", False), **kw)  # type: ignore[arg-type]


def test_a_burst_of_one_ring_calls_is_labelled_and_the_caller_reported() -> None:
    [f] = wangiri.evaluate(ring(), ctx(counts={wangiri.ONE_RING: {"c-1": 3}}), P)
    assert f.outcome is Outcome.LABEL and f.code == "one-ring" and f.identifier == CALLER
    assert "3 distinct callees" in f.reason and "rang 1.5 s" in f.reason
    assert f.report is not None and f.report.ttl_days == 7 and "wangiri" in f.report.reason


def test_a_premium_rate_caller_is_blocked_at_its_lower_threshold() -> None:
    [f] = wangiri.evaluate(ring(caller=PREMIUM_CALLER), ctx(counts={wangiri.PREMIUM: {"c-1": 2}}), P)
    assert f.outcome is Outcome.BLOCK and "+979" in f.reason
    labelled = wangiri.Params(min_callees=3, premium_min_callees=2, premium_outcome="LABEL")
    [g] = wangiri.evaluate(ring(caller=PREMIUM_CALLER), ctx(counts={wangiri.PREMIUM: {"c-1": 2}}), labelled)
    assert g.outcome is Outcome.LABEL


def test_only_short_unanswered_calls_that_say_so_are_one_ring() -> None:
    counts = ctx(counts={wangiri.ONE_RING: {"c-1": 5}})
    assert wangiri.evaluate(ring(duration=30), counts, P) == []  # rang long: someone waited for an answer
    assert wangiri.evaluate(ring(answered=True), counts, P) == []  # a conversation
    assert wangiri.evaluate(call(), counts, P) == []  # a record without duration or answered flag
    assert wangiri.evaluate(ring(), ctx(), P) == []  # below the threshold
    [window, premium, _] = wangiri.SPEC.state
    assert window.when(ring(), P) and not window.when(ring(duration=5), P) and not window.when(call(), P)
    assert premium.when(ring(caller=PREMIUM_CALLER), P) and not premium.when(ring(), P)
    assert window.key(ring(caller="999")) is None


def test_the_report_mark_is_read_only_for_calls_that_can_be_one_ring() -> None:
    """The mark that stops a second automatic report is read for a call only when the rule can match it."""
    [_, _, marks] = wangiri.SPEC.state
    assert marks.keys(ring()) == (f"wangiri|{CALLER}",)
    assert marks.keys(ring(duration=30)) == (f"wangiri|{CALLER}",)  # rang long: max_ring_seconds decides
    assert marks.keys(ring(answered=True)) == ()
    assert marks.keys(call()) == ()  # a record without duration or answered flag
    assert marks.keys(ring(caller="999")) == ()


def test_bad_parameters_are_refused_naming_the_field() -> None:
    for params, field in (({"premium_prefixes": ["979"]}, "params.premium_prefixes"),
                          ({"burst_outcome": "HOLD"}, "params.burst_outcome"),
                          ({"max_ring_seconds": 0}, "params.max_ring_seconds")):
        with pytest.raises(PolicyError) as exc:
            parse_policy({"version": "t", "rules": {"wangiri": {"params": params}},
                          "actions": {"transfers": {"BLOCK": [], "HOLD": [], "LABEL": []},
                                      "calls": {"BLOCK": [], "HOLD": [], "LABEL": []}}})
        assert exc.value.field == field, exc.value
