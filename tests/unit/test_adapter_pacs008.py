"""ISO 20022 pacs.008 → Transfers: every mapping and every failure, from the sample messages in tests/fixtures."""

from __future__ import annotations

from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import orjson
import pytest

from sekat.decode.pacs008 import decode_pacs008
from sekat.identifiers import parse_member_directory
from sekat.records import Entry, PaymentStatus, Rejection, Skipped, Status, Transfer
from tests.unit.test_blocklist_match import decide_transfer

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures"
TX = "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"


def load(name: str) -> bytes:
    return (FIXTURES / name).read_bytes()


def transfers(raw: bytes) -> list[Transfer]:
    results = decode_pacs008(raw)
    assert all(isinstance(r, Transfer) for r in results), results
    return results  # type: ignore[return-value]


def transfers_with(raw: bytes, members: dict) -> list[Transfer]:
    results = decode_pacs008(raw, members=members)
    assert all(isinstance(r, Transfer) for r in results), results
    return results  # type: ignore[return-value]


def only_rejection(raw: bytes) -> Rejection:
    [result] = decode_pacs008(raw)
    assert isinstance(result, Rejection), result
    return result


def test_multi_transaction_v08_yields_one_transfer_per_transaction() -> None:
    first, second, third = transfers(load("pacs008_v08_multi.xml"))
    assert [t.event_id for t in (first, second, third)] == [f"MBBEMYKL20261128000123/{i}" for i in (1, 2, 3)]
    # Othr/Id accounts, BICFI agents (BIC11 → BIC8), amount with its currency, all ISO ids.
    assert first.payer.bank == "MBBEMYKL" and first.payer.account.value == "MBBEMYKL:514012345678"
    assert first.payee.bank == "CIBBMYKL" and first.payee.account.value == "CIBBMYKL:8001234567"
    assert (first.amount, first.currency) == (Decimal("1500.00"), "MYR")
    assert (first.end_to_end_id, first.tx_id) == ("E2E-20261128-0001", "TX-20261128-0001")
    assert first.uetr == first.transfer_id == "7a562c67-ca16-48ba-b074-65581be6f001"  # the UETR first
    assert first.channel == "DUITNOW"
    assert first.occurred_at == datetime(2026, 11, 28, 10, 15, 0, 123000, tzinfo=timezone.utc)
    # IBANs, and the transaction's own acceptance time over the group header's creation time.
    assert second.payer.account.value == "COBADEFF:DE89370400440532013000"
    assert second.payee.account.value == "BNPAFRPP:FR1420041010050500013M02606"
    assert (second.amount, second.currency) == (Decimal("250.5"), "EUR")
    assert second.occurred_at == datetime(2026, 11, 28, 10, 16, 30, tzinfo=timezone.utc)
    assert second.transfer_id == "TX-20261128-0002"  # no UETR: the TxId
    # A mobile proxy with no creditor account id; TxId and UETR missing: transfer_id is the EndToEndId
    # qualified by the debtor agent (a customer's reference is unique only at its bank).
    assert third.payee.account is None
    assert third.payee_proxy.type == "MOBILE" and third.payee_proxy.phone.e164 == "+60123456789"
    assert (third.tx_id, third.uetr, third.transfer_id) == (None, None, "MBBEMYKL/E2E-20261128-0003")
    assert [i.key for i in third.identifiers()] == ["account:MBBEMYKL:514012345678", "phone:+60123456789"]


@pytest.mark.parametrize("name,event_id", [
    ("pacs008_v09_one_bad_tx.xml", "MIX-09-1/1"),
    ("pacs008_v10_single.xml", "CIBBMYKL-10-000777/1"),
    ("pacs008_v11_envelope.xml", "HLBB-11-0042/1"),
    ("pacs008_v09.json", "SWITCH-JSON-0009/1"),
])
def test_versions_08_and_later_and_both_renderings_are_read(name: str, event_id: str) -> None:
    assert decode_pacs008(load(name))[0].event_id == event_id


@pytest.mark.parametrize("version", range(8, 14))
def test_each_version_reads_its_acceptance_time_from_its_own_place(version: int) -> None:
    # .08-.12: CdtTrfTxInf/AccptncDtTm; .13: CdtTrfTxInf/AddtlDtTm/AccptncDtTm. Both 7 s before CreDtTm.
    [t] = transfers(load(f"pacs008_v{version:02d}_accepted.xml"))
    assert t.occurred_at == datetime(2026, 11, 28, 10, 40, 0, tzinfo=timezone.utc)
    assert t.transfer_id == f"ACC-TX-{version:02d}"


