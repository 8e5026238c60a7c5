"""call_burst: a caller whose window holds K distinct callees is labelled and reported.

The window itself (event time, distinct callees, any arrival order) is the shell's: see
``tests/integration/test_rule_state.py`` and the property test beside it.
"""

from sekat.rules import call_burst
from sekat.rules.outcome import Outcome
from tests.unit.events import call, ctx

CALLER = "phone:+60376543210"
P = call_burst.Params(min_callees=3, window_seconds=60)


def test_below_the_threshold_does_nothing() -> None:
    assert call_burst.evaluate(call(), ctx(), P) == []
    assert call_burst.evaluate(call(), ctx(counts={"outbound": {"c-2": 3}}), P) == []  # another call's count


def test_at_the_threshold_labels_and_reports_the_caller() -> None:
    [f] = call_burst.evaluate(call(), ctx(counts={"outbound": {"c-1": 3}}), P)
    assert f.outcome is Outcome.LABEL and f.identifier == CALLER and "3 distinct callees" in f.reason
    assert f.report is not None and "3 distinct callees" in f.report.reason and f.report.ttl_days == 7


def test_an_emergency_caller_is_never_a_burst_nor_counted() -> None:
    assert call_burst.evaluate(call(caller="999"), ctx(counts={"outbound": {"c-1": 5}}), P) == []
    [window, _] = call_burst.SPEC.state
    assert window.key(call(caller="999")) is None and window.key(call()) == CALLER
