"""mule_inflow: a payee whose window holds N distinct payers is held and reported.

The window itself (event time, distinct payers, any arrival order) is the shell's: see
``tests/integration/test_rule_state.py`` and the property test beside it.
"""

from sekat.rules import mule_inflow
from sekat.rules.outcome import Outcome
from tests.unit.events import ctx, transfer

PAYEE = "account:CIBBMYKL:8001234567"
P = mule_inflow.Params(min_payers=3, window_minutes=10)


def test_below_the_threshold_does_nothing() -> None:
    assert mule_inflow.evaluate(transfer(), ctx(), P) == []


def test_at_the_threshold_holds_and_reports_the_payee_account() -> None:
    [f] = mule_inflow.evaluate(transfer(), ctx(counts={"inflow": {"t-1": 3}}), P)
    assert f.outcome is Outcome.HOLD and f.code == "mule-inflow" and f.identifier == PAYEE
    assert "3 distinct payers within 10 min" in f.reason and "t-1" in f.reason
    assert f.report is not None and "3 distinct payers" in f.report.reason and f.report.ttl_days == 30


def test_a_proxy_only_payee_is_counted_and_reported_by_its_mobile_number() -> None:
    key = "phone:+60123456789"
    proxied = transfer(payee=None, proxy="012-345 6789")
    [window, _] = mule_inflow.SPEC.state
    assert window.key(proxied) == key and window.party(proxied) == "account:MBBEMYKL:514012345678"
    [f] = mule_inflow.evaluate(proxied, ctx(counts={"inflow": {"t-1": 3}}), P)
    assert f.identifier == key and f.report is not None


def test_an_e_wallet_or_hashed_proxy_payee_is_counted_and_reported_by_its_key() -> None:
    import orjson

    from sekat.decode.transfers import decode_transfer
    from sekat.identifiers import ProxyHasher

    hasher = ProxyHasher("k" * 40)
    base = {"event_id": "t-1", "occurred_at": "2026-11-28T10:15:00Z", "transfer_id": "DN1", "amount": "50",
            "payer": {"bank": "MBBEMYKL", "account": "514012345678"}}
    for payee, key in (({"bank": "TNGDMYNB", "wallet": {"provider": "TNG", "id": "0123456789"}},
                        "wallet:TNG:0123456789"),
                       ({"bank": "CIBBMYKL", "proxy": {"type": "NRIC", "value": "900101145678"}},
                        hasher.proxy("NRIC", "900101145678").key)):
        event = decode_transfer(orjson.dumps({**base, "payee": payee}), hasher=hasher)
        [window, _] = mule_inflow.SPEC.state
        assert window.key(event) == key
        [f] = mule_inflow.evaluate(event, ctx(counts={"inflow": {"t-1": 3}}), P)
        assert f.identifier == key and f.report is not None
