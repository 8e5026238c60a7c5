"""Standard Webhooks 1.0 signatures: what an institution checks with the specification's libraries.

The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``; each key gives ``v1,`` + base64 of its
HMAC-SHA256, and the ``webhook-signature`` header holds one per key, space-separated (two while a secret is
rotated, so the institution may verify with either).
"""

from __future__ import annotations

import base64
import hashlib
import hmac
from collections.abc import Iterable


def signature(msg_id: str, timestamp: int, body: bytes, keys: Iterable[bytes]) -> str:
    content = f"{msg_id}.{timestamp}.".encode() + body
    return " ".join("v1," + base64.b64encode(hmac.new(key, content, hashlib.sha256).digest()).decode("ascii")
                    for key in keys)


def webhook_headers(msg_id: str, timestamp: int, body: bytes, keys: Iterable[bytes]) -> dict[str, str]:
    return {"content-type": "application/json", "webhook-id": msg_id, "webhook-timestamp": str(timestamp),
            "webhook-signature": signature(msg_id, timestamp, body, keys)}