def test_v13_acceptance_time_in_the_json_rendering() -> None:
    message = {"Document": {"xmlns": "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.13", "FIToFICstmrCdtTrf": {
        "GrpHdr": {"MsgId": "J13", "CreDtTm": "2026-11-28T10:40:07Z"},
        "CdtTrfTxInf": {"PmtId": {"EndToEndId": "E"}, "IntrBkSttlmAmt": {"Ccy": "MYR", "value": "5.00"},
                        "AddtlDtTm": {"AccptncDtTm": "2026-11-28T10:40:00Z"},
                        "DbtrAgt": {"FinInstnId": {"BICFI": "MBBEMYKL"}},
                        "CdtrAgt": {"FinInstnId": {"BICFI": "RHBBMYKL"}},
                        "CdtrAcct": {"Id": {"Othr": {"Id": "212000445566"}}}}}}}
    [t] = transfers(orjson.dumps(message))
    assert t.occurred_at == datetime(2026, 11, 28, 10, 40, 0, tzinfo=timezone.utc)
    assert t.transfer_id == "MBBEMYKL/E"  # neither UETR nor TxId: the end-to-end id at its debtor agent


def test_the_same_end_to_end_id_at_two_banks_gives_two_transfer_ids() -> None:
    raw = load("pacs008_v12_accepted.xml").decode().replace("<TxId>ACC-TX-12</TxId>", "")
    [a] = transfers(raw.encode())
    [b] = transfers(raw.replace("<BICFI>MBBEMYKL</BICFI>", "<BICFI>HLBBMYKL</BICFI>").encode())
    assert (a.transfer_id, b.transfer_id) == ("MBBEMYKL/ACC-E2E-12", "HLBBMYKL/ACC-E2E-12")


def test_accounts_are_optional_and_a_transfer_is_screened_on_what_it_has() -> None:
    creditor_only, nothing, debtor_only = decode_pacs008(load("pacs008_v12_optional_accounts.xml"))
    assert isinstance(creditor_only, Transfer) and creditor_only.payer.account is None
    assert [i.key for i in creditor_only.identifiers()] == ["account:RHBBMYKL:212000445566"]
    assert isinstance(debtor_only, Transfer) and debtor_only.payee.account is None
    assert debtor_only.payee_proxy is None
    assert [i.key for i in debtor_only.identifiers()] == ["account:MBBEMYKL:514000112233"]
    assert isinstance(nothing, Rejection)
    assert (nothing.reason, nothing.field) == ("missing_field", f"{TX}[2]/CdtrAcct")


def test_a_listed_payee_without_a_debtor_account_is_held_at_the_debtor_agent() -> None:
    creditor_only = decode_pacs008(load("pacs008_v12_optional_accounts.xml"))[0]
    listed = Entry("account:RHBBMYKL:212000445566", Status.CONFIRMED, "PDRM")
    now = datetime(2026, 11, 28, tzinfo=timezone.utc)
    hold = decide_transfer(creditor_only, {listed.key: listed}, now).commands[0]
    body = hold.to_json()
    # No payer account: the hold goes to the debtor agent and names the transfer instead of an account.
    assert (body["action"], body["bank"], body["account"]) == ("HOLD_TRANSFER", "MBBEMYKL", "OPT-TX-1")


def test_a_document_two_levels_down_in_a_scheme_wrapper_is_read() -> None:
    [t] = transfers(load("pacs008_v09_datapdu.xml"))
    assert (t.event_id, t.payee.account.value) == ("PBB-09-0091/1", "AMBBMYKL:888011223300")
    assert decode_pacs008(load("pacs002_v10_envelope.xml")) == [
        Skipped("pacs.002", (PaymentStatus("AMBB-STS-0091", "ACCC", end_to_end_id="PBB-E2E-91"),))]


DATAPDU = load("pacs008_v09_datapdu.xml").decode()


