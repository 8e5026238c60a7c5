"""Decode cost per transfer: ISO 20022 pacs.008 (XML and JSON rendering) against the plain Transfer contract.

    .venv/bin/python -m load_tests.adapters_bench [--events 20000] [--repeat 5] [--per-message 1,10]
    .venv/bin/python -m load_tests.adapters_bench --against GIT_REF [--events 5000] [--repeat 9]

Prints one JSON object: µs per transfer (best of ``--repeat`` runs, each decoding ``--events`` transfers of
distinct generated messages) for every format, and each format's ratio to the contract JSON. This is the
decoder alone — the edge cost an adapter adds; the end-to-end share of the hot path is measured with the
benchmark harness on a real broker. ``pacs008_harness`` is the message the harness sends (one transaction,
no optional elements, ~770 bytes); the others carry the optional elements a bank sends (~1.3 kB a transaction).

``--against GIT_REF`` loads the adapter as it was at that commit beside the current one and times both on the
same messages, whole decodes and stages, each case of both sides once per round (best round kept): on a
shared machine that cancels most of the drift between separate runs.

Time is the CPU time of this process (``time.process_time``): on a machine shared with other work it is
inflated less than wall time, though caches shared with other processes still slow it down somewhat.
``stages_us`` splits the decoding of one-transaction messages into parse (libxml2; orjson for the JSON
rendering), field reading (ObjectPath, group header and transactions; typed structs for JSON) and mapping
onto the Transfer record (and checks).
"""

from __future__ import annotations

import argparse
import random
import subprocess
import sys
import time
from collections.abc import Callable
from types import ModuleType
from typing import Any

import orjson
from lxml import etree

from load_tests.traffic import PACS008
from sekat.decode import iso20022, pacs008
from sekat.decode.pacs008 import decode_pacs008
from sekat.decode.transfers import decode_transfer

NS = "urn:iso:std:iso:20022:tech:xsd:pacs.008.001.08"


def _digits(rng: random.Random, n: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(n))


def _tx(rng: random.Random, i: int) -> dict[str, str]:
    return {"e2e": f"E2E-{i:08d}", "tx": f"TX-{i:08d}", "uetr": f"7a562c67-ca16-48ba-b074-{i:012d}",
            "amount": f"{rng.randint(1, 500000) / 100:.2f}", "payer": _digits(rng, 12), "payee": _digits(rng, 10)}


def contract_message(rng: random.Random, i: int) -> bytes:
    t = _tx(rng, i)
    return orjson.dumps({
        "event_id": f"t-{i:08d}", "occurred_at": "2026-11-28T10:15:00.123Z", "transfer_id": t["tx"],
        "channel": "DUITNOW", "amount": t["amount"], "currency": "MYR",
        "payer": {"bank": "MBBEMYKL", "account": t["payer"], "phone": "+60123456789"},
        "payee": {"bank": "CIBBMYKL", "account": t["payee"]},
    })


def _xml_tx(t: dict[str, str]) -> str:
    return f"""<CdtTrfTxInf>
      <PmtId><InstrId>{t['tx']}</InstrId><EndToEndId>{t['e2e']}</EndToEndId><TxId>{t['tx']}</TxId><UETR>{t['uetr']}</UETR></PmtId>
      <PmtTpInf><LclInstrm><Prtry>DUITNOW</Prtry></LclInstrm></PmtTpInf>
      <IntrBkSttlmAmt Ccy="MYR">{t['amount']}</IntrBkSttlmAmt>
      <IntrBkSttlmDt>2026-11-28</IntrBkSttlmDt>
      <ChrgBr>SLEV</ChrgBr>
      <Dbtr><Nm>Ahmad bin Ali</Nm><PstlAdr><TwnNm>Kuala Lumpur</TwnNm><Ctry>MY</Ctry></PstlAdr></Dbtr>
      <DbtrAcct><Id><Othr><Id>{t['payer']}</Id></Othr></Id></DbtrAcct>
      <DbtrAgt><FinInstnId><BICFI>MBBEMYKL</BICFI></FinInstnId></DbtrAgt>
      <CdtrAgt><FinInstnId><BICFI>CIBBMYKLXXX</BICFI></FinInstnId></CdtrAgt>
      <Cdtr><Nm>Syarikat Contoh Sdn Bhd</Nm></Cdtr>
      <CdtrAcct><Id><Othr><Id>{t['payee']}</Id></Othr></Id></CdtrAcct>
      <RmtInf><Ustrd>invoice 2026-118</Ustrd></RmtInf>
    </CdtTrfTxInf>"""


