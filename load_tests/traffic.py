"""Realistic synthetic traffic: Malaysian mobile numbers, accounts and e-wallets, Zipf-skewed, with known ground truth.

A ``Population`` holds clean customers (drawn Zipf-distributed, as real traffic
is: a few accounts and numbers are very busy) and a disjoint set of listed mule
accounts, e-wallets, scam numbers and phishing domains. ``Traffic`` turns a sequence number into one event
(transfer, call or SMS) as contract JSON bytes, and says which commands the event
must produce — the benchmark's recall and false-command counts come from that. One transfer in
``WALLET_EVERY`` (contract JSON) pays an e-wallet (``payee.wallet``) instead of an account; every fourth listed
mule is listed as an e-wallet too. An SMS comes from a number or a sender ID and half of them carry a link;
a listed one comes from a listed number or links to a listed domain.

With ``hot_keys``, two adversarial keys take a fixed share of the events:
one caller reaching 50,000 distinct callees in 10
minutes, one payee receiving from 10,000 distinct payers in an hour. Their
events are dated at random within that span before the moment they are sent
(out of order), so event-time windows see those densities. They and the
parties they deal with are neither customers nor listed: no command is due.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timezone

import numpy as np

BANKS = ("MBBEMYKL", "CIBBMYKL", "PBBEMYKL", "RHBBMYKL", "HLBBMYKL", "AMMBMYKL", "BIMBMYKL", "BKRMMYKL")
ACCOUNT_DIGITS = {"MBBEMYKL": 12, "CIBBMYKL": 10, "PBBEMYKL": 10, "RHBBMYKL": 14, "HLBBMYKL": 11,
                  "AMMBMYKL": 13, "BIMBMYKL": 14, "BKRMMYKL": 14}
MOBILE_PREFIXES = ("11", "12", "13", "14", "16", "17", "18", "19")
OPERATORS = ("CELCOM", "MAXIS", "DIGI", "UMOBILE", "YES", "UNIFI")
STATUS_MIX = (("confirmed", 0.7), ("reported", 0.3))
SENDER_IDS = ("POSLAJU", "SHOPEE", "LAZADA", "TNB", "GRAB", "TOUCHNGO", "ASTRO", "JPJ")  # never listed

# The hot keys' shares: of the default 600,000-event backlog, 50,000 calls of the hot caller and 10,000
# transfers to the hot payee; the same shares of any other number of events.
HOT_CALLEES, HOT_CALLER_SPAN_MS, HOT_CALL_EVERY = 50_000, 10 * 60_000, 12  # event seq % 12 == 0
HOT_PAYERS, HOT_PAYEE_SPAN_MS, HOT_TRANSFER_EVERY = 10_000, 60 * 60_000, 60  # seq % 60 == 30 (never % 12 == 0)
GOLDEN = 0.6180339887498949
# E-wallet payees: providers and the BIC their DuitNow participant uses (synthetic); a transfer whose seq % 10 == 3
# pays a wallet (seq-based, so the random streams and the other events are as before).
WALLET_PROVIDERS = (("TNG", "TNGDMYNB"), ("GRABPAY", "GPAYMYN1"), ("BOOST", "BOOSMYN1"), ("SHOPEEPAY", "SHPEMYN1"))
WALLET_EVERY, WALLET_AT = 10, 3
LISTED_WALLET_EVERY = 4  # every fourth listed mule account number is a listed wallet too  # spreads the k-th hot event's age over its span, out of order but evenly


def mobile(n: int) -> str:
    """The n-th synthetic Malaysian mobile number, E.164 (+601X + 7 or 8 digits)."""
    prefix = MOBILE_PREFIXES[n % len(MOBILE_PREFIXES)]
    digits = 8 if prefix == "11" else 7
    return f"+60{prefix}{(n * 7919) % 10**digits:0{digits}d}"


def wallet(n: int) -> tuple[str, str, str]:
    """(provider code, its BIC, wallet id) of e-wallet ``n``."""
    provider, bic = WALLET_PROVIDERS[n % len(WALLET_PROVIDERS)]
    return provider, bic, f"W{n:010d}"
def phishing_domain(n: int) -> str:
    """The n-th synthetic phishing domain (listed ones only)."""
    return f"scam{n}.example.my"


def account(n: int) -> tuple[str, str]:
    bank = BANKS[n % len(BANKS)]
    width = ACCOUNT_DIGITS[bank]
    return bank, f"{(n * 104729 + 10**(width - 1)) % 10**width:0{width}d}"


def written_phone(e164: str, style: int) -> str:
    """The same number as people and systems write it."""
    national = "0" + e164[3:]
    if style == 0:
        return e164
    if style == 1:
        return e164[1:]
    if style == 2:
        return f"{national[:3]}-{national[3:6]} {national[6:]}"
    return f"+60 {e164[3:5]}-{e164[5:8]} {e164[8:]}"


def written_account(number: str, style: int) -> str:
    if style == 0:
        return number
    return " ".join(number[i:i + 4] for i in range(0, len(number), 4))


@dataclass(frozen=True)
class Listed:
    key: str
    status: str


class Population:
    def __init__(self, customers: int = 200_000, listed: int = 2_000, seed: int = 7) -> None:
        rng = np.random.default_rng(seed)
        self.customers = customers
        # Listed identifiers live far from the customers' id range, so a clean draw never hits one.
        self.listed_accounts = [customers * 10 + i for i in range(listed)]
        self.listed_numbers = [customers * 10 + i for i in range(listed)]
        statuses = rng.choice([s for s, _ in STATUS_MIX], size=listed, p=[p for _, p in STATUS_MIX])
        self.account_status = {n: str(s) for n, s in zip(self.listed_accounts, statuses)}
        self.number_status = {n: str(s) for n, s in zip(self.listed_numbers, statuses[::-1])}
        self.listed_wallets = self.listed_accounts[::LISTED_WALLET_EVERY]
        # The hot caller and payee (``Traffic(hot_keys=True)``), then their callees and payers: past the listed
        # range, so neither a customer nor a listed identifier.
        self.hot = customers * 10 + listed

    def hot_callee(self, k: int) -> str:
        return mobile(self.hot + 1 + k % HOT_CALLEES)

    def hot_payer(self, k: int) -> int:
        """The number (``account``, ``mobile``) of the hot payee's k-th payer."""
        return self.hot + 1 + HOT_CALLEES + k % HOT_PAYERS

    def listed(self) -> list[Listed]:
        out = []
        for n, status in self.account_status.items():
            bank, number = account(n)
            out.append(Listed(f"account:{bank}:{number}", status))
        for n, status in self.number_status.items():
            out.append(Listed(f"phone:{mobile(n)}", status))
        for n in self.listed_wallets:
            provider, _, wallet_id = wallet(n)
            out.append(Listed(f"wallet:{provider}:{wallet_id}", self.account_status[n]))
        for n, status in self.account_status.items():
            out.append(Listed(f"domain:{phishing_domain(n)}", status))
        return out


