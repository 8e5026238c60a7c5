"""spoofed_caller: a +60 caller ID over an international route is blocked."""

from sekat.rules import spoofed_caller
from sekat.rules.outcome import Outcome
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


def test_attestation_a_is_trusted_even_over_an_international_route() -> None:
    assert spoofed_caller.evaluate(call(network="international", attestation="A"), ctx(), P) == []


def test_attestation_b_only_labels_the_call() -> None:
    [f] = spoofed_caller.evaluate(call(network="international", attestation="B"), ctx(), P)
    assert f.outcome is Outcome.LABEL and "attestation B" in f.reason


def test_attestation_c_or_absent_is_blocked_as_spoofed() -> None:
    [c] = spoofed_caller.evaluate(call(network="international", attestation="C"), ctx(), P)
    [absent] = spoofed_caller.evaluate(call(network="international"), ctx(), P)
    assert c.outcome is absent.outcome is Outcome.BLOCK
    assert "attestation C" in c.reason and "no attestation" in absent.reason


def test_attestation_does_not_matter_on_a_domestic_route() -> None:
    for level in ("A", "B", "C", None):
        assert spoofed_caller.evaluate(call(network="domestic", attestation=level), ctx(), P) == []


def test_trusted_and_label_levels_are_configurable() -> None:
    strict = spoofed_caller.Params(trusted=("A",), label=("A",))  # trusted wins over label
    assert spoofed_caller.evaluate(call(network="international", attestation="A"), ctx(), strict) == []
    wary = spoofed_caller.Params(trusted=("C",), label=("A", "B"))
    assert spoofed_caller.evaluate(call(network="international", attestation="C"), ctx(), wary) == []
    [f] = spoofed_caller.evaluate(call(network="international", attestation="A"), ctx(), wary)
    assert f.outcome is Outcome.LABEL


def test_unknown_attestation_level_in_the_policy_is_refused() -> None:
    import pytest

    from sekat.errors import PolicyError
    from sekat.rules.registry import parse_params

    with pytest.raises(PolicyError, match="params.trusted"):
        parse_params(spoofed_caller.ID, spoofed_caller.Params, {"trusted": ["D"]})
    assert spoofed_caller.VERSION == 2