@pytest.mark.parametrize("raw,field,says", [
    (DATAPDU.replace("Saa:DataPDU", "Saa:SchemeMsg"), "/SchemeMsg", "known envelope"),
    (DATAPDU.replace("Saa:Body", "Saa:Payld"), "/DataPDU/Payld", "not a known envelope"),
    (DATAPDU.replace("<Saa:Body>", "<Saa:Body><Body><Body><Body>").replace("</Saa:Body>", "</Body></Body></Body>"
                                                                          "</Saa:Body>"),
     "/DataPDU/Body/Body/Body/Body", "no Document within 4"),
    (DATAPDU.replace("</Saa:Body>", "<Document/></Saa:Body>"), "/DataPDU/Body", "more than one Document"),
    (DATAPDU.replace("<Saa:Revision>", "<Saa:Revision/>" * 16 + "<Saa:Revision>"), "/DataPDU", "more than 16"),
])
def test_unknown_or_unbounded_envelopes_are_dead_lettered_naming_the_element(raw: str, field: str,
                                                                             says: str) -> None:
    rejection = only_rejection(raw.encode())
    assert (rejection.reason, rejection.field) == ("unsupported_message", field)
    assert says in rejection.message


JSON_DOCUMENT = orjson.loads(load("pacs008_v09.json"))["Document"]


@pytest.mark.parametrize("message,field,says", [
    ({"SchemeWrap": {"Document": JSON_DOCUMENT}}, "/SchemeWrap", "not a known envelope"),
    ({"BizMsgEnvlp": {"AppHdr": {"BizMsgIdr": "B-1"}, "Payld": {"Document": JSON_DOCUMENT}}}, "/BizMsgEnvlp/Payld",
     "not a known envelope"),
    ({"BizMsgEnvlp": {"Body": {"Body": {"Body": {"Body": {"Document": JSON_DOCUMENT}}}}}},
     "/BizMsgEnvlp/Body/Body/Body", "no Document within 4"),
    ({"BizMsgEnvlp": {"AppHdr": {"BizMsgIdr": "B-1"}}}, "/BizMsgEnvlp", "holds no ISO 20022 Document"),
    ({"BizMsgEnvlp": {**{f"Note{i}": "x" for i in range(16)}, "Document": JSON_DOCUMENT}}, "/BizMsgEnvlp",
     "more than 16"),
])
def test_unknown_or_unbounded_json_envelopes_are_dead_lettered_naming_the_key(message: dict, field: str,
                                                                             says: str) -> None:
    rejection = only_rejection(orjson.dumps(message))
    assert (rejection.reason, rejection.field) == ("unsupported_message", field)
    assert says in rejection.message


def test_json_rendering_in_an_envelope_is_read() -> None:
    message = {"BizMsgEnvlp": {"AppHdr": {"BizMsgIdr": "B-1", "MsgDefIdr": "pacs.008.001.09"},
                               "Document": orjson.loads(load("pacs008_v09.json"))["Document"]}}
    assert [t.event_id for t in transfers(orjson.dumps(message))] == ["SWITCH-JSON-0009/1", "SWITCH-JSON-0009/2"]


MEMBERS = parse_member_directory((FIXTURES / "member_directory.csv").read_text().splitlines())


def test_banks_named_by_member_id_or_participant_id_are_their_directory_bic() -> None:
    rpp, usaba, unlisted = decode_pacs008(load("pacs008_v10_member_ids.xml"), members=MEMBERS)
    assert isinstance(rpp, Transfer) and isinstance(usaba, Transfer)
    # Accounts keyed (and commands routed) by the mapped BIC8, as if the message had named the BIC.
    assert (rpp.payer.bank, rpp.payee.bank) == ("HLBBMYKL", "RHBBMYKL")
    assert rpp.payee.account.key == "account:RHBBMYKL:218077665544"
    # The same MmbId under another clearing system is another bank; a participant id under its scheme name.
    assert (usaba.payer.bank, usaba.payee.bank) == ("CHASUS33", "PBBEMYKL")
    assert usaba.payer.account.key == "account:CHASUS33:3300112244" != rpp.payer.account.key
    assert isinstance(unlisted, Rejection) and unlisted.reason == "invalid_bank"
    assert unlisted.field == f"{TX}[3]/CdtrAgt/FinInstnId/ClrSysMmbId/MmbId"
    assert "UNLISTED9" in unlisted.message and "SEKAT_MEMBER_DIRECTORY" in unlisted.message


def test_without_a_directory_a_member_id_is_never_taken_for_a_bank() -> None:
    results = decode_pacs008(load("pacs008_v10_member_ids.xml"))
    assert [(r.reason, r.field.split("/")[4]) for r in results] == [("invalid_bank", "DbtrAgt")] * 3


