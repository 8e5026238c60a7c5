"""Audit records of who read or erased whose data (``SEKAT_TOPIC_AUDIT``), without the data itself.

An identifier is named in an audit record by its *subject*: the HMAC-SHA256
of its key (``phone:+60123456789``, ``account:MAYBMYKL:5140123456``) under the
secret ``SEKAT_AUDIT_KEY``. A regulator asking "who read this number, and why"
gets the answer from ``sekat privacy audit-export --phone ...``, which computes
the same subject; the records themselves hold no phone or account number, so
an erasure leaves nothing to erase from them and they can be kept for their own
retention (``SEKAT_RETENTION_AUDIT_DAYS``). The key must stay secret: phone
numbers are few enough that an unkeyed hash would be reversed by trying them all.

The records are the contract's ``Audit`` (``sekat.contract``: ``read``,
``erase``), keyed by their ``audit_id``.
"""

from __future__ import annotations

import hashlib
import hmac
import uuid
from datetime import datetime
from typing import Any

import orjson

from sekat.errors import ConfigError
from sekat.records import iso

AUDIT_NAMESPACE = uuid.UUID("6f1d2c8e-5b7a-5e1c-9a43-5e4b41540024")


def subject(audit_key: str, key: str) -> str:
    """The keyed hash that stands for identifier ``key`` in audit records."""
    if not audit_key:
        raise ConfigError("SEKAT_AUDIT_KEY", "must be set (16+ random characters) to write or search audit records")
    return "hmac-sha256:" + hmac.new(audit_key.encode(), key.encode(), hashlib.sha256).hexdigest()


def _record(action: str, audit_key: str, key: str, by: str, at: datetime, why: str,
            **fields: Any) -> tuple[bytes, bytes]:
    hashed = subject(audit_key, key)
    # Derived from what it records: a record sent again after a timeout is the same record, not a second one.
    audit_id = str(uuid.uuid5(AUDIT_NAMESPACE, f"{action}|{hashed}|{by}|{iso(at)}|{why}"))
    body = {"action": action, "audit_id": audit_id, "at": iso(at), "by": by, "kind": key.partition(":")[0],
            "subject": hashed, **fields}
    return audit_id.encode(), orjson.dumps(body)


def purpose_of(raw: str | None, what: str) -> str:
    """The stated purpose of a read, stripped and cut to 200 characters; ``ValueError`` saying what is needed
    when it is shorter than 3 (the API answers 422 with it, the CLI stops with it)."""
    why = (raw or "").strip()
    if len(why) < 3:
        raise ValueError(f"say why {what} (e.g. a case reference, 3-200 characters); it is recorded in the audit "
                         "trail")
    return why[:200]


def entry_read(audit_key: str, key: str, by: str, at: datetime, purpose: str, found: bool) -> tuple[bytes, bytes]:
    """(record key, value) of an entry read through the agency API."""
    return _record("read", audit_key, key, by, at, purpose, purpose=purpose, found=found)


def erasure(audit_key: str, key: str, by: str, at: datetime, reason: str) -> tuple[bytes, bytes]:
    """(record key, value) of an erasure: the stub that is all Sekat keeps of the identifier."""
    return _record("erase", audit_key, key, by, at, reason, reason=reason)
