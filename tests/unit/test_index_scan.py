"""Reading the index into the replica's arrays: the copy-free status read agrees with the full parse, entry by
entry and for a batch with its expiries read at once."""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sekat.blocklist.index_scan import (ABSENT, ACCOUNT, CONFIRMED, REPORTED, REVOKED, STATUS_CODES, batch_arrays,
                                        batch_columns, epochs,
                                        status_code)
from sekat.blocklist.store import status_and_expiry
from sekat.records import Entry, Report, Status, iso


def full(raw: bytes) -> tuple[int, int]:
    """The answer by the full path alone (``status_and_expiry``, then ``fromisoformat``; a revoked or absent
    entry's expiry is never used)."""
    found = status_and_expiry(raw)
    if found is None:
        return ABSENT, 0
    if found[0] == "revoked":
        return REVOKED, 0
    status, expires = found
    return STATUS_CODES[status], int(datetime.fromisoformat(expires).timestamp()) if expires else 0


def entry(status: Status, expires_at: str = "", history: tuple[Report, ...] = ()) -> bytes:
    return orjson.dumps(Entry(key="phone:+60111111111", status=status, source="PDRM", reason="scam",
                              expires_at=expires_at, history=history).to_json())


def test_entries_as_the_index_writes_them() -> None:
    report = Report(report_id="r1", reported_at=datetime.fromisoformat("2026-11-01T00:00:00+00:00"), kind="phone",
                    value="+60111111111", status=Status.REVOKED, source="NSRC")
    for status in Status:
        for expires in ("", "2027-01-01T00:00:00+00:00"):
            for history in ((), (report,)):
                raw = entry(status, expires, history)
                assert status_code(raw) == full(raw), raw
    assert status_code(entry(Status.CONFIRMED)) == (2, 0)
    assert status_code(entry(Status.REPORTED, "2027-01-01T00:00:00+00:00"))[1] == 1798761600
    assert status_code(entry(Status.REVOKED)) == (REVOKED, 0)


@pytest.mark.parametrize("raw", [
    b"garbage", b"", b'{"status":"', b'{"status":"confirmed', b'{"status":"confirmed"', b'{"status": "confirmed"}',
    b'{"status":"confirmedx"}', b'{"status":"confirmed","expires_at":"', b'{"key":"x","status":"reported",'
    b'"expires_at":"2027-01-01T00:00:00Z"}', b'[1,2]', b'{"status":"unknown","expires_at":""}',
])
def test_odd_values_get_the_full_paths_answer(raw: bytes) -> None:
    try:
        expected = full(raw)
    except ValueError:  # the full path refuses it (an unreadable expiry): so must the fast one
        with pytest.raises(ValueError):
            status_code(raw)
        return
    assert status_code(raw) == expected


@given(st.binary(max_size=80))
def test_any_bytes_get_the_full_paths_answer(raw: bytes) -> None:
    try:
        expected = full(raw)
    except (ValueError, KeyError):
        return
    assert status_code(raw) == expected


def batch(values: list[bytes | None]) -> list[tuple[str, int, int]]:
    """What the start-up read keeps of a batch: (key, code, expiry) of each entry (revoked ones too)."""
    keys = [f"sekat:bl:phone:+6011{i:07d}".encode() for i in range(len(values))]
    kept, hashes, codes, expiries = batch_arrays(keys, values, len("sekat:bl:"))
    assert hashes.tolist() == [hash(k) for k in kept]
    return list(zip(kept, codes.tolist(), expiries.tolist()))


def one_by_one(values: list[bytes | None]) -> list[tuple[str, int, int]]:
    """The same batch read entry by entry with ``status_code``, each expiry by ``fromisoformat``."""
    out = []
    for i, raw in enumerate(values):
        if raw is not None and (found := status_code(raw))[0] != ABSENT:
            out.append((f"phone:+6011{i:07d}", *found))
    return out


