"""E-wallets and hashed DuitNow proxies: one key each wherever they enter (contract JSON, pacs.008, the agency
API and CLI, the reports topic), screened by blocklist_match, released like accounts; an NRIC, passport or
business registration number is a keyed hash from the edge on and never appears in clear."""

from __future__ import annotations

from datetime import datetime, timezone
from pathlib import Path

import orjson
import pytest

from sekat.blocklist.filing import file_report, identifier
from sekat.contract import COMMANDS
from sekat.decode.pacs008 import decode_pacs008
from sekat.decode.reports import decode_report
from sekat.decode.transfers import decode_transfer
from sekat.errors import InvalidIdentifier, InvalidReport
from sekat.identifiers import ProxyHasher, normalise_wallet, parse_key
from sekat.records import Action, Entry, Status, Transfer
from sekat.release.sweep import release
from tests.unit.test_blocklist_match import decide_transfer

NOW = datetime(2026, 11, 28, 10, 15, tzinfo=timezone.utc)
HASHER = ProxyHasher("k" * 40)
NRIC = "900101-14-5678"
SINGLE = (Path(__file__).resolve().parents[1] / "fixtures" / "pacs008_v10_single.xml").read_text()
PROXY_XML = "<Prxy><Tp><Cd>EMAL</Cd></Tp><Id>club@example.com</Id></Prxy>"


def transfer(payee: dict) -> Transfer:
    body = {"event_id": "t-1", "occurred_at": "2026-11-28T10:15:00Z", "transfer_id": "DN1", "amount": "700.00",
            "payer": {"bank": "MBBEMYKL", "account": "514012345678"}, "payee": payee}
    decoded = decode_transfer(orjson.dumps(body), hasher=HASHER)
    assert isinstance(decoded, Transfer), decoded
    return decoded


def test_an_nric_is_one_keyed_hash_however_written_and_never_kept_in_clear() -> None:
    one = HASHER.proxy("NRIC", NRIC)
    assert one == HASHER.proxy("nric", "900101 14 5678") == HASHER.proxy("NIDN", "900101145678")
    assert one.key.startswith("proxy:NRIC:") and "900101" not in one.key and parse_key(one.key) == one
    assert ProxyHasher("x" * 40).proxy("NRIC", NRIC) != one  # another key: another hash
    assert HASHER.proxy("PSPT", "a1234 5678").type == "PASSPORT" and HASHER.proxy("BREG", "201901000005").type == "BRN"
    with pytest.raises(InvalidIdentifier) as bad:
        HASHER.proxy("NRIC", "9001011456")
    assert "9001011456" not in str(bad.value)
    with pytest.raises(InvalidIdentifier, match="SEKAT_PROXY_HASH_KEY"):
        ProxyHasher("").proxy("NRIC", NRIC)


def test_a_wallet_is_its_provider_and_id() -> None:
    assert normalise_wallet("tng", "012-345 6789").key == "wallet:TNG:0123456789"
    assert normalise_wallet("TNGDMYNBXXX", "0123456789").provider == "TNGDMYNB"
    assert parse_key("wallet:TNG:0123456789") == normalise_wallet("TNG", "0123456789")
    with pytest.raises(InvalidIdentifier):
        normalise_wallet("T", "0123456789")


def test_filing_hashes_a_clear_proxy_at_the_edge_and_the_topic_takes_only_hashes() -> None:
    report = file_report("proxy", f"NRIC:{NRIC}", "confirmed", "PDRM", NOW, hasher=HASHER)
    assert report.key == HASHER.proxy("NRIC", NRIC).key and NRIC_DIGITS not in orjson.dumps(report.to_json()).decode()
    assert decode_report(orjson.dumps(report.to_json()), key=report.key.encode()).key == report.key
    with pytest.raises(InvalidReport) as clear_on_topic:
        identifier("proxy", f"NRIC:{NRIC}", None, "MY")  # no hasher: the value must be a hash already
    assert clear_on_topic.value.field == "value"
    with pytest.raises(InvalidReport):
        file_report("proxy", f"NRIC:{NRIC}", "confirmed", "PDRM", NOW, hasher=ProxyHasher(""))
    wallet = file_report("wallet", "tng:0123456789", "reported", "MAYBANK", NOW, links=[
        {"kind": "proxy", "value": f"NRIC:{NRIC}"}], hasher=HASHER)
    assert wallet.key == "wallet:TNG:0123456789" and wallet.links == (report.key,)


NRIC_DIGITS = NRIC.replace("-", "")


