"""Decode cost per transfer: ISO 20022 pacs.008 (XML and JSON rendering) against the plain Transfer contract.

    .venv/bin/python -m load_tests.adapters_bench [--events 20000] [--repeat 5] [--per-message 1,10]
    .venv/bin/python -m load_tests.adapters_bench --against GIT_REF [--events 5000] [--repeat 9]

Prints one JSON object: µs per transfer (best of ``--repeat`` runs, each decoding ``--events`` transfers of
distinct generated messages) for every format, and each format's ratio to the contract JSON. This is the
decoder alone — the edge cost an adapter adds; the end-to-end share of the hot path is measured with the
benchmark harness on a real broker. ``pacs008_harness`` is the message the harness sends (one transaction,
no optional elements, ~770 bytes); the others carry the optional elements a bank sends (~1.3 kB a transaction).

``--against GIT_REF`` times the pacs.008 decoder as it was at that commit against the one in this tree, on
the same messages, whole decodes and stages. Each side runs in a process of its own, the commit's from its
tree extracted into a temporary directory (``git archive``), so the decoder is imported with the files and
module names it had then, wherever it lived (``LAYOUTS``). Each round runs every case once on each side in
turn (best round kept): on a shared machine that cancels most of the drift between separate runs.

Time is the CPU time of the process that decodes (``time.process_time``): on a machine shared with other work
it is inflated less than wall time, though caches shared with other processes still slow it down somewhat.
``stages_us`` splits the decoding of one-transaction messages into parse (libxml2; orjson for the JSON
rendering), field reading (ObjectPath, group header and transactions; typed structs for JSON) and mapping
onto the Transfer record (and checks). Each stage runs over all messages before the next, so ``read`` and
``map`` find their input out of the CPU caches: their sum exceeds what they cost inside one decode (see
docs/input-formats.md).
"""

from __future__ import annotations

import argparse
import importlib
import random
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import IO, Any

import orjson
from lxml import etree

from load_tests.traffic import PACS008

# Nothing of sekat is imported here: a side process (``--side``) imports the decoder of the tree it times.
REPO = Path(__file__).resolve().parents[1]

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
        best = min(best, us_per_transfer(decode, messages, per_message))
    return best


def us_per_transfer(decode: Callable[[Any], Any], messages: list[Any], per_message: int) -> float:
    started = time.process_time()
    for raw in messages:
        decode(raw)
    return (time.process_time() - started) / (len(messages) * per_message) * 1e6


# Where the pacs.008 decoder lives in a tree, newest layout first: (a file only that layout has, the module
# that reads the message, the module that maps it and holds ``decode_pacs008``).
LAYOUTS = (
    ("decode/iso20022.py", "sekat.decode.iso20022", "sekat.decode.pacs008"),
    ("decode/pacs008.py", "sekat.decode.pacs008", "sekat.decode.pacs008"),
    ("streams/adapters/pacs008.py", "streams.adapters.pacs008", "streams.adapters.pacs008"),
)


def import_decoder(root: Path) -> tuple[ModuleType, ModuleType]:
    """The pacs.008 decoder of the tree at ``root``: its reading module and its mapping module.

    Call it once per process, before anything imports ``sekat``: the tree goes first on ``sys.path``, and its
    top-level folders become ``sekat.*`` packages as pyproject.toml's package-dir maps them (a tree from before
    the one namespace has no such folders, and imports its own top-level packages).
    """
    sys.path.insert(0, str(root))
    if (root / "sekat" / "__init__.py").exists():
        import sekat

        assert Path(sekat.__file__).resolve().parent == (root / "sekat").resolve(), sekat.__file__
        sekat.__path__.append(str(root))
    for marker, reading, mapping in LAYOUTS:
        if (root / marker).exists():
            return importlib.import_module(reading), importlib.import_module(mapping)
    raise SystemExit(f"no pacs.008 decoder found in {root} (looked for {', '.join(m for m, _, _ in LAYOUTS)})")


Case = tuple[Callable[[Any], Any], list[Any], int]  # a function, its inputs, transfers per input