def pacs008_xml(rng: random.Random, i: int, n: int) -> bytes:
    txs = "\n    ".join(_xml_tx(_tx(rng, i * n + k)) for k in range(n))
    return f"""<?xml version="1.0" encoding="UTF-8"?>
<Document xmlns="{NS}">
  <FIToFICstmrCdtTrf>
    <GrpHdr><MsgId>MSG-{i:08d}</MsgId><CreDtTm>2026-11-28T18:15:00.123+08:00</CreDtTm><NbOfTxs>{n}</NbOfTxs>
      <SttlmInf><SttlmMtd>CLRG</SttlmMtd><ClrSys><Prtry>RPP</Prtry></ClrSys></SttlmInf></GrpHdr>
    {txs}
  </FIToFICstmrCdtTrf>
</Document>""".encode()


def pacs008_json(rng: random.Random, i: int, n: int) -> bytes:
    txs: list[dict[str, Any]] = []
    for k in range(n):
        t = _tx(rng, i * n + k)
        txs.append({
            "PmtId": {"InstrId": t["tx"], "EndToEndId": t["e2e"], "TxId": t["tx"], "UETR": t["uetr"]},
            "PmtTpInf": {"LclInstrm": {"Prtry": "DUITNOW"}},
            "IntrBkSttlmAmt": {"Ccy": "MYR", "value": t["amount"]}, "IntrBkSttlmDt": "2026-11-28", "ChrgBr": "SLEV",
            "Dbtr": {"Nm": "Ahmad bin Ali"}, "DbtrAcct": {"Id": {"Othr": {"Id": t["payer"]}}},
            "DbtrAgt": {"FinInstnId": {"BICFI": "MBBEMYKL"}}, "CdtrAgt": {"FinInstnId": {"BICFI": "CIBBMYKLXXX"}},
            "Cdtr": {"Nm": "Syarikat Contoh Sdn Bhd"}, "CdtrAcct": {"Id": {"Othr": {"Id": t["payee"]}}},
            "RmtInf": {"Ustrd": ["invoice 2026-118"]},
        })
    return orjson.dumps({"Document": {"FIToFICstmrCdtTrf": {
        "GrpHdr": {"MsgId": f"MSG-{i:08d}", "CreDtTm": "2026-11-28T18:15:00.123+08:00", "NbOfTxs": str(n)},
        "CdtTrfTxInf": txs}}})


def harness_message(i: int) -> bytes:
    """The pacs.008 the benchmark harness sends (load_tests.traffic)."""
    return PACS008.format(msg_id=f"b-{i}", now="2026-11-28T10:15:00.123Z", seq=i, amount=10 + i % 5000,
                          payer_bank="MBBEMYKL", payer_acct=f"5140{i:08d}", payee_bank="CIBBMYKL",
                          payee_acct=f"80{i:08d}").encode()


def best_us_per_transfer(decode: Callable[[Any], Any], messages: list[Any], per_message: int,
                         repeat: int) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.process_time()
        for raw in messages:
            decode(raw)
        best = min(best, time.process_time() - started)
    return best / (len(messages) * per_message) * 1e6