def test_a_batch_reads_as_entry_by_entry() -> None:
    report = Report(report_id="r1", reported_at=datetime.fromisoformat("2026-11-01T00:00:00+00:00"), kind="phone",
                    value="+60111111111", status=Status.CONFIRMED, source="PDRM")
    values: list[bytes | None] = [None, b"garbage", b'{"status": "confirmed"}', b'{"status":"revoked"}']
    for status in Status:
        for expires in ("", "2027-01-01T00:00:00.000Z", "2027-06-30T23:59:59.999Z", "2027-01-01T00:00:00+00:00",
                        "2027-01-01T00:00:00Z", "2027-01-01", "2031-12-31T12:00:00.500+00:00"):
            values.append(entry(status, expires, (report,)))
    got = batch(values)
    assert got == one_by_one(values)
    assert ("phone:+60110000002", 2, 0) in got  # an odd value keeps its answer: read by the full parse
    assert [e for _, _, e in got].count(1798761600) == 8  # 2027-01-01 midnight in four spellings, 2 statuses


@given(st.lists(st.datetimes(min_value=datetime(2001, 1, 1), max_value=datetime(2099, 12, 31),
                             timezones=st.just(timezone.utc)), max_size=30),
       st.lists(st.sampled_from(["reported", "confirmed", "revoked"]), min_size=30, max_size=30))
def test_expiries_as_sekat_writes_them_read_as_fromisoformat_reads_them(when: list[datetime], status: list[str]) -> None:
    values: list[bytes | None] = [orjson.dumps({"key": "k", "status": s, "expires_at": iso(w)})
                                  for w, s in zip(when, status)]
    assert batch(values) == one_by_one(values)


@given(st.lists(st.one_of(st.none(), st.binary(max_size=60),
                          st.builds(lambda s, e: b'{"status":"' + s + b'","expires_at":"' + e + b'"}',
                                    st.sampled_from([b"reported", b"confirmed", b"revoked", b"x"]),
                                    st.binary(max_size=30))), max_size=20))
def test_any_batch_reads_as_entry_by_entry(values: list[bytes | None]) -> None:
    try:
        expected = one_by_one(values)
    except (ValueError, KeyError):  # the full path refuses a value: so must the batch
        with pytest.raises((ValueError, KeyError)):
            batch(values)
        return
    assert batch(values) == expected


def test_epochs_of_nothing() -> None:
    assert epochs([]).tolist() == [] and epochs([b"", b""]).tolist() == [0, 0]


def test_a_batch_keeps_revoked_entries_and_marks_accounts() -> None:
    keys = [b"sekat:bl:phone:+60111111111", b"sekat:bl:account:CIBBMYKL:8001234567", b"sekat:bl:account:CIBBMYKL:1"]
    values: list[bytes | None] = [entry(Status.REVOKED), entry(Status.CONFIRMED), b"garbage"]
    kept, _, codes, _ = batch_arrays(keys, values, len("sekat:bl:"))
    assert kept == ["phone:+60111111111", "account:CIBBMYKL:8001234567"]
    assert codes.tolist() == [REVOKED, CONFIRMED | ACCOUNT]


def test_wallet_and_proxy_entries_are_read_with_kinds_of_their_own() -> None:
    from sekat.blocklist.index_scan import PROXY, WALLET, _pattern

    _, heads = _pattern("sekat:")
    proxy_key = f"sekat:bl:proxy:NRIC:{'ab' * 16}".encode()
    assert b"sekat:bl:wallet:TNG:0123456789".startswith(heads) and proxy_key.startswith(heads)
    keys = [b"sekat:bl:wallet:TNG:0123456789", proxy_key]
    kept, _, codes, _ = batch_arrays(keys, [entry(Status.CONFIRMED), entry(Status.REVOKED)], len("sekat:bl:"))
    assert kept == ["wallet:TNG:0123456789", proxy_key.decode()[len("sekat:bl:"):]]
    assert codes.tolist() == [CONFIRMED | WALLET, REVOKED | PROXY]


def in_bulk(keys: list[bytes], values: list[bytes | None]) -> list[tuple[str, int, int]]:
    """What the bulk read keeps of a batch, in the entry-by-entry read's terms (sorted: its order may differ)."""
    got = batch_columns(keys, values, len("sekat:bl:"))
    names = got.text.decode().split("\n") if len(got) else []
    assert len(names) == len(got) and got.hashes.tolist() == [hash(k) for k in names]
    return sorted(zip(names, got.codes.tolist(), got.expiries.tolist()))


