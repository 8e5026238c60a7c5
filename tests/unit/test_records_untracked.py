"""The events a worker decodes for every record are left out of the garbage collector's tracking: they hold only
immutable values, and the collector would otherwise walk thousands of them a second."""

from __future__ import annotations

import gc

import orjson

from sekat.decode.calls import decode_call
from sekat.decode.sms import decode_sms
from sekat.decode.transfers import decode_transfer
from sekat.records import Call, Sms, Transfer


def test_decoded_events_and_their_parties_are_not_tracked_by_the_collector() -> None:
    transfer = decode_transfer(orjson.dumps({
        "event_id": "t-1", "occurred_at": "2026-11-28T10:14:00Z", "transfer_id": "DN1", "amount": "10",
        "payer": {"bank": "MBBEMYKL", "account": "5140 1234 5678", "phone": "0123456789"},
        "payee": {"bank": "CIBBMYKL", "account": "8001234567", "proxy": {"type": "MOBILE", "value": "0198765432"}}}))
    call = decode_call(orjson.dumps({"event_id": "c-1", "occurred_at": "2026-11-28T10:14:00Z", "call_id": "x1",
                                     "operator": "CELCOM", "caller": "+60376543210", "callee": "0123456789"}))
    sms = decode_sms(orjson.dumps({"event_id": "s-1", "occurred_at": "2026-11-28T10:14:00Z", "sms_id": "m1",
                                   "operator": "MAXIS", "sender": "MYBANK", "recipient": "0123456789",
                                   "text": "Pay at https://bayar.example.com.my/x"}))
    assert isinstance(transfer, Transfer) and isinstance(call, Call) and isinstance(sms, Sms)
    assert transfer.payee_proxy is not None
    for record in (transfer, transfer.payer, transfer.payee, transfer.payee_proxy, call, sms):
        assert not gc.is_tracked(record), type(record).__name__