def xml_stages(messages: list[bytes], repeat: int) -> dict[str, float]:
    """Where one-transaction XML decoding spends its time: parse, read the fields, map onto a Transfer.

    Each stage runs over all messages before the next, so ``read`` and ``map`` find their input out of the
    CPU caches: their sum exceeds what they cost inside one decode (see the README)."""
    parsed = [iso20022.parse(raw) for raw in messages]
    reader = iso20022.schema(etree.QName(parsed[0]).namespace or "")
    bodies = [root[0] for root in parsed]
    read = [reader.read(body) for body in bodies]
    return {
        "parse": round(best_us_per_transfer(iso20022.parse, messages, 1, repeat), 2),
        "read": round(best_us_per_transfer(reader.read, bodies, 1, repeat), 2),
        "map": round(best_us_per_transfer(lambda hr: pacs008._transfers(hr[0], hr[1], "MY"), read, 1, repeat), 2),
    }


def json_read(data: dict[str, Any]) -> tuple[dict[str, str], list[dict[str, str]]]:
    """The JSON rendering's field reading, as ``iso20022.read_message`` does it for a plain message."""
    body = data["Document"]["FIToFICstmrCdtTrf"]
    return iso20022._json_header(body["GrpHdr"]), [iso20022._json_transaction(tx) for tx in body["CdtTrfTxInf"]]


def json_stages(messages: list[bytes], repeat: int) -> dict[str, float]:
    """The same split for the JSON rendering: orjson decode, read the fields (typed structs), map."""
    decoded = [orjson.loads(raw) for raw in messages]
    read = [json_read(data) for data in decoded]
    return {
        "decode": round(best_us_per_transfer(orjson.loads, messages, 1, repeat), 2),
        "read": round(best_us_per_transfer(json_read, decoded, 1, repeat), 2),
        "map": round(best_us_per_transfer(lambda hr: pacs008._transfers(hr[0], hr[1], "MY"), read, 1, repeat), 2),
    }


def adapter_at(ref: str) -> ModuleType:
    """decode/pacs008.py as it was at git ``ref``, imported beside the current one."""
    source = subprocess.run(["git", "show", f"{ref}:decode/pacs008.py"], check=True,
                            capture_output=True, text=True).stdout
    module = ModuleType(f"pacs008_at_{ref.replace('~', '_').replace('^', '_')}")
    sys.modules[module.__name__] = module  # msgspec and dataclasses resolve annotations through it
    exec(compile(source, f"{ref}:decode/pacs008.py", "exec"), module.__dict__)  # noqa: S102 - our code
    return module


Case = tuple[Callable[[Any], Any], list[Any], int]  # a function, its inputs, transfers per input


