"""Identifiers: the only way a phone number or account reaches a lookup.

A raw string becomes a ``PhoneNumber`` or ``AccountId`` through one validating
constructor each, so ``012-345 6789``, ``+60 12 345 6789`` and ``60123456789``
are one number, and ``5140 1234-5678`` at ``MBBEMYKLXXX`` is
``MBBEMYKL:514012345678``; an id a payment scheme names (a wallet, an MSISDN) at a
bank outside Malaysia is ``BIC8:SCHEME:id``. Each identifier has a ``key`` (``kind:value``), the
key of the ``sekat.reports`` topic and of the Redis index.

The SMS channel adds three kinds: an alphanumeric sender ID (``SenderId``,
``sender:MAYBANK``, here), a link (``url:host/path``) and a domain
(``domain:host``), those two in ``sekat.urls``.

Emergency and short service numbers (999, 112, 15999, ...) normalise to a
``PhoneNumber`` marked ``protected``: decisions never act on them and the
store refuses to list them.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import unicodedata
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

import phonenumbers
from phonenumbers import shortnumberinfo

from sekat.errors import InvalidIdentifier

_BIC_RE = re.compile(r"^[A-Z]{4}[A-Z]{2}[A-Z0-9]{2}([A-Z0-9]{3})?$")
_ACCOUNT_RE = re.compile(r"^[0-9]{4,34}$")
_IBAN_RE = re.compile(r"^[A-Z]{2}[0-9]{2}[A-Z0-9]{11,30}$")
_SEPARATORS = str.maketrans("", "", " -")  # spaces and dashes, as accounts and phone numbers are written
# Numbers phonenumbers may not know as short codes but that must never be blocked.
_ALWAYS_PROTECTED = frozenset({"999", "112", "911", "991", "994", "15999", "100", "103"})
_MAX_PHONE_CHARS = 32
# +60, 60 or the trunk 0, then a mobile number (1 and 8-9 digits); ASCII digits only (look-alikes go to
# phonenumbers). Written 60 without the plus, the 11-12 digits are too long for a Malaysian national number, so
# phonenumbers takes the 60 as the country code too.
_MY_MOBILE = re.compile(r"(?:\+60|60|0)(1[0-9]{8,9})")
_MAX_ACCOUNT_CHARS = 64
# A scheme-qualified account id, ``SCHEME:id``: the scheme name a message gives (e.g. MSISDN, a wallet scheme),
# then an id of printable ASCII without spaces or colons. Never for a Malaysian bank (``_STRICT_COUNTRIES``):
# its accounts are digits, and any other spelling there is a mistake to dead-letter, not a key that matches
# nothing on the blocklist.
_SCHEME_ACCOUNT_RE = re.compile(r"^([A-Z0-9]{1,35}):([!-9;-~]{1,64})$")
_STRICT_COUNTRIES = frozenset({"MY"})


@dataclass(frozen=True, slots=True)
class PhoneNumber:
    e164: str
    protected: bool = False
    # Read several times per event (lookups, rules, state): built once, with the (cached) identifier.
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", "phone:" + self.e164)

    def masked(self) -> str:
        return mask(self.e164)


@dataclass(frozen=True, slots=True)
class AccountId:
    bank: str
    number: str
    value: str = field(init=False, repr=False, compare=False)  # BIC8:number
    key: str = field(init=False, repr=False, compare=False)  # account:BIC8:number

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", f"{self.bank}:{self.number}")
        object.__setattr__(self, "key", "account:" + self.value)

    def masked(self) -> str:
        return f"{self.bank}:{mask(self.number)}"


Identifier = PhoneNumber | AccountId


def mask(value: str) -> str:
    """Keep the last four digits only: for logs and error messages."""
    return "*" * max(0, len(value) - 4) + value[-4:] if len(value) > 4 else "****"


@lru_cache(maxsize=4096)
def normalise_bank(raw: str) -> str:
    """A BIC (8 or 11 characters) as its 8-character institution code."""
    bic = raw.strip().upper()
    if not _BIC_RE.match(bic):
        raise InvalidIdentifier(f"bank {raw[:16]!r} is not a BIC (e.g. MBBEMYKL)")
    return bic[:8]


@lru_cache(maxsize=1 << 16)
def normalise_account(bank: str, raw: str) -> AccountId:
    """``BIC8:digits`` with spaces and dashes removed, or ``BIC8:IBAN`` (upper case, check digits verified), or
    ``BIC8:SCHEME:id`` (``scheme_account``) at a bank outside Malaysia.

    Anything else (letters outside a valid IBAN, non-ASCII digits) is refused. Cached like phone numbers:
    busy accounts (merchants, salaries, mules being paid) recur.
    """
    if len(raw) > _MAX_ACCOUNT_CHARS:
        raise InvalidIdentifier("account number is too long")
    number = raw.translate(_SEPARATORS)
    if _ACCOUNT_RE.fullmatch(number):
        return AccountId(normalise_bank(bank), number)
    iban = number.upper()
    if _IBAN_RE.fullmatch(iban):
        # ISO 13616 check digits: move the first four characters to the end, letters as 10..35, mod 97 == 1.
        if int("".join(str(int(ch, 36)) for ch in iban[4:] + iban[:4])) % 97 == 1:
            return AccountId(normalise_bank(bank), iban)
        raise InvalidIdentifier("IBAN check digits do not match")
    scheme = _SCHEME_ACCOUNT_RE.fullmatch(number)
    if scheme is not None:
        bic = normalise_bank(bank)
        if bic[4:6] not in _STRICT_COUNTRIES:
            return AccountId(bic, number)
        raise InvalidIdentifier(f"an account at {bic} must be 4-34 digits (spaces and dashes allowed) or an IBAN")
    raise InvalidIdentifier("account number must be 4-34 digits (spaces and dashes allowed) or an IBAN")


def scheme_account(bank: str, scheme: str | None, raw: str) -> AccountId:
    """An account id the message qualifies with a scheme name (``Othr/SchmeNm``): digits or an IBAN are the
    plain account whatever the scheme (so a listed account matches however a bank labels it); any other id
    is ``SCHEME:id`` (``MSISDN:+27730975224``), kept apart from a bank's account numbers, and refused at a
    Malaysian bank as ``normalise_account`` refuses it."""
    try:
        return normalise_account(bank, raw)
    except InvalidIdentifier:
        if not scheme or ":" in raw:
            raise
    return normalise_account(bank, f"{scheme.strip().upper().translate(_SEPARATORS)}:{raw.strip()}")


@lru_cache(maxsize=1 << 16)
def normalise_phone(raw: str, region: str = "MY") -> PhoneNumber:
    """E.164 for a full number; protected for emergency and short service numbers.

    Cached: traffic is heavily skewed towards a few numbers, and a full parse
    is dear next to a cache hit.
    """
    text = raw.strip()
    if not text or len(text) > _MAX_PHONE_CHARS:
        raise InvalidIdentifier("phone number is empty or too long")
    if region == "MY":
        # Malaysian mobiles, most of the traffic, in their usual spellings: a regular expression gives the
        # same answer as phonenumbers (tests/unit/test_identifiers.py holds the two to it) for a small
        # fraction of the cost of a full parse.
        mobile = _MY_MOBILE.fullmatch(text.translate(_SEPARATORS))
        if mobile is not None:
            return PhoneNumber("+60" + mobile.group(1))
    return parse_phone(text, region)


def parse_phone(text: str, region: str = "MY") -> PhoneNumber:
    """``normalise_phone`` through phonenumbers alone, for any number (``text`` already stripped)."""
    try:
        parsed = phonenumbers.parse(text, region)
    except phonenumbers.NumberParseException as exc:
        raise InvalidIdentifier(f"not a phone number: {exc}") from None
    e164 = phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)
    national = str(parsed.national_number)
    if (
        national in _ALWAYS_PROTECTED
        or shortnumberinfo.is_emergency_number(text, region)
        or (len(national) < 7 and shortnumberinfo.is_valid_short_number(parsed))
    ):
        return PhoneNumber(e164, protected=True)
    if not phonenumbers.is_possible_number(parsed):
        raise InvalidIdentifier("not a possible phone number for its country")
    return PhoneNumber(e164)


def parse_key(key: str, region: str = "MY") -> Any:
    """The inverse of ``.key``: ``phone:+60...``, ``account:BIC8:digits``, or an ``SMS_KINDS`` key."""
    kind, _, value = key.partition(":")
    if kind == "phone":
        return normalise_phone(value, region)
    if kind == "account":
        bank, _, number = value.partition(":")
        return normalise_account(bank, number)
    if kind == "wallet":
        return parse_wallet(value)  # type: ignore[return-value]
    if kind == "proxy":
        return parse_proxy(value)  # type: ignore[return-value]
    if kind in SMS_KINDS:
        return parse_sms_key(kind, value)
    raise InvalidIdentifier("identifier kind must be 'phone', 'account', 'wallet', 'proxy', 'sender', 'url' or "
                            f"'domain', got {kind[:16]!r}")


# Kinds of the SMS channel (sekat/senders.py, sekat/urls.py): an alphanumeric sender ID, a link, a domain.
SMS_KINDS = ("sender", "url", "domain")
MAX_SENDER_CHARS = 32  # as written, separators included
_SENDER_SEPARATORS = str.maketrans("", "", " -._")
_SENDER_RE = re.compile(r"[A-Z0-9&]{1,16}")


@dataclass(frozen=True, slots=True)
class SenderId:
    name: str  # upper case, separators removed
    protected: bool = False  # never: a protected sender ID is refused at filing, not here
    key: str = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "key", "sender:" + self.name)

    def masked(self) -> str:
        return self.name  # a brand or service name, not personal data


def normalise_sender_id(raw: str) -> SenderId:
    """An alphanumeric sender ID: case and separators (space, '-', '.', '_') ignored; ASCII letters, digits, '&'."""
    text = unicodedata.normalize("NFKC", raw.strip())
    if not text or len(text) > MAX_SENDER_CHARS:
        raise InvalidIdentifier("sender ID is empty or too long")
    name = text.upper().translate(_SENDER_SEPARATORS)
    if not _SENDER_RE.fullmatch(name):
        raise InvalidIdentifier("sender ID must be 1-16 letters, digits or '&' (spaces, '-', '.', '_' ignored)")
    return SenderId(name)


def parse_sms_key(kind: str, value: str) -> Any:
    """``sender:NAME``, ``url:host/path`` or ``domain:host`` as its identifier (``SenderId``, ``Url``, ``Domain``)."""
    from sekat.urls import normalise_domain, normalise_url

    if kind == "sender":
        return normalise_sender_id(value)
    return normalise_url(value) if kind == "url" else normalise_domain(value)


def parse_protected(lines: list[str], region: str = "MY") -> frozenset[str]:
    """Keys of a protected list: one phone number or ``BIC:account`` a line; ``#`` starts a comment.

    Raises ``InvalidIdentifier`` naming the line number of the first bad line.
    """
    keys: set[str] = set()
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        try:
            if ":" in text:
                bank, _, account = text.removeprefix("account:").partition(":")
                keys.add(normalise_account(bank, account).key)
            else:
                keys.add(normalise_phone(text.removeprefix("phone:"), region).key)
        except InvalidIdentifier as exc:
            raise InvalidIdentifier(f"line {number}: {exc}") from None
    return frozenset(keys)


# A bank identified by a clearing-system member id or another participant id instead of a BIC: its key in
# the member directory. Two kinds, so one id in two schemes (or as a member id and a participant id) are two
# keys: ("CLR", clearing-system code, member id) for FinInstnId/ClrSysMmbId, ("OTHR", scheme name, id) for
# FinInstnId/Othr; codes upper-cased, an absent code as "".
MemberKey = tuple[str, str, str]
OTHER_PREFIX = "OTHR"


def member_key(scheme: str, member: str) -> MemberKey:
    """The directory key of a ``scheme`` column: ``OTHR`` or ``OTHR/<scheme name>`` for ``Othr/Id``, else the
    clearing-system code (``ClrSysId/Cd`` or ``Prtry``, possibly empty) of a ``ClrSysMmbId/MmbId``."""
    code = scheme.strip().upper()
    if code == OTHER_PREFIX or code.startswith(OTHER_PREFIX + "/"):
        return ("OTHR", code[len(OTHER_PREFIX) + 1:], member.strip())
    return ("CLR", code, member.strip())


def parse_member_directory(lines: list[str]) -> dict[MemberKey, str]:
    """A member directory: ``scheme,member_id,BIC`` a line (``#`` starts a comment) → {key: BIC8}.

    Raises ``InvalidIdentifier`` naming the line of the first bad row or of a member listed twice with two BICs.
    """
    directory: dict[MemberKey, str] = {}
    for number, line in enumerate(lines, 1):
        text = line.split("#", 1)[0].strip()
        if not text:
            continue
        parts = text.split(",")
        if len(parts) != 3 or not parts[1].strip() or len(parts[1].strip()) > 35:
            raise InvalidIdentifier(f"line {number}: expected scheme,member_id,BIC with a member id of 1-35 "
                                    "characters")
        try:
            bic = normalise_bank(parts[2])
        except InvalidIdentifier as exc:
            raise InvalidIdentifier(f"line {number}: {exc}") from None
        key = member_key(parts[0], parts[1])
        if directory.setdefault(key, bic) != bic:
            raise InvalidIdentifier(f"line {number}: member {parts[1].strip()!r} of {parts[0].strip() or 'no scheme'!r}"
                                    f" is already mapped to {directory[key]}")
    return directory


# -- e-wallets and hashed DuitNow proxies ----------------------------------------------------------------------
# An e-wallet account: the provider's code (e.g. TNG, or the issuer's BIC, cut to 8) and its wallet id. A DuitNow
# proxy by NRIC, passport or business registration number is personal data: it is turned into a keyed hash
# (HMAC-SHA256 under SEKAT_PROXY_HASH_KEY) where it enters Sekat, and only the hash is stored, logged and sent.
_PROVIDER_RE = re.compile(r"^[A-Z0-9]{2,16}$")
_WALLET_RE = re.compile(r"^\+?[A-Z0-9]{4,34}$")
HASHED_PROXY_TYPES = ("NRIC", "PASSPORT", "BRN")
# The names feeds give them: the contract's, DuitNow's (PSPT, BREG) and ISO 20022 proxy type codes (NIDN national
# identity number, CCPT passport, CINC corporate identification number).
PROXY_TYPE_CODES = {"NRIC": "NRIC", "NIDN": "NRIC", "PASSPORT": "PASSPORT", "PSPT": "PASSPORT", "CCPT": "PASSPORT",
                    "BRN": "BRN", "BREG": "BRN", "CINC": "BRN"}
_PROXY_VALUE = {"NRIC": (re.compile(r"^[0-9]{12}$"), "an NRIC must be 12 digits (YYMMDD-PB-###G)"),
                "PASSPORT": (re.compile(r"^[A-Z0-9]{5,20}$"), "a passport number must be 5-20 letters or digits"),
                "BRN": (re.compile(r"^[A-Z0-9]{4,20}$"), "a business registration number must be 4-20 letters or "
                                                          "digits")}
_DIGEST_RE = re.compile(r"^[0-9a-f]{32}$")


@dataclass(frozen=True, slots=True)
class WalletId:
    provider: str
    wallet: str
    value: str = field(init=False, repr=False, compare=False)  # PROVIDER:ID
    key: str = field(init=False, repr=False, compare=False)  # wallet:PROVIDER:ID

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", f"{self.provider}:{self.wallet}")
        object.__setattr__(self, "key", "wallet:" + self.value)

    def masked(self) -> str:
        return f"{self.provider}:{mask(self.wallet)}"


@dataclass(frozen=True, slots=True)
class ProxyId:
    """A DuitNow proxy Sekat knows only by its keyed hash: ``proxy:NRIC:<32 hex>``."""

    type: str
    digest: str
    value: str = field(init=False, repr=False, compare=False)  # TYPE:digest
    key: str = field(init=False, repr=False, compare=False)  # proxy:TYPE:digest

    def __post_init__(self) -> None:
        object.__setattr__(self, "value", f"{self.type}:{self.digest}")
        object.__setattr__(self, "key", "proxy:" + self.value)

    def masked(self) -> str:
        return f"{self.type}:{self.digest[:6]}..."


@lru_cache(maxsize=1 << 14)
def normalise_wallet(provider: str, raw: str) -> WalletId:
    """``PROVIDER:ID``: the provider code upper-cased (a BIC cut to its 8 characters), the wallet id without
    spaces or dashes, upper-cased."""
    code = provider.strip().upper()
    if _BIC_RE.match(code):
        code = code[:8]
    if not _PROVIDER_RE.match(code):
        raise InvalidIdentifier("wallet provider must be 2-16 letters or digits (e.g. TNG, or the issuer's BIC)")
    wallet = raw.translate(_SEPARATORS).upper()
    if len(raw) > _MAX_ACCOUNT_CHARS or not _WALLET_RE.match(wallet):
        raise InvalidIdentifier("wallet id must be 4-34 letters or digits (a leading + allowed)")
    return WalletId(code, wallet)


def parse_wallet(value: str) -> WalletId:
    """``PROVIDER:ID`` (how reports and keys write a wallet) as a ``WalletId``."""
    provider, sep, wallet = value.partition(":")
    if not sep:
        raise InvalidIdentifier("a wallet is written PROVIDER:ID (e.g. TNG:0123456789)")
    return normalise_wallet(provider, wallet)


def proxy_type(code: str) -> str | None:
    """The hashed proxy type a feed's code names (NRIC, PASSPORT, BRN), or None for any other proxy type."""
    return PROXY_TYPE_CODES.get(code.strip().upper())


def parse_proxy(value: str) -> ProxyId:
    """``TYPE:<32 hex>`` (a hashed proxy as reports and keys write it) as a ``ProxyId``; never a clear value."""
    kind, sep, digest = value.partition(":")
    if not sep or kind not in HASHED_PROXY_TYPES or not _DIGEST_RE.match(digest):
        raise InvalidIdentifier("a proxy is written TYPE:<32 hex digits of its keyed hash> (TYPE NRIC, PASSPORT or "
                                "BRN)")
    return ProxyId(kind, digest)


class ProxyHasher:
    """Clear NRIC, passport and business-registration proxies → their keyed hash (``ProxyId``).

    HMAC-SHA256 under ``SEKAT_PROXY_HASH_KEY`` of ``TYPE:normalised value``, the first 128 bits in hex: without
    the key, a hash cannot be tested against the small space of NRICs. Every process that files or screens
    proxies (API, workers, ``sekat import``) needs the same key. Without one, such proxies cannot be hashed
    (``enabled`` False): filing one is refused and a transfer naming one is screened without it.
    Messages never include the value.
    """

    def __init__(self, secret: str) -> None:
        self._key = secret.encode()

    @property
    def enabled(self) -> bool:
        return bool(self._key)

    def proxy(self, code: str, clear: str) -> ProxyId:
        kind = proxy_type(code)
        if kind is None:
            raise InvalidIdentifier(f"proxy type must be one of {', '.join(HASHED_PROXY_TYPES)}")
        if not self._key:
            raise InvalidIdentifier("NRIC, passport and business-registration proxies need SEKAT_PROXY_HASH_KEY")
        text = clear.translate(_SEPARATORS).upper()
        pattern, message = _PROXY_VALUE[kind]
        if len(clear) > _MAX_ACCOUNT_CHARS or not pattern.match(text):
            raise InvalidIdentifier(message)
        digest = hmac.new(self._key, f"{kind}:{text}".encode(), hashlib.sha256).hexdigest()[:32]
        return ProxyId(kind, digest)


NO_PROXY_HASHER = ProxyHasher("")