def test_a_bic_wins_over_a_member_id_and_the_json_rendering_reads_member_ids() -> None:
    raw = load("pacs008_v10_member_ids.xml").replace(b"<FinInstnId><ClrSysMmbId>", b"<FinInstnId><BICFI>MBBEMYKL</BICFI><ClrSysMmbId>", 1)
    assert decode_pacs008(raw, members=MEMBERS)[0].payer.bank == "MBBEMYKL"
    tx = {"PmtId": {"EndToEndId": "E"}, "IntrBkSttlmAmt": {"Ccy": "MYR", "value": "1.00"},
          "DbtrAgt": {"FinInstnId": {"ClrSysMmbId": {"MmbId": "fsp001"}}},
          "CdtrAgt": {"FinInstnId": {"Othr": {"Id": "P-00042", "SchmeNm": {"Cd": "BANK"}}}},
          "CdtrAcct": {"Id": {"Othr": {"Id": "9100223344"}}}}
    message = {"FIToFICstmrCdtTrf": {"GrpHdr": {"MsgId": "J", "CreDtTm": "2026-11-28T11:00:00Z"}, "CdtTrfTxInf": tx}}
    [t] = decode_pacs008(orjson.dumps(message), members=MEMBERS)
    assert (t.payer.bank, t.payee.bank) == ("FIRNZAJJ", "PBBEMYKL")


def test_the_fraud_platform_json_rendering_is_read_as_well() -> None:
    # {"TxTp", "FIToFICstmrCdt"}, amounts as {"Amt": {"Amt", "Ccy"}}, Othr as a list with a scheme name,
    # agents by member id without a clearing-system code.
    [t] = transfers_with(load("pacs008_v10_platform.json"), MEMBERS)
    assert (t.event_id, t.amount, t.currency) == ("0f6e8a3c2b7d4e91a5c3d2e1f0a9b8c7/1", Decimal("31020.89"), "ZAR")
    assert t.occurred_at == datetime(2026, 11, 28, 9, 12, 45, 120000, tzinfo=timezone.utc)
    assert t.payer.account.key == "account:FIRNZAJJ:MSISDN:+277105550134"
    assert t.payee.account.key == "account:SBZAZAJJ:EWALLET:wallet.9f2c41d7"
    assert t.transfer_id == "FIRNZAJJ/2c516801007642dfb892944dde1cf845"
    assert decode_pacs008(load("pacs002_v12_platform.json")) == [Skipped("pacs.002", (PaymentStatus(
        "7d1e0c9b8a6f4e2d9c3b1a0f9e8d7c6b", "ACCC", end_to_end_id="2c516801007642dfb892944dde1cf845"),))]
    old = load("pacs008_v10_platform.json").replace(b'"pacs.008.001.10"', b'"pacs.008.001.07"')
    assert (only_rejection(old).reason, only_rejection(old).field) == ("unsupported_version", "/Document/@xmlns")


def test_a_scheme_named_account_id_is_kept_apart_but_never_at_a_malaysian_bank() -> None:
    platform = load("pacs008_v10_platform.json")
    # Digits under a scheme name are the plain account, so a listed account matches however it is labelled.
    [t] = transfers_with(platform.replace(b'"+27-710-555-0134"', b'"0710 555 0134"'), MEMBERS)
    assert t.payer.account.key == "account:FIRNZAJJ:07105550134"
    # Without a scheme name an id that is not digits or an IBAN is refused, as before.
    [bad] = decode_pacs008(platform.replace(b', "SchmeNm": {"Prtry": "MSISDN"}', b""), members=MEMBERS)
    assert (bad.reason, bad.field) == ("invalid_account", f"{TX}[1]/DbtrAcct/Id/Othr/Id")
    # At a Malaysian bank accounts are digits: a scheme name does not make another spelling acceptable.
    raw = edit("<Id><Othr><Id>7600-1122-3344</Id></Othr></Id>",
               "<Id><Othr><Id>7600-1122-33A4</Id><SchmeNm><Prtry>MSISDN</Prtry></SchmeNm></Othr></Id>")
    rejection = only_rejection(raw)
    assert (rejection.reason, rejection.field) == ("invalid_account", f"{TX}[1]/DbtrAcct/Id/Othr/Id")


