"""Bank transfers: decode the Transfer contract (DESIGN.md)."""

from __future__ import annotations

from streams import decode as d
from sekat.records import Party, Proxy, Rejection, Transfer


def decode_transfer(raw: bytes | None, max_bytes: int = 65536, region: str = "MY") -> Transfer | Rejection:
    try:
        data = d.load_object(raw, max_bytes)
        event_id = d.text(data, "event_id", "event_id", max_len=128)
        occurred_at = d.timestamp(data, "occurred_at")
        transfer_id = d.text(data, "transfer_id", "transfer_id", max_len=128)
        amount = d.amount(data, "amount")
        payer_raw = d.obj(data, "payer", "payer")
        payee_raw = d.obj(data, "payee", "payee")
        assert payer_raw is not None and payee_raw is not None
        payer_bank = d.bank(payer_raw, "bank", "payer.bank")
        payer = Party(payer_bank, d.account(payer_bank, payer_raw, "account", "payer.account"),
                      d.phone(payer_raw, "phone", "payer.phone", region, required=False))
        payee_bank = d.bank(payee_raw, "bank", "payee.bank")
        payee = Party(payee_bank, d.account(payee_bank, payee_raw, "account", "payee.account", required=False))
        proxy = None
        proxy_raw = d.obj(payee_raw, "proxy", "payee.proxy", required=False)
        if proxy_raw is not None:
            kind = d.text(proxy_raw, "type", "payee.proxy.type", max_len=32)
            value = d.text(proxy_raw, "value", "payee.proxy.value", max_len=64)
            assert kind is not None and value is not None
            kind = kind.upper()
            mobile = d.phone(proxy_raw, "value", "payee.proxy.value", region) if kind == "MOBILE" else None
            proxy = Proxy(kind, value, mobile)
        if payee.account is None and proxy is None:
            raise d.Bad("missing_field", "payee.account", "payee needs an account or a proxy")
        assert event_id is not None and transfer_id is not None
        return Transfer(
            event_id=event_id, occurred_at=occurred_at, transfer_id=transfer_id, amount=amount,
            payer=payer, payee=payee, payee_proxy=proxy,
            channel=d.text(data, "channel", "channel", required=False, max_len=32),
            currency=d.text(data, "currency", "currency", required=False, max_len=3),
        )
    except d.Bad as bad:
        return bad.rejection