PACS008 = (
    '<?xml version="1.0" encoding="UTF-8"?>'
    '<Document xmlns="urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"><FIToFICstmrCdtTrf>'
    '<GrpHdr><MsgId>{msg_id}</MsgId><CreDtTm>{now}</CreDtTm><NbOfTxs>1</NbOfTxs>'
    '<SttlmInf><SttlmMtd>CLRG</SttlmMtd></SttlmInf></GrpHdr>'
    '<CdtTrfTxInf><PmtId><EndToEndId>E2E{seq}</EndToEndId><TxId>DN{seq}</TxId></PmtId>'
    '<IntrBkSttlmAmt Ccy="MYR">{amount}.00</IntrBkSttlmAmt><ChrgBr>SLEV</ChrgBr>'
    '<Dbtr><Nm>Payer</Nm></Dbtr><DbtrAcct><Id><Othr><Id>{payer_acct}</Id></Othr></Id></DbtrAcct>'
    '<DbtrAgt><FinInstnId><BICFI>{payer_bank}</BICFI></FinInstnId></DbtrAgt>'
    '<CdtrAgt><FinInstnId><BICFI>{payee_bank}</BICFI></FinInstnId></CdtrAgt>'
    '<Cdtr><Nm>Payee</Nm></Cdtr><CdtrAcct><Id><Othr><Id>{payee_acct}</Id></Othr></Id></CdtrAcct>'
    '</CdtTrfTxInf></FIToFICstmrCdtTrf></Document>'
)


