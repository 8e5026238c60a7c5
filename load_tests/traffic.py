"""Realistic synthetic traffic: Malaysian mobile numbers and accounts, Zipf-skewed, with known ground truth.

A ``Population`` holds clean customers (drawn Zipf-distributed, as real traffic
is: a few accounts and numbers are very busy) and a disjoint set of listed mule
accounts and scam numbers. ``Traffic`` turns a sequence number into one event
(transfer or call) as contract JSON bytes, and says which commands the event
must produce — the benchmark's recall and false-command counts come from that.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

BANKS = ("MBBEMYKL", "CIBBMYKL", "PBBEMYKL", "RHBBMYKL", "HLBBMYKL", "AMMBMYKL", "BIMBMYKL", "BKRMMYKL")
ACCOUNT_DIGITS = {"MBBEMYKL": 12, "CIBBMYKL": 10, "PBBEMYKL": 10, "RHBBMYKL": 14, "HLBBMYKL": 11,
                  "AMMBMYKL": 13, "BIMBMYKL": 14, "BKRMMYKL": 14}
MOBILE_PREFIXES = ("11", "12", "13", "14", "16", "17", "18", "19")
OPERATORS = ("CELCOM", "MAXIS", "DIGI", "UMOBILE", "YES", "UNIFI")
STATUS_MIX = (("confirmed", 0.7), ("reported", 0.3))


def mobile(n: int) -> str:
    """The n-th synthetic Malaysian mobile number, E.164 (+601X + 7 or 8 digits)."""
    prefix = MOBILE_PREFIXES[n % len(MOBILE_PREFIXES)]
    digits = 8 if prefix == "11" else 7
    return f"+60{prefix}{(n * 7919) % 10**digits:0{digits}d}"


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

    def listed(self) -> list[Listed]:
        out = []
        for n, status in self.account_status.items():
            bank, number = account(n)
            out.append(Listed(f"account:{bank}:{number}", status))
        for n, status in self.number_status.items():
            out.append(Listed(f"phone:{mobile(n)}", status))
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

    ``event(seq)`` → (bytes, key, topic kind, expected actions, event id the commands will carry).
    Transfers are contract JSON, or ISO 20022 pacs.008 XML (one transaction a message) with
    ``transfer_format="pacs008"``; the adapter names such an event ``MsgId/1``.
    """

    def __init__(self, population: Population, listed_share: float = 0.01, call_share: float = 0.4,
                 zipf_a: float = 1.3, seed: int = 1, run: str = "r", transfer_format: str = "json") -> None:
        self.pop = population
        self.transfer_format = transfer_format
        self.listed_share = listed_share
        self.call_share = call_share
        self.rng = np.random.default_rng(seed)
        self.zipf_a = zipf_a
        self.run = run
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

    def event(self, seq: int, now_iso: str) -> tuple[bytes, bytes, str, tuple[str, ...], str]:
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
            caller = written_phone(mobile(n), seq & 3)
            callee = mobile(r2)
            body = (f'{{"event_id":"{event_id}","occurred_at":"{now_iso}","call_id":"call-{seq}",'
                    f'"operator":"{OPERATORS[r2 % len(OPERATORS)]}","type":"voice","caller":"{caller}",'
                    f'"callee":"{callee}","caller_network":"domestic"}}')
            return body.encode(), caller.encode(), "calls", expected, event_id
        payer_bank, payer_acct = account(r1)
        if listed:
            n = self.pop.listed_accounts[r2 % len(self.pop.listed_accounts)]
            expected = (("HOLD_TRANSFER", "FREEZE_ACCOUNT") if self.pop.account_status[n] == "confirmed"
                        else ("HOLD_TRANSFER",))
        else:
            n, expected = r2 + 1, ()
            if n == r1:
                n += 1
        payee_bank, payee_acct = account(n)
        amount = 10 + (seq * 37) % 5000
        if self.transfer_format == "pacs008":
            xml = PACS008.format(msg_id=event_id, now=now_iso, seq=seq, amount=amount, payer_bank=payer_bank,
                                 payer_acct=payer_acct, payee_bank=payee_bank, payee_acct=payee_acct)
            return xml.encode(), payer_acct.encode(), "transfers", expected, f"{event_id}/1"
        body = (f'{{"event_id":"{event_id}","occurred_at":"{now_iso}","transfer_id":"DN{seq}",'
                f'"channel":"DUITNOW","amount":"{amount}.00","currency":"MYR",'
                f'"payer":{{"bank":"{payer_bank}","account":"{written_account(payer_acct, seq & 1)}",'
                f'"phone":"{mobile(r1)}"}},'
                f'"payee":{{"bank":"{payee_bank}","account":"{written_account(payee_acct, seq & 1)}"}}}}')
        return body.encode(), payer_acct.encode(), "transfers", expected, event_id