def stage_cases(reading: ModuleType, mapping: ModuleType, events: int) -> dict[str, Case]:
    """{name: (function, inputs, transfers per input)}: whole decodes and stages, through the given modules.

    The messages are the same for every tree (a fixed seed); the names the stages are reached by are those of
    each layout in ``LAYOUTS``."""
    rng = random.Random(9)
    parse = getattr(reading, "parse", None) or (lambda raw: etree.fromstring(raw, reading._PARSER))
    map_fields = getattr(mapping, "_transfers", None) or mapping._message
    decode = mapping.decode_pacs008

    def json_fields(data: dict[str, Any]) -> Any:
        body = data["Document"]["FIToFICstmrCdtTrf"]
        if hasattr(reading, "_json_transaction"):
            return reading._json_header(body["GrpHdr"]), [reading._json_transaction(tx) for tx in body["CdtTrfTxInf"]]
        header: dict[str, str] = {}
        reading._flatten_json(body["GrpHdr"], "", header, reading._JSON_HEADER)
        flat = []
        for tx in body["CdtTrfTxInf"]:
            flat.append({})
            reading._flatten_json(tx, "", flat[-1], reading._JSON_TX)
        return header, flat

    def mapped(fields: Any) -> Any:
        return map_fields(fields[0], fields[1], "MY")

    cases: dict[str, Case] = {}
    for name, messages in (("harness", [harness_message(i) for i in range(events)]),
                           ("xml_1tx", [pacs008_xml(rng, i, 1) for i in range(events)])):
        bodies = [parse(raw)[0] for raw in messages]
        reader = reading.schema(NS)
        cases.update({f"{name}/parse": (parse, messages, 1), f"{name}/read": (reader.read, bodies, 1),
                      f"{name}/map": (mapped, [reader.read(b) for b in bodies], 1),
                      f"{name}/decode": (decode, messages, 1)})
    json_1 = [pacs008_json(rng, i, 1) for i in range(events)]
    decoded = [orjson.loads(raw) for raw in json_1]
    cases.update({"json_1tx/decode_json": (orjson.loads, json_1, 1), "json_1tx/read": (json_fields, decoded, 1),
                  "json_1tx/map": (mapped, [json_fields(d) for d in decoded], 1),
                  "json_1tx/decode": (decode, json_1, 1),
                  "xml_10tx/decode": (decode, [pacs008_xml(rng, i, 10) for i in range(events // 10)], 10),
                  "json_10tx/decode": (decode, [pacs008_json(rng, i, 10) for i in range(events // 10)], 10)})
    return cases


def serve_side(root: Path, events: int, commands: IO[str], answers: IO[str]) -> None:
    """A side of ``--against``: the case names as one JSON line, then each named case run once, its µs a line."""
    cases = stage_cases(*import_decoder(root), events)
    answers.write(orjson.dumps(list(cases)).decode() + "\n")
    answers.flush()
    for line in commands:
        function, inputs, per = cases[line.strip()]
        answers.write(f"{us_per_transfer(function, inputs, per)}\n")
        answers.flush()


class Side:
    """The decoder of one tree in a process of its own, running a case when asked."""

    def __init__(self, root: Path, events: int) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "load_tests.adapters_bench", "--side", str(root), "--events", str(events)],
            cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.commands, self.answers = self.proc.stdin, self.proc.stdout
        first = self.answers.readline()
        if not first:
            self.proc.wait()
            raise SystemExit(f"the decoder in {root} could not be loaded (exit code {self.proc.returncode})")
        self.cases: list[str] = orjson.loads(first)

    def run(self, case: str) -> float:
        self.commands.write(case + "\n")
        self.commands.flush()
        return float(self.answers.readline())

    def close(self) -> None:
        self.commands.close()
        self.proc.wait()


def extract(ref: str, into: Path) -> None:
    """The tree of git ``ref`` written out under ``into``."""
    archive = subprocess.run(["git", "-C", str(REPO), "archive", "--format=tar", ref], capture_output=True)
    if archive.returncode != 0:
        raise SystemExit(f"git archive {ref}: {archive.stderr.decode().strip()}")
    subprocess.run(["tar", "-x", "-C", str(into)], input=archive.stdout, check=True)


def compare(ref: str, events: int, repeat: int) -> dict[str, Any]:
    """µs per transfer of the decoder at ``ref`` and in this tree, every case of both run once per round."""
    with tempfile.TemporaryDirectory(prefix="adapters-bench-") as tmp:
        extract(ref, Path(tmp))
        sides: dict[str, Side] = {}
        try:
            sides["before"] = Side(Path(tmp), events)
            sides["after"] = Side(REPO, events)
            cases = [case for case in sides["after"].cases if case in sides["before"].cases]
            best: dict[tuple[str, str], float] = {}
            for _ in range(repeat):
                for case in cases:
                    for name, side in sides.items():
                        spent = side.run(case)
                        best[case, name] = min(best.get((case, name), spent), spent)
        finally:
            for side in sides.values():
                side.close()
    return {case: {"before": round(best[case, "before"], 2), "after": round(best[case, "after"], 2),
                   "ratio": round(best[case, "after"] / best[case, "before"], 2)} for case in cases}


def stages(cases: dict[str, Case], prefix: str, names: dict[str, str], repeat: int) -> dict[str, float]:
    """{stage: µs per transfer} of the cases ``prefix/...`` (``names``: stage → case name)."""
    out = {}
    for stage, case in names.items():
        function, inputs, per = cases[f"{prefix}/{case}"]
        out[stage] = round(best_us_per_transfer(function, inputs, per, repeat), 2)
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=20000, help="transfers decoded per run")
    parser.add_argument("--repeat", type=int, default=5, help="runs; the best is reported")
    parser.add_argument("--per-message", default="1,10", help="transactions per pacs.008 message, comma-separated")
    parser.add_argument("--against", metavar="GIT_REF",
                        help="instead: the decoder at this commit against this tree's, interleaved, per stage")
    parser.add_argument("--side", metavar="TREE", type=Path, help=argparse.SUPPRESS)  # one side of --against
    args = parser.parse_args(argv)
    if args.side:
        serve_side(args.side, args.events, sys.stdin, sys.stdout)
        return
    if args.against:
        print(orjson.dumps({"against": args.against, "events": args.events, "repeat": args.repeat,
                            "us_per_transfer": compare(args.against, args.events, args.repeat)},
                           option=orjson.OPT_INDENT_2).decode())
        return
    reading, mapping = import_decoder(REPO)
    decode_pacs008 = mapping.decode_pacs008
    from sekat.decode.transfers import decode_transfer

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
    cases = stage_cases(reading, mapping, args.events)
    xml = {"parse": "parse", "read": "read", "map": "map"}
    results["stages_us"] = {"pacs008_harness": stages(cases, "harness", xml, args.repeat),
                            "pacs008_xml_1tx": stages(cases, "xml_1tx", xml, args.repeat),
                            "pacs008_json_1tx": stages(cases, "json_1tx",
                                                       {"decode": "decode_json", "read": "read", "map": "map"},
                                                       args.repeat)}
    results["ratio_to_contract_json"] = {k: round(v / base, 2) for k, v in results["us_per_transfer"].items()}
    print(orjson.dumps(results, option=orjson.OPT_INDENT_2).decode())


if __name__ == "__main__":
    main()