class Traffic:
    """Events for one generator process.

    ``event(seq)`` → (bytes, key, topic kind, expected actions, event id the commands will carry); the
    identifier key of the listed entry an event's commands are due for goes to ``subjects`` under its event id
    (what the safety brake counts them towards: a braked entry's events get none).
    Transfers are contract JSON, or ISO 20022 pacs.008 XML (one transaction a message) with
    ``transfer_format="pacs008"``; the adapter names such an event ``MsgId/1``.

    ``hot_keys``: one event in ``HOT_CALL_EVERY`` is a call of the hot caller, one in ``HOT_TRANSFER_EVERY`` a
    transfer to the hot payee, in place of an ordinary event; each dated ``backdate_ms(seq)`` before ``now``.
    Generator process ``lane`` of ``lanes`` takes every ``lanes``-th callee and payer, so together the
    processes reach distinct ones.
    """

    def __init__(self, population: Population, listed_share: float = 0.01, call_share: float = 0.4,
                 zipf_a: float = 1.3, seed: int = 1, run: str = "r", transfer_format: str = "json",
                 hot_keys: bool = False, lane: int = 0, lanes: int = 1, sms_share: float = 0.1) -> None:
        self.pop = population
        self.hot_keys, self.lane, self.lanes = hot_keys, lane, lanes
        self.transfer_format = transfer_format
        self.listed_share = listed_share
        self.call_share = call_share
        self.sms_share = sms_share  # the rest are transfers
        self.rng = np.random.default_rng(seed)
        self.zipf_a = zipf_a
        self.run = run
        self.subjects: dict[str, str] = {}  # event id -> key of the listed identifier its commands are due for
        self._ranks = np.empty(0, dtype=np.int64)
        self._u = np.empty(0)
        self._pos = 0

    def _refill(self) -> None:
        n = 65_536
        ranks = self.rng.zipf(self.zipf_a, size=n * 3)
        self._ranks = (ranks - 1) % self.pop.customers
        self._u = self.rng.random(n * 3)
        self._pos = 0

    def _draw(self) -> tuple[int, float]:
        if self._pos >= len(self._ranks):
            self._refill()
        r, u = int(self._ranks[self._pos]), float(self._u[self._pos])
        self._pos += 1
        return r, u

    def hot_kind(self, seq: int) -> str:
        """``calls`` or ``transfers`` if event ``seq`` is a hot key's, else ``""``."""
        if not self.hot_keys:
            return ""
        if seq % HOT_CALL_EVERY == 0:
            return "calls"
        return "transfers" if seq % HOT_TRANSFER_EVERY == HOT_TRANSFER_EVERY // 2 else ""

    def _hot_index(self, seq: int, every: int) -> int:
        """Which of the hot key's events ``seq`` is, over every generator process: 0, 1, 2, ..."""
        return seq // every * self.lanes + self.lane

    def backdate_ms(self, seq: int) -> int:
        """How long before it is sent event ``seq`` happened: 0, or for a hot key's, within its span."""
        kind = self.hot_kind(seq)
        if not kind:
            return 0
        every, span = (HOT_CALL_EVERY, HOT_CALLER_SPAN_MS) if kind == "calls" else (HOT_TRANSFER_EVERY,
                                                                                  HOT_PAYEE_SPAN_MS)
        return int((self._hot_index(seq, every) * GOLDEN) % 1.0 * span)

    def _hot(self, seq: int, kind: str, now_iso: str) -> tuple[bytes, bytes, str, tuple[str, ...], str]:
        """A hot key's event: no command is due (neither side is listed)."""
        event_id = f"{self.run}-{seq}"
        occurred = backdated(now_iso, self.backdate_ms(seq))
        if kind == "calls":
            k = self._hot_index(seq, HOT_CALL_EVERY)
            caller = mobile(self.pop.hot)  # as one operator writes it: one record key, one partition
            body = (f'{{"event_id":"{event_id}","occurred_at":"{occurred}","call_id":"call-{seq}",'
                    f'"operator":"{OPERATORS[k % len(OPERATORS)]}","type":"voice","caller":"{caller}",'
                    f'"callee":"{self.pop.hot_callee(k)}","caller_network":"domestic"}}')
            return body.encode(), caller.encode(), "calls", (), event_id
        n = self.pop.hot_payer(self._hot_index(seq, HOT_TRANSFER_EVERY))
        return self._transfer(seq, event_id, occurred, n, self.pop.hot, ())

    def event(self, seq: int, now_iso: str) -> tuple[bytes, bytes, str, tuple[str, ...], str]:
        """Event ``seq`` sent at ``now_iso``, or with ``generate.UNSTAMPED`` there for the sender to stamp in
        (less ``backdate_ms(seq)``). A hot key's event draws nothing from the customers' random stream."""
        if self.hot_keys:
            kind = self.hot_kind(seq)
            if kind:
                return self._hot(seq, kind, now_iso)
        r1, u1 = self._draw()
        r2, u2 = self._draw()
        listed = u2 < self.listed_share
        event_id = f"{self.run}-{seq}"
        if u1 < self.call_share:
            if listed:
                n = self.pop.listed_numbers[r1 % len(self.pop.listed_numbers)]
                expected: tuple[str, ...] = (
                    ("BLOCK_CALL",) if self.pop.number_status[n] == "confirmed" else ("LABEL_CALL",))
            else:
                n, expected = r1, ()
            if listed:
                self.subjects[event_id] = f"phone:{mobile(n)}"
            caller = written_phone(mobile(n), seq & 3)
            callee = mobile(r2)
            body = (f'{{"event_id":"{event_id}","occurred_at":"{now_iso}","call_id":"call-{seq}",'
                    f'"operator":"{OPERATORS[r2 % len(OPERATORS)]}","type":"voice","caller":"{caller}",'
                    f'"callee":"{callee}","caller_network":"domestic"}}')
            return body.encode(), caller.encode(), "calls", expected, event_id
        if u1 < self.call_share + self.sms_share:
            return self._sms(seq, event_id, now_iso, r1, r2, listed)
        if self.transfer_format == "json" and seq % WALLET_EVERY == WALLET_AT:
            return self._to_wallet(seq, event_id, now_iso, r1, r2, listed)
        if listed:
            n = self.pop.listed_accounts[r2 % len(self.pop.listed_accounts)]
            expected = (("HOLD_TRANSFER", "FREEZE_ACCOUNT") if self.pop.account_status[n] == "confirmed"
                        else ("HOLD_TRANSFER",))
        else:
            n, expected = r2 + 1, ()
            if n == r1:
                n += 1
        made = self._transfer(seq, event_id, now_iso, r1, n, expected)
        if listed:
            bank, number = account(n)
            self.subjects[made[4]] = f"account:{bank}:{number}"
        return made

    def _to_wallet(self, seq: int, event_id: str, now_iso: str, payer: int, r2: int, listed: bool
                   ) -> tuple[bytes, bytes, str, tuple[str, ...], str]:
        """A transfer to an e-wallet: held when the wallet is listed (it has no account of its own to freeze)."""
        if listed:
            n = self.pop.listed_wallets[r2 % len(self.pop.listed_wallets)]
            expected: tuple[str, ...] = ("HOLD_TRANSFER",)
        else:
            n, expected = r2, ()
        provider, bic, wallet_id = wallet(n)
        if listed:
            self.subjects[event_id] = f"wallet:{provider}:{wallet_id}"
        payer_bank, payer_acct = account(payer)
        body = (f'{{"event_id":"{event_id}","occurred_at":"{now_iso}","transfer_id":"DN{seq}",'
                f'"channel":"DUITNOW","amount":"{10 + (seq * 37) % 5000}.00","currency":"MYR",'
                f'"payer":{{"bank":"{payer_bank}","account":"{written_account(payer_acct, seq & 1)}",'
                f'"phone":"{mobile(payer)}"}},'
                f'"payee":{{"bank":"{bic}","wallet":{{"provider":"{provider}","id":"{wallet_id}"}}}}}}')
        return body.encode(), payer_acct.encode(), "transfers", expected, event_id
    def _sms(self, seq: int, event_id: str, now_iso: str, r1: int, r2: int, listed: bool
             ) -> tuple[bytes, bytes, str, tuple[str, ...], str]:
        """An SMS: from a listed number (BLOCK_SMS or LABEL_SMS), with a link to a listed domain (BLOCK_SMS,
        reported or confirmed), or clean: a customer's number or a brand's sender ID, with a link or without."""
        expected: tuple[str, ...] = ()
        if listed and seq & 1:
            n = self.pop.listed_numbers[r1 % len(self.pop.listed_numbers)]
            sender, text = written_phone(mobile(n), seq & 3), "Tahniah! Anda menang. Hubungi nombor ini segera"
            expected = ("BLOCK_SMS",) if self.pop.number_status[n] == "confirmed" else ("LABEL_SMS",)
            self.subjects[event_id] = f"phone:{mobile(n)}"
        elif listed:
            domain = phishing_domain(self.pop.listed_accounts[r1 % len(self.pop.listed_accounts)])
            sender = SENDER_IDS[r2 % len(SENDER_IDS)]
            text = f"Bungkusan ditahan. Bayar RM2.90 di https://WWW.{domain.upper()}/pay?id={seq} hari ini"
            expected = ("BLOCK_SMS",)
            self.subjects[event_id] = f"domain:{domain}"
        else:
            sender = SENDER_IDS[r1 % len(SENDER_IDS)] if r1 & 1 else written_phone(mobile(r1), seq & 3)
            text = (f"Kod anda {seq % 1_000_000:06d}. Jangan kongsi." if r2 & 1
                    else f"Jejak bungkusan anda di https://www.shop{r2 % 1000}.example.com.my/t/{seq}")
        body = (f'{{"event_id":"{event_id}","occurred_at":"{now_iso}","sms_id":"sms-{seq}",'
                f'"operator":"{OPERATORS[r2 % len(OPERATORS)]}","sender":"{sender}","recipient":"{mobile(r2)}",'
                f'"route":"MY-AGG-{r2 % 4}","text":"{text}"}}')
        return body.encode(), mobile(r2).encode(), "sms", expected, event_id

    def _transfer(self, seq: int, event_id: str, now_iso: str, payer: int, payee: int, expected: tuple[str, ...]
                  ) -> tuple[bytes, bytes, str, tuple[str, ...], str]:
        payer_bank, payer_acct = account(payer)
        payee_bank, payee_acct = account(payee)
        amount = 10 + (seq * 37) % 5000
        if self.transfer_format == "pacs008":
            xml = PACS008.format(msg_id=event_id, now=now_iso, seq=seq, amount=amount, payer_bank=payer_bank,
                                 payer_acct=payer_acct, payee_bank=payee_bank, payee_acct=payee_acct)
            return xml.encode(), payer_acct.encode(), "transfers", expected, f"{event_id}/1"
        body = (f'{{"event_id":"{event_id}","occurred_at":"{now_iso}","transfer_id":"DN{seq}",'
                f'"channel":"DUITNOW","amount":"{amount}.00","currency":"MYR",'
                f'"payer":{{"bank":"{payer_bank}","account":"{written_account(payer_acct, seq & 1)}",'
                f'"phone":"{mobile(payer)}"}},'
                f'"payee":{{"bank":"{payee_bank}","account":"{written_account(payee_acct, seq & 1)}"}}}}')
        return body.encode(), payer_acct.encode(), "transfers", expected, event_id


def iso_ms(ms: int) -> str:
    """Epoch milliseconds as the contract's UTC time, ``2026-11-29T00:00:00.000Z``."""
    return datetime.fromtimestamp(ms / 1000, timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def backdated(now_iso: str, ms: int) -> str:
    """``now_iso`` less ``ms``; a time not stamped in yet (``generate.UNSTAMPED``) is left for the sender."""
    if not ms or now_iso.startswith("0000"):
        return now_iso
    return iso_ms(int(datetime.fromisoformat(now_iso).timestamp() * 1000) - ms)