def test_v10_non_mobile_proxy_is_kept_but_not_looked_up_as_a_phone() -> None:
    [t] = transfers(load("pacs008_v10_single.xml"))
    assert t.payee_proxy.type == "EMAIL" and t.payee_proxy.phone is None
    assert t.channel == "SEPA" and t.occurred_at.tzinfo is not None  # no zone in CreDtTm: read as UTC


def test_json_rendering_maps_like_the_xml() -> None:
    first, second = transfers(load("pacs008_v09.json"))
    assert (first.tx_id, first.end_to_end_id, first.uetr) == ("J-TX-1", "J-E2E-1",
                                                              "3c1d9d1e-6a55-4b5f-8c0e-1f2a3b4c5d61")
    assert (first.amount, first.currency) == (Decimal("700.00"), "MYR")
    assert first.payee.account.value == "CIBBMYKL:8001234567"
    # {"@Ccy", "#text"} amounts, numbers as JSON numbers, a proxy written nationally.
    assert (second.amount, second.currency) == (Decimal("35.5"), "MYR")
    assert second.payee_proxy.phone.e164 == "+60123456789"


def test_one_bad_transaction_is_its_own_rejection_naming_the_xpath() -> None:
    good, bad = decode_pacs008(load("pacs008_v09_one_bad_tx.xml"))
    assert isinstance(good, Transfer) and good.tx_id == "MIX-TX-1"
    assert isinstance(bad, Rejection)
    assert (bad.reason, bad.field) == ("invalid_bank", f"{TX}[2]/CdtrAgt/FinInstnId/BICFI")


@pytest.mark.parametrize("name,status", [
    ("pacs002_v10.xml", PaymentStatus("CIBB-STS-0001", "ACSC", "", "E2E-20261128-0001", "TX-20261128-0001")),
    ("pacs002_v10.json", PaymentStatus("STS-J-1", "RJCT", end_to_end_id="J-E2E-1"))])
def test_status_report_is_recognised_skipped_and_its_statuses_read(name: str, status: PaymentStatus) -> None:
    assert decode_pacs008(load(name)) == [Skipped("pacs.002", (status,))]


NS002 = "urn:iso:std:iso:20022:tech:xsd:pacs.002.001.10"


def test_a_status_reports_reason_uetr_and_the_groups_status_are_read_in_both_renderings() -> None:
    xml = f"""<Document xmlns="{NS002}"><FIToFIPmtStsRpt><GrpHdr><MsgId>STS-9</MsgId></GrpHdr>
      <OrgnlGrpInfAndSts><OrgnlMsgId>M-1</OrgnlMsgId><GrpSts>RJCT</GrpSts>
        <StsRsnInf><Rsn><Cd>FRAD</Cd></Rsn></StsRsnInf></OrgnlGrpInfAndSts>
      <TxInfAndSts><OrgnlUETR>8a562c67-ca16-48ba-b074-65581be6f011</OrgnlUETR></TxInfAndSts>
      <TxInfAndSts><OrgnlTxId>TX-2</OrgnlTxId><TxSts>PDNG</TxSts><StsRsnInf><Rsn><Prtry>HELD</Prtry></Rsn></StsRsnInf>
      </TxInfAndSts></FIToFIPmtStsRpt></Document>""".encode()
    expected = (PaymentStatus("STS-9", "RJCT", "FRAD", uetr="8a562c67-ca16-48ba-b074-65581be6f011"),
                PaymentStatus("STS-9", "PDNG", "HELD", tx_id="TX-2"))
    assert decode_pacs008(xml) == [Skipped("pacs.002", expected)]
    rendered = orjson.dumps({"Document": {"FIToFIPmtStsRpt": {
        "GrpHdr": {"MsgId": "STS-9"},
        "OrgnlGrpInfAndSts": {"GrpSts": "RJCT", "StsRsnInf": [{"Rsn": {"Cd": "FRAD"}}]},
        "TxInfAndSts": [{"OrgnlUETR": "8a562c67-ca16-48ba-b074-65581be6f011"},
                        {"OrgnlTxId": "TX-2", "TxSts": "PDNG", "StsRsnInf": {"Rsn": {"Prtry": "HELD"}}}]}}})
    assert decode_pacs008(rendered) == [Skipped("pacs.002", expected)]
    assert [s.outcome for s in expected] == ["rejected", "pending"]
    assert PaymentStatus("X", "ACSC").outcome == "accepted"


