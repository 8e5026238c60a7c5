"""The institutions ``sekat relay`` delivers to, read from ``SEKAT_INSTITUTIONS_FILE`` (YAML or JSON).

The file holds a list under ``institutions``; each entry names the institution as its commands are keyed
(a bank's BIC8, a telco's operator code), its endpoint and one or two signing secrets::

    institutions:
      - id: MBBEMYKL
        url: https://hooks.maybank.example/sekat
        secrets: [whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw]   # two while rotating: the new one first

Loading checks every entry and raises ``ConfigError`` naming ``SEKAT_INSTITUTIONS_FILE`` and the entry at
fault (by position and id, never showing a secret); ``Settings.validate`` loads it, so any process started
with a bad file stops naming it. URLs must be ``https://``; ``http://127.0.0.1`` is
accepted only with ``SEKAT_RELAY_LOOPBACK_HTTP=1`` (tests and local runs).
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass
from urllib.parse import urlsplit

import yaml

from sekat.errors import ConfigError

SETTING = "SEKAT_INSTITUTIONS_FILE"
_ID = re.compile(r"^[A-Z0-9._-]{1,32}$")  # a BIC8 or an operator code, as commands are keyed
SECRET_PREFIX = "whsec_"


@dataclass(frozen=True)
class Institution:
    id: str
    url: str
    keys: tuple[bytes, ...]  # HMAC keys, decoded from the whsec_ secrets; the first signs first

    def __repr__(self) -> str:  # never the keys
        return f"Institution({self.id!r}, {self.url!r}, {len(self.keys)} secret(s))"


def load_institutions(path: str, loopback_http: bool) -> dict[str, Institution]:
    """The institutions of the file at ``path`` by id; raises ConfigError naming the entry at fault."""
    try:
        with open(path, encoding="utf-8") as fh:
            document = yaml.safe_load(fh)
    except OSError as exc:
        raise ConfigError(SETTING, f"cannot read {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ConfigError(SETTING, f"{path} is not YAML or JSON: {exc}") from None
    return parse_institutions(document, loopback_http)


def parse_institutions(document: object, loopback_http: bool) -> dict[str, Institution]:
    entries = document.get("institutions") if isinstance(document, dict) else None
    if not isinstance(entries, list) or not entries:
        raise ConfigError(SETTING, "must hold a non-empty list under 'institutions'")
    found: dict[str, Institution] = {}
    for position, entry in enumerate(entries, 1):
        where = f"entry {position}"
        if not isinstance(entry, dict):
            raise ConfigError(SETTING, f"{where}: must be a mapping with id, url and secrets")
        ident = str(entry.get("id", "")).strip().upper()
        if not _ID.match(ident):
            raise ConfigError(SETTING, f"{where}: id must be a BIC8 or an operator code (1-32 letters, digits, "
                                       f"'.', '_' or '-'), got {str(entry.get('id', ''))[:40]!r}")
        where = f"entry {position} ({ident})"
        if ident in found:
            raise ConfigError(SETTING, f"{where}: the id is listed twice")
        unknown = set(entry) - {"id", "url", "secrets"}
        if unknown:
            raise ConfigError(SETTING, f"{where}: unknown field(s) {', '.join(sorted(map(str, unknown)))}")
        found[ident] = Institution(ident, _url(entry.get("url"), loopback_http, where),
                                   _keys(entry.get("secrets"), where))
    return found


def _url(url: object, loopback_http: bool, where: str) -> str:
    if not isinstance(url, str):
        raise ConfigError(SETTING, f"{where}: url must be a string")
    parts = urlsplit(url)
    if parts.username or parts.password:
        raise ConfigError(SETTING, f"{where}: url must not carry credentials (the signature authenticates)")
    if parts.scheme == "https" and parts.hostname:
        return url
    if parts.scheme == "http" and parts.hostname == "127.0.0.1":
        if loopback_http:
            return url
        raise ConfigError(SETTING, f"{where}: http://127.0.0.1 needs SEKAT_RELAY_LOOPBACK_HTTP=1 (tests and "
                                   "local runs only); use https")
    raise ConfigError(SETTING, f"{where}: url must be https://host/..., got {url[:80]!r}")


def _keys(secrets: object, where: str) -> tuple[bytes, ...]:
    if isinstance(secrets, str):
        secrets = [secrets]
    if not isinstance(secrets, list) or not 1 <= len(secrets) <= 2:
        raise ConfigError(SETTING, f"{where}: secrets must be one or two whsec_ secrets (two while rotating)")
    keys = []
    for n, secret in enumerate(secrets, 1):
        if not isinstance(secret, str) or not secret.startswith(SECRET_PREFIX):
            raise ConfigError(SETTING, f"{where}: secret {n} must start with {SECRET_PREFIX}")
        try:
            key = base64.b64decode(secret[len(SECRET_PREFIX):], validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(SETTING, f"{where}: secret {n} is not whsec_ followed by base64") from None
        if not 24 <= len(key) <= 64:
            raise ConfigError(SETTING, f"{where}: secret {n} must decode to 24-64 bytes, got {len(key)}")
        keys.append(key)
    return tuple(keys)
