"""spoofed_caller: a +60 caller ID over an international route is blocked."""

from rules import spoofed_caller
from rules.outcome import Outcome
from tests.unit.events import call, ctx

P = spoofed_caller.Params()


def test_domestic_number_over_international_network_is_blocked() -> None:
    [f] = spoofed_caller.evaluate(call(network="international"), ctx(), P)
    assert f.outcome is Outcome.BLOCK and f.code == "spoofed-caller-id" and f.identifier == "phone:+60376543210"
    assert "c-1" in f.reason and "+60376543210" not in f.reason  # cites the call, masks the number


def test_domestic_number_over_domestic_network_is_fine() -> None:
    assert spoofed_caller.evaluate(call(network="domestic"), ctx(), P) == []
    assert spoofed_caller.evaluate(call(network=None), ctx(), P) == []


def test_foreign_number_over_international_network_is_fine() -> None:
    assert spoofed_caller.evaluate(call(caller="+6581234567", network="international"), ctx(), P) == []


def test_network_names_are_configurable_and_case_blind() -> None:
    params = spoofed_caller.Params(international_networks=("IGW", "international"))
    assert spoofed_caller.evaluate(call(network="igw"), ctx(), params)