@pytest.mark.parametrize("name,reason,field", [
    ("pacs008_malformed.xml", "not_xml", ""),
    ("pacs008_xxe.xml", "forbidden_dtd", ""),
    ("pacs008_billion_laughs.xml", "forbidden_dtd", ""),
    ("pacs008_v07_old.xml", "unsupported_version", "/Document"),
    ("pacs004_v09_unsupported.xml", "unsupported_message", "/Document/PmtRtr"),
])
def test_unusable_documents_are_rejected_whole(name: str, reason: str, field: str) -> None:
    rejection = only_rejection(load(name))
    assert (rejection.reason, rejection.field) == (reason, field)
    assert "root:" not in rejection.message  # nothing of /etc/passwd, no expanded entity


def test_xxe_in_utf16_is_not_expanded() -> None:
    # The byte check for <!DOCTYPE misses UTF-16; the parser still loads no DTD and resolves no entity.
    rejection = only_rejection(load("pacs008_xxe.xml").decode().replace('encoding="UTF-8"', 'encoding="UTF-16"')
                               .encode("utf-16"))
    assert rejection.reason == "forbidden_dtd"


SINGLE = load("pacs008_v10_single.xml").decode()


def edit(old: str, new: str) -> bytes:
    assert old in SINGLE
    return SINGLE.replace(old, new, 1).encode()


@pytest.mark.parametrize("raw,reason,field", [
    (edit("<EndToEndId>NOTPROVIDED</EndToEndId>", ""), "missing_field", f"{TX}[1]/PmtId/EndToEndId"),
    (edit('Ccy="MYR">12000.00', 'Ccy="MYR">12,000'), "invalid_amount", f"{TX}[1]/IntrBkSttlmAmt"),
    (edit('Ccy="MYR">12000.00', 'Ccy="MYR">-5'), "invalid_amount", f"{TX}[1]/IntrBkSttlmAmt"),
    (edit('<IntrBkSttlmAmt Ccy="MYR">12000.00</IntrBkSttlmAmt>', ""), "missing_field", f"{TX}[1]/IntrBkSttlmAmt"),
    (edit('Ccy="MYR"', 'Ccy="ringgit"'), "invalid_currency", f"{TX}[1]/IntrBkSttlmAmt/@Ccy"),
    (edit('Ccy="MYR"', ''), "missing_field", f"{TX}[1]/IntrBkSttlmAmt/@Ccy"),
    (edit("<BICFI>CIBBMYKL</BICFI>", "<BICFI>CIBB</BICFI>"), "invalid_bank", f"{TX}[1]/DbtrAgt/FinInstnId/BICFI"),
    (edit("<DbtrAgt><FinInstnId><BICFI>CIBBMYKL</BICFI></FinInstnId></DbtrAgt>", ""), "missing_field",
     f"{TX}[1]/DbtrAgt/FinInstnId/BICFI"),
    (edit("<Id>7600-1122-3344</Id>", "<Id>76AB</Id>"), "invalid_account", f"{TX}[1]/DbtrAcct/Id/Othr/Id"),
    (edit("<Id><Othr><Id>3188776655</Id></Othr></Id>", "<Id><IBAN>DE00370400440532013000</IBAN></Id>"),
     "invalid_account", f"{TX}[1]/CdtrAcct/Id/IBAN"),
    (edit("<Id><Othr><Id>3188776655</Id></Othr></Id>", "").replace(b"<Prxy><Tp><Cd>EMAL</Cd></Tp><Id>club@example.com</Id></Prxy>", b"")
     .replace(b"<DbtrAcct><Id><Othr><Id>7600-1122-3344</Id></Othr></Id></DbtrAcct>", b""),
     "missing_field", f"{TX}[1]/CdtrAcct"),
    (edit("<Cd>EMAL</Cd></Tp><Id>club@example.com", "<Cd>MBNO</Cd></Tp><Id>not a phone"), "invalid_phone",
     f"{TX}[1]/CdtrAcct/Prxy/Id"),
    (edit("<CreDtTm>2026-11-28T10:20:00</CreDtTm>", "<CreDtTm>yesterday</CreDtTm>"), "invalid_timestamp",
     "/Document/FIToFICstmrCdtTrf/GrpHdr/CreDtTm"),
])
def test_each_bad_field_is_named_by_its_xpath(raw: bytes, reason: str, field: str) -> None:
    rejection = only_rejection(raw)
    assert (rejection.reason, rejection.field) == (reason, field)
    assert field in rejection.message