def one_at_a_time(keys: list[bytes], values: list[bytes | None]) -> list[tuple[str, int, int]]:
    kept, _, codes, expiries = batch_arrays(keys, values, len("sekat:bl:"))
    return sorted(zip(kept, codes.tolist(), expiries.tolist()))


def test_the_bulk_read_of_entries_as_the_index_writes_them_agrees_entry_by_entry() -> None:
    report = Report(report_id="r1", reported_at=datetime.fromisoformat("2026-11-01T00:00:00+00:00"), kind="phone",
                    value="+60111111111", status=Status.CONFIRMED, source="PDRM", reason='a "quoted" reason')
    keys: list[bytes] = []
    values: list[bytes | None] = []
    names = ["phone:+60111111111", "account:CIBBMYKL:8001234567", "wallet:TNG:0123456789", "proxy:NRIC:ab12",
             "sender:MAYBANK", "url:https://x.example/a", "domain:x.example", "phone:+6011é", "pho", "proxyx:1"]
    for i, name in enumerate(names):
        for status in Status:
            for expires in ("", "2027-01-01T00:00:00.000Z", "2027-06-30T23:59:59.999Z", "2027-01-01T00:00:00Z",
                            "2031-12-31T12:00:00.500+00:00"):
                key = f"{name}/{status.value}/{expires}" if i < 7 else name
                keys.append(f"sekat:bl:{key}".encode())
                values.append(orjson.dumps(Entry(key=key, status=status, source="PDRM", reason="scam",
                                                 expires_at=expires, history=(report,)).to_json()))
    # values not as Sekat writes them, or not of their key: each read as the entry-by-entry read reads it
    odd = [None, b"garbage", b'{"status": "confirmed"}', b'{"key":"phone:+1","status":"revoked"}', b"",
           b'{"key":"phone:+2","status":"confirmed","expires_at":"2027-01-01T00:00:00.000Z',
           b'{"key":"phone:+3","status":"reported","expires_at":"2027-01-01"}',
           b'{"key":"phone:+4","status":"reported"}', b'{"key":"phone:+5","status":"reporte']
    keys += [f"sekat:bl:phone:+{i}".encode() for i in range(len(odd))]
    values += odd
    got = in_bulk(keys, values)
    assert got == one_at_a_time(keys, values)
    assert ("phone:+7", REPORTED, 0) in got and ("phone:+3", REVOKED, 0) in got  # by the full parse
    assert in_bulk([], []) == [] and in_bulk([b"sekat:bl:phone:+1"], [None]) == []


@given(st.lists(st.tuples(st.sampled_from(["phone:+6011", "account:B:", "wallet:", "proxy:", "url:", "x", ""]),
                          st.text(st.characters(blacklist_categories=("Cs",), blacklist_characters="\n"),
                                  max_size=12),  # no newline in a stored key
                          st.sampled_from(["reported", "confirmed", "revoked", "x"]),
                          st.one_of(st.just(""), st.datetimes(min_value=datetime(2001, 1, 1),
                                                              max_value=datetime(2099, 12, 31),
                                                              timezones=st.just(timezone.utc)).map(iso),
                                    st.text(max_size=26)),
                          st.booleans(), st.one_of(st.none(), st.binary(max_size=40))), max_size=25))
def test_any_batch_reads_in_bulk_as_entry_by_entry(rows: list) -> None:
    keys: list[bytes] = []
    values: list[bytes | None] = []
    for head, rest, status, expires, own_key, raw in rows:
        key = head + rest
        keys.append(f"sekat:bl:{key}".encode())
        values.append(raw if raw is not None and not own_key else
                      orjson.dumps({"key": key if own_key else "phone:+1", "status": status, "source": "S",
                                    "reason": "r", "expires_at": expires}))
    try:
        expected = one_at_a_time(keys, values)
    except (ValueError, KeyError):  # the full path refuses a value: so must the bulk read
        with pytest.raises((ValueError, KeyError)):
            in_bulk(keys, values)
        return
    assert in_bulk(keys, values) == expected
