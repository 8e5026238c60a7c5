"""Bank transfers: decode the Transfer contract (docs/contract.md).

Two decoders, one answer. ``_decode_fast`` is the happy path: msgspec decodes
straight into typed structs (types and lengths checked in C), identifiers go
through the cached normalisers, and anything it does not like (a missing field,
a wrong type, a bad identifier) makes it give up. ``_decode_precise`` then
reads the event's JSON object field by field and says exactly what is wrong,
for the dead letter. So a valid event costs the fast path only, and a rejection
costs both. tests/unit/test_decode_fast.py holds the two to the same answer on
generated events; the one permitted difference is that the fast path never
looks inside fields the contract ignores, so an ignored field holding JSON
that orjson refuses (a number out of double range, nesting deeper than 1024)
does not make the event invalid.
"""

from __future__ import annotations

from decimal import Decimal, InvalidOperation
from typing import Annotated, Any

import msgspec

from sekat.decode import fields
from sekat.decode.fields import Bad
from sekat.errors import InvalidIdentifier
from sekat.identifiers import (NO_PROXY_HASHER, ProxyHasher, normalise_account, normalise_bank, normalise_phone,
                               normalise_wallet)
from sekat.records import Party, Proxy, Rejection, Transfer


def decode_transfer(raw: bytes | None, max_bytes: int = 65536, region: str = "MY",
                    hasher: ProxyHasher = NO_PROXY_HASHER) -> Transfer | Rejection:
    """``hasher`` turns an NRIC, passport or BRN proxy into its keyed hash (``sekat.identifiers.ProxyHasher``).

    The fast path's answer when it takes the event, else the precise path's (called straight from here: this
    runs once per event, and each call between it and ``_decode_fast`` cost ~0.1-0.2 µs)."""
    if raw and len(raw) <= max_bytes:
        found = _decode_fast(raw, region, hasher)
        if found is not None:
            return found
    return fields.decode_object(raw, max_bytes, lambda data: _decode_precise(data, region, hasher))


# -- the happy path -----------------------------------------------------------------------------------------
# Lengths as in the precise decoder (fields.text's max_len per field); blank strings are checked below.
# Strings and each other only, never in a cycle: untracked by the garbage collector (``gc=False``).
_Id, _Short = fields.Id, fields.Short


class _Proxy(msgspec.Struct, gc=False):
    type: _Short
    value: Annotated[str, msgspec.Meta(max_length=64)]


class _Payer(msgspec.Struct, gc=False):
    bank: Annotated[str, msgspec.Meta(max_length=16)]
    account: Annotated[str, msgspec.Meta(max_length=64)]
    phone: _Short | None = None


class _Wallet(msgspec.Struct, gc=False):
    provider: Annotated[str, msgspec.Meta(max_length=16)]
    id: Annotated[str, msgspec.Meta(max_length=64)]


class _Payee(msgspec.Struct, gc=False):
    bank: Annotated[str, msgspec.Meta(max_length=16)]
    account: Annotated[str, msgspec.Meta(max_length=64)] | None = None
    proxy: _Proxy | None = None
    wallet: _Wallet | None = None


class _Transfer(msgspec.Struct, gc=False):
    event_id: _Id
    occurred_at: Annotated[str, msgspec.Meta(max_length=64)]
    transfer_id: _Id
    amount: Annotated[str, msgspec.Meta(max_length=64)]
    payer: _Payer
    payee: _Payee
    channel: _Short | None = None
    currency: Annotated[str, msgspec.Meta(max_length=3)] | None = None


_WIRE = msgspec.json.Decoder(_Transfer)