def stage_cases(mod: ModuleType, rng: random.Random, events: int) -> dict[str, Case]:
    """{name: (function, inputs, transfers per input)}: whole decodes and stages, through ``mod``'s own code."""
    parse = getattr(mod, "parse", None) or (lambda raw: etree.fromstring(raw, mod._PARSER))

    def json_fields(data: dict[str, Any]) -> Any:
        body = data["Document"]["FIToFICstmrCdtTrf"]
        if hasattr(mod, "_json_transaction"):
            return mod._json_header(body["GrpHdr"]), [mod._json_transaction(tx) for tx in body["CdtTrfTxInf"]]
        header: dict[str, str] = {}
        mod._flatten_json(body["GrpHdr"], "", header, mod._JSON_HEADER)
        flat = []
        for tx in body["CdtTrfTxInf"]:
            flat.append({})
            mod._flatten_json(tx, "", flat[-1], mod._JSON_TX)
        return header, flat

    def mapping(hr: Any) -> Any:
        return mod._message(hr[0], hr[1], "MY")

    cases: dict[str, Case] = {}
    for name, messages in (("harness", [harness_message(i) for i in range(events)]),
                           ("xml_1tx", [pacs008_xml(rng, i, 1) for i in range(events)])):
        bodies = [parse(raw)[0] for raw in messages]
        reader = mod.schema(NS)
        cases.update({f"{name}/parse": (parse, messages, 1), f"{name}/read": (reader.read, bodies, 1),
                      f"{name}/map": (mapping, [reader.read(b) for b in bodies], 1),
                      f"{name}/decode": (mod.decode_pacs008, messages, 1)})
    json_1 = [pacs008_json(rng, i, 1) for i in range(events)]
    decoded = [orjson.loads(raw) for raw in json_1]
    cases.update({"json_1tx/decode_json": (orjson.loads, json_1, 1), "json_1tx/read": (json_fields, decoded, 1),
                  "json_1tx/map": (mapping, [json_fields(d) for d in decoded], 1),
                  "json_1tx/decode": (mod.decode_pacs008, json_1, 1),
                  "xml_10tx/decode": (mod.decode_pacs008, [pacs008_xml(rng, i, 10) for i in range(events // 10)], 10),
                  "json_10tx/decode": (mod.decode_pacs008, [pacs008_json(rng, i, 10) for i in range(events // 10)],
                                       10)})
    return cases


def compare(ref: str, events: int, repeat: int) -> dict[str, Any]:
    """µs per transfer of the adapter at ``ref`` and now, every case of both run once per round, best round."""
    sides = {"before": stage_cases(adapter_at(ref), random.Random(9), events),
             "after": stage_cases(pacs008, random.Random(9), events)}
    best: dict[tuple[str, str], float] = {}
    for _ in range(repeat):
        for case in sides["after"]:
            for side, cases in sides.items():
                function, inputs, per = cases[case]
                started = time.process_time()
                for item in inputs:
                    function(item)
                spent = (time.process_time() - started) / (len(inputs) * per) * 1e6
                best[case, side] = min(best.get((case, side), spent), spent)
    return {case: {"before": round(best[case, "before"], 2), "after": round(best[case, "after"], 2),
                   "ratio": round(best[case, "after"] / best[case, "before"], 2)} for case in sides["after"]}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="transfers decoded per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    parser.add_argument("--per-message", default="1,10", help="transactions per pacs.008 message, comma-separated")
    parser.add_argument("--against", metavar="GIT_REF",
                        help="instead: the adapter at this commit against the current one, interleaved, per stage")
    args = parser.parse_args(argv)
    if args.against:
        print(orjson.dumps({"against": args.against, "events": args.events, "repeat": args.repeat,
                            "us_per_transfer": compare(args.against, args.events, args.repeat)},
                           option=orjson.OPT_INDENT_2).decode())
        return
    rng = random.Random(9)

    contract = [contract_message(rng, i) for i in range(args.events)]
    check = decode_transfer(contract[0])
    assert not hasattr(check, "reason"), check
    results: dict[str, Any] = {"events": args.events, "repeat": args.repeat, "us_per_transfer": {}}
    base = best_us_per_transfer(decode_transfer, contract, 1, args.repeat)
    results["us_per_transfer"]["contract_json"] = round(base, 2)
    for n in (int(x) for x in args.per_message.split(",")):
        count = max(1, args.events // n)
        for name, build in (("pacs008_xml", pacs008_xml), ("pacs008_json", pacs008_json)):
            messages = [build(rng, i, n) for i in range(count)]
            decoded = decode_pacs008(messages[0])
            assert len(decoded) == n and all(not hasattr(d, "reason") for d in decoded), decoded
            results["us_per_transfer"][f"{name}_{n}tx"] = round(
                best_us_per_transfer(decode_pacs008, messages, n, args.repeat), 2)
    harness = [harness_message(i) for i in range(args.events)]
    assert not hasattr(decode_pacs008(harness[0])[0], "reason")
    results["us_per_transfer"]["pacs008_harness"] = round(
        best_us_per_transfer(decode_pacs008, harness, 1, args.repeat), 2)
    results["stages_us"] = {"pacs008_harness": xml_stages(harness, args.repeat),
                            "pacs008_xml_1tx": xml_stages([pacs008_xml(rng, i, 1) for i in range(args.events)],
                                                          args.repeat),
                            "pacs008_json_1tx": json_stages([pacs008_json(rng, i, 1) for i in range(args.events)],
                                                            args.repeat)}
    results["ratio_to_contract_json"] = {k: round(v / base, 2) for k, v in results["us_per_transfer"].items()}
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