def test_transfers_name_a_payee_by_wallet_or_hashed_proxy_and_a_listed_one_is_held() -> None:
    to_wallet = transfer({"bank": "TNGDMYNB", "wallet": {"provider": "TNG", "id": "0123456789"}})
    to_nric = transfer({"bank": "CIBBMYKL", "proxy": {"type": "NRIC", "value": NRIC_DIGITS}})
    assert to_nric.payee_proxy is not None and NRIC_DIGITS not in to_nric.payee_proxy.value
    wallet_key, proxy_key = "wallet:TNG:0123456789", HASHER.proxy("NRIC", NRIC).key
    assert wallet_key in [i.key for i in to_wallet.identifiers()]
    assert proxy_key in [i.key for i in to_nric.identifiers()]
    listed = {k: Entry(k, Status.CONFIRMED, "PDRM", case_ref="KL/1") for k in (wallet_key, proxy_key)}
    for event, key, code in ((to_wallet, wallet_key, "payee-wallet-on-blocklist"),
                             (to_nric, proxy_key, "payee-proxy-on-blocklist")):
        decision = decide_transfer(event, listed, NOW)
        assert [c.action for c in decision.commands] == [Action.HOLD_TRANSFER]  # no account of its own to freeze
        assert decision.commands[0].rule == code and decision.matches[0].identifier == key


def test_a_bad_nric_proxy_is_dead_lettered_without_its_value() -> None:
    body = {"event_id": "t-1", "occurred_at": "2026-11-28T10:15:00Z", "transfer_id": "DN1", "amount": "1",
            "payer": {"bank": "MBBEMYKL", "account": "514012345678"},
            "payee": {"bank": "CIBBMYKL", "proxy": {"type": "NRIC", "value": "9001-0114"}}}
    rejection = decode_transfer(orjson.dumps(body), hasher=HASHER)
    assert (rejection.reason, rejection.field) == ("invalid_value", "payee.proxy.value")  # type: ignore[union-attr]
    assert "9001" not in rejection.message  # type: ignore[union-attr]


@pytest.mark.parametrize("code", ["NRIC", "NIDN"])
def test_pacs008_maps_nric_proxies_hashed_and_ewal_proxies_to_wallets(code: str) -> None:
    nric = SINGLE.replace(PROXY_XML, f"<Prxy><Tp><Prtry>{code}</Prtry></Tp><Id>{NRIC}</Id></Prxy>").encode()
    [t] = decode_pacs008(nric, hasher=HASHER)
    assert isinstance(t, Transfer) and t.payee_proxy is not None
    assert t.payee_proxy.hashed == HASHER.proxy("NRIC", NRIC) and NRIC_DIGITS not in repr(t)
    ewal = SINGLE.replace(PROXY_XML, "<Prxy><Tp><Cd>EWAL</Cd></Tp><Id>0123456789</Id></Prxy>").encode()
    [w] = decode_pacs008(ewal, hasher=HASHER)
    assert isinstance(w, Transfer) and w.payee.wallet == normalise_wallet(w.payee.bank, "0123456789")


def test_a_revoked_wallet_or_proxy_is_released_to_the_banks_that_held_in_the_contract_shape() -> None:
    import msgspec

    for key in ("wallet:TNG:0123456789", HASHER.proxy("NRIC", NRIC).key):
        revoked = Entry(key, Status.REVOKED, "PDRM", "appeal upheld", "KL/1", "r-9")
        [command], _ = release(revoked, ["RELEASE_ACCOUNT|MBBEMYKL"], NOW)
        body = command.to_json()
        assert body["account"] == key.partition(":")[2] and body["kind"] == key.partition(":")[0]
        msgspec.json.decode(orjson.dumps(body), type=COMMANDS[Action.RELEASE_ACCOUNT])


def test_a_bulk_import_hashes_a_proxy_row_and_re_imports_an_exported_one_as_it_is() -> None:
    from sekat.blocklist.bulk import row_report

    filed = row_report({"kind": "proxy", "value": f"nric:{NRIC}", "status": "confirmed", "source": "PDRM"}, NOW,
                       hasher=HASHER)
    assert filed.key == HASHER.proxy("NRIC", NRIC).key
    exported = {"key": filed.key, "status": "confirmed", "source": "PDRM"}
    assert row_report(exported, NOW, hasher=HASHER).key == filed.key  # an export names the hash already
    wallet = row_report({"kind": "wallet", "value": "TNG:0123456789", "source": "PDRM"}, NOW, hasher=HASHER)
    assert row_report({"key": wallet.key, "status": "reported", "source": "PDRM"}, NOW).key == wallet.key