@pytest.mark.parametrize("raw,reason", [
    (b"", "empty"), (b"   ", "unsupported_message"), (b"<" + b"x" * 70000, "too_large"),
    (b"[1, 2]", "unsupported_message"), (b"{\"a\": 1", "not_json"), (b"{\"Document\": []}", "wrong_type"),
    (b"{\"Document\": {\"Other\": {}}}", "unsupported_message"),
    (b"<Document xmlns=\"urn:example\"><X/></Document>", "unsupported_message"),
    (b"<Document><X/></Document>", "unsupported_message"),
])
def test_what_is_not_a_pacs008_at_all(raw: bytes, reason: str) -> None:
    assert only_rejection(raw).reason == reason


def test_message_without_transactions_or_message_id() -> None:
    no_tx = SINGLE[:SINGLE.index("<CdtTrfTxInf>")] + SINGLE[SINGLE.index("</CdtTrfTxInf>") + 14:]
    assert (only_rejection(no_tx.encode()).field) == "/Document/FIToFICstmrCdtTrf/CdtTrfTxInf"
    assert only_rejection(edit("<MsgId>CIBBMYKL-10-000777</MsgId>", "")).field == \
        "/Document/FIToFICstmrCdtTrf/GrpHdr/MsgId"


def test_json_rendering_declaring_an_old_version_is_refused() -> None:
    data = orjson.loads(load("pacs008_v09.json"))
    data["Document"]["xmlns"] = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.02"
    assert only_rejection(orjson.dumps(data)).reason == "unsupported_version"


def test_json_single_transaction_object_and_no_document_wrapper() -> None:
    data = orjson.loads(load("pacs008_v09.json"))["Document"]
    data["FIToFICstmrCdtTrf"]["CdtTrfTxInf"] = data["FIToFICstmrCdtTrf"]["CdtTrfTxInf"][0]
    [t] = transfers(orjson.dumps(data))
    assert t.tx_id == "J-TX-1"


def test_hold_command_carries_the_iso_ids_and_contract_commands_do_not() -> None:
    first = transfers(load("pacs008_v08_multi.xml"))[0]
    entry = Entry("account:CIBBMYKL:8001234567", Status.REPORTED, "PDRM")
    now = datetime(2026, 11, 28, tzinfo=timezone.utc)
    [hold] = decide_transfer(first, {entry.key: entry}, now).commands
    body = hold.to_json()
    assert body["action"] == "HOLD_TRANSFER"
    assert (body["transfer_id"], body["end_to_end_id"], body["tx_id"], body["uetr"]) == (
        "7a562c67-ca16-48ba-b074-65581be6f001", "E2E-20261128-0001", "TX-20261128-0001",
        "7a562c67-ca16-48ba-b074-65581be6f001")
    plain = Transfer(first.event_id, now, "DN1", Decimal(1), first.payer, first.payee)
    assert set(decide_transfer(plain, {entry.key: entry}, now).commands[0].to_json()) == {
        "command_id", "issued_at", "action", "bank", "account", "transfer_id", "hold_until", "event_id", "rule",
        "rules", "reasons"}


@pytest.mark.parametrize("name", ["pacs008_v08_multi.xml", "pacs008_v09.json"])
def test_no_truncation_or_corruption_escapes_as_an_exception(name: str) -> None:
    raw = load(name)
    for cut in range(0, len(raw), 7):
        for mangled in (raw[:cut], raw[:cut] + b"\x00" + raw[cut + 1:], raw[:cut] + b"&foo;" + raw[cut:]):
            results = decode_pacs008(mangled)
            assert results and all(isinstance(r, (Transfer, Rejection)) for r in results)


def test_a_bug_in_the_adapter_becomes_an_internal_error_dead_letter(monkeypatch: pytest.MonkeyPatch) -> None:
    def broken(raw: str) -> str:
        raise RuntimeError("bug")

    monkeypatch.setattr("sekat.decode.pacs008.normalise_bank", broken)
    rejection = only_rejection(load("pacs008_v10_single.xml"))
    assert (rejection.reason, rejection.message) == ("internal_error", "adapter failed: RuntimeError")


def test_a_tab_inside_a_value_does_not_shift_the_other_fields() -> None:
    [t] = transfers(edit("<TxId>CIBB-TX-777</TxId>", "<TxId>CIBB\tTX</TxId>"))
    assert t.tx_id == "CIBB\tTX" and t.end_to_end_id == "NOTPROVIDED" and t.amount == Decimal("12000.00")
