"""The job every peer does, the least a correct one can: read an event, normalise the identifiers the
benchmark's generator writes (four ways of writing a Malaysian mobile number, accounts with or without spaces),
look them up in the blocklist, and for a listed one produce the commands Sekat's blocklist path produces.

A call from a listed number: ``BLOCK_CALL`` (confirmed) or ``LABEL_CALL`` (reported), for its operator. A transfer
to or from a listed account, to a listed e-wallet (``payee.wallet``), or from a listed phone: ``HOLD_TRANSFER``,
and ``FREEZE_ACCOUNT`` for a confirmed account, for the account's (or the wallet provider's) bank. An SMS from a
listed number (``BLOCK_SMS`` confirmed, ``LABEL_SMS`` reported) or with a link to a listed domain or one of its
subdomains (``BLOCK_SMS``): one command, the strongest, for its operator. A command is JSON keyed by the identifier, as Sekat's are; what it carries
(event id, action, identifier, institution) is what the benchmark checks.
"""

from __future__ import annotations

import json
import re
import sys
from typing import Any

import orjson

DROP = str.maketrans("", "", " -+()")
SENDER_DROP = str.maketrans("", "", " -._")
LINK = re.compile(r"https?://([^/\s?#]+)", re.I)


def config() -> dict[str, Any]:
    """The peer's settings, the JSON the harness passes as the one argument."""
    return json.loads(sys.argv[1])


def phone_key(written: str) -> str:
    digits = written.translate(DROP)
    if digits[:1] == "0":
        digits = "60" + digits[1:]
    return "phone:+" + digits


def account_key(party: dict[str, Any]) -> str:
    return f"account:{party['bank']}:{party['account'].replace(' ', '')}"


def load_blocklist(path: str) -> dict[str, str]:
    """identifier key -> status, from the harness's file (a ``key<TAB>status`` line each)."""
    listed: dict[str, str] = {}
    with open(path, encoding="ascii") as lines:
        for line in lines:
            key, _, status = line.rstrip("\n").partition("\t")
            listed[key] = status
    return listed


def payee_key(payee: dict[str, Any]) -> str:
    wallet = payee.get("wallet")
    if wallet:
        return f"wallet:{wallet['provider'].upper()}:{wallet['id']}"
    return account_key(payee)


def sender_key(written: str) -> str:
    digits = written.translate(DROP)
    return phone_key(written) if digits.isdigit() else "sender:" + written.upper().translate(SENDER_DROP)


def link_domains(text: str) -> list[str]:
    """``domain:`` keys of every link's host and its parent domains, ``www.`` and case left out."""
    out = []
    for host in LINK.findall(text):
        labels = host.lower().removeprefix("www.").split(".")
        out += ["domain:" + ".".join(labels[i:]) for i in range(len(labels) - 1)]
    return out


def keys(kind: str, event: dict[str, Any]) -> list[str]:
    """The identifiers of an event to look up: a call's caller; a transfer's payee (account or e-wallet), payer
    and payer's phone."""
    if kind == "calls":
        return [phone_key(event["caller"])]
    if kind == "sms":
        return [sender_key(event["sender"]), *link_domains(event.get("text", ""))]
    out = [payee_key(event["payee"]), account_key(event["payer"])]
    if event["payer"].get("phone"):
        out.append(phone_key(event["payer"]["phone"]))
    return out


def commands(kind: str, event: dict[str, Any], key: str, status: str) -> list[dict[str, str]]:
    """The commands for ``event`` naming the listed ``key`` (with its ``status``)."""
    event_id = event["event_id"]
    if kind == "sms":
        action = "LABEL_SMS" if status == "reported" and not key.startswith("domain:") else "BLOCK_SMS"
        return [{"event_id": event_id, "action": action, "key": key, "institution": event["operator"]}]
    if kind == "calls":
        action = "BLOCK_CALL" if status == "confirmed" else "LABEL_CALL"
        return [{"event_id": event_id, "action": action, "key": key, "institution": event["operator"]}]
    bank = event["payee"]["bank"] if key == payee_key(event["payee"]) else event["payer"]["bank"]
    out = [{"event_id": event_id, "action": "HOLD_TRANSFER", "key": key, "institution": bank}]
    if status == "confirmed" and key.startswith("account:"):
        out.append({"event_id": event_id, "action": "FREEZE_ACCOUNT", "key": key, "institution": bank})
    return out


def decide(kind: str, value: bytes, listed: dict[str, str]) -> list[dict[str, str]]:
    """Every command due for one input record (none for a malformed one: a peer skips it)."""
    try:
        event = orjson.loads(value)
        out: list[dict[str, str]] = []
        for key in keys(kind, event):
            status = listed.get(key)
            if status is not None:
                out += commands(kind, event, key, status)
        if kind == "sms" and len(out) > 1:  # one command an SMS, the strongest
            out = [min(out, key=lambda c: c["action"] != "BLOCK_SMS")]
        return out
    except (ValueError, KeyError, TypeError, AttributeError):
        return []