def _decode_fast(raw: bytes, region: str, hasher: ProxyHasher = NO_PROXY_HASHER) -> Transfer | None:
    """The Transfer for a valid event, or None: then the precise decoder decides (and explains).

    Only the fields kept as written are checked for blanks here; a blank bank, account or phone is refused by
    its normaliser (``InvalidIdentifier``)."""
    blank = fields.blank
    try:
        w = _WIRE.decode(raw)
        payer, payee = w.payer, w.payee
        if (blank(w.event_id) or blank(w.transfer_id) or (w.channel is not None and blank(w.channel))
                or (w.currency is not None and blank(w.currency))):
            return None
        occurred_at = fields.iso_time(w.occurred_at)
        if not w.amount.isascii():  # Decimal() reads Arabic-Indic and full-width digits too
            return None
        amount = Decimal(w.amount.strip())
        if not amount.is_finite() or amount <= 0 or amount > fields.MAX_AMOUNT:
            return None
        payer_party = Party(normalise_bank(payer.bank), normalise_account(payer.bank, payer.account),
                            None if payer.phone is None else normalise_phone(payer.phone, region))
        payee_account = None
        if payee.account is not None:
            payee_account = normalise_account(payee.bank, payee.account)
        proxy = None
        if payee.proxy is not None:
            p = payee.proxy
            if blank(p.type) or blank(p.value):
                return None
            kind = p.type.upper()
            if kind == "MOBILE":
                proxy = Proxy(kind, p.value, normalise_phone(p.value, region))
            else:
                proxy = fields.as_proxy(kind, p.value, "payee.proxy.value", region, hasher)
        wallet = None
        if payee.wallet is not None:
            wallet = normalise_wallet(payee.wallet.provider, payee.wallet.id)
        if payee_account is None and proxy is None and wallet is None:
            return None
        return Transfer(event_id=w.event_id, occurred_at=occurred_at, transfer_id=w.transfer_id, amount=amount,
                        payer=payer_party, payee=Party(normalise_bank(payee.bank), payee_account, wallet=wallet),
                        payee_proxy=proxy, channel=w.channel, currency=w.currency)
    except (msgspec.DecodeError, ValueError, InvalidOperation, InvalidIdentifier, fields.Bad):
        # msgspec.ValidationError is a DecodeError; fromisoformat raises ValueError.
        return None


# -- the precise path: every rejection explained ------------------------------------------------------------
def _decode_precise(data: dict[str, Any], region: str, hasher: ProxyHasher = NO_PROXY_HASHER) -> Transfer:
    event_id, occurred_at = fields.event_id_and_time(data)
    transfer_id = fields.text(data, "transfer_id", max_len=128)
    amount = fields.amount(data, "amount")
    payer_raw = fields.obj(data, "payer")
    payee_raw = fields.obj(data, "payee")
    assert transfer_id is not None and payer_raw is not None and payee_raw is not None
    payer_bank = fields.bank(payer_raw, "bank", "payer.bank")
    payer = Party(payer_bank, fields.account(payer_bank, payer_raw, "account", "payer.account"),
                  fields.phone(payer_raw, "phone", "payer.phone", region, required=False))
    payee_bank = fields.bank(payee_raw, "bank", "payee.bank")
    wallet = None
    wallet_raw = fields.obj(payee_raw, "wallet", "payee.wallet", required=False)
    if wallet_raw is not None:
        provider = fields.text(wallet_raw, "provider", "payee.wallet.provider", max_len=16)
        wallet_id = fields.text(wallet_raw, "id", "payee.wallet.id", max_len=64)
        assert provider is not None and wallet_id is not None
        wallet = fields.as_wallet(provider, wallet_id, "payee.wallet")
    payee = Party(payee_bank, fields.account(payee_bank, payee_raw, "account", "payee.account", required=False),
                  wallet=wallet)
    proxy = None
    proxy_raw = fields.obj(payee_raw, "proxy", "payee.proxy", required=False)
    if proxy_raw is not None:
        kind = fields.text(proxy_raw, "type", "payee.proxy.type", max_len=32)
        value = fields.text(proxy_raw, "value", "payee.proxy.value", max_len=64)
        assert kind is not None and value is not None
        kind = kind.upper()
        if kind == "MOBILE":
            proxy = Proxy(kind, value, fields.phone(proxy_raw, "value", "payee.proxy.value", region))
        else:
            proxy = fields.as_proxy(kind, value, "payee.proxy.value", region, hasher)
    if payee.account is None and proxy is None and wallet is None:
        raise Bad("missing_field", "payee.account", "payee needs an account, a proxy or a wallet")
    return Transfer(
        event_id=event_id, occurred_at=occurred_at, transfer_id=transfer_id, amount=amount, payer=payer, payee=payee,
        payee_proxy=proxy, channel=fields.text(data, "channel", required=False, max_len=32),
        currency=fields.text(data, "currency", required=False, max_len=3),
    )
