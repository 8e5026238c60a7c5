"""The replica's disk copy: it comes back as it was written, readable by this user only, or it is refused
whole (short, damaged, of another version, too old, writable by others) with a log line, never a crash."""

from __future__ import annotations

import logging
import os
import stat
import struct
import time
from pathlib import Path

import numpy as np
import pytest

from sekat.blocklist import replica_disk as disk
from sekat.blocklist import replica_snapshot as stored

KEYS = [["phone:+60111111111", "account:CIBBMYKL:8001234567"], ["phone:+60122222222"]]


def chunks() -> list[bytes]:
    return [stored.encode_chunk(keys, np.full(len(keys), 2, np.uint8), np.zeros(len(keys), np.uint32))
            for keys in KEYS]


def meta(written_at: float, gen: str = "g1") -> stored.Meta:
    return stored.Meta(gen=gen, chunks=2, entries=3, last_id="1700000000000-3", added=42, build="b1",
                       written_at=written_at)


def written(tmp_path: Path, written_at: float | None = None) -> disk.DiskCopy:
    copy = disk.DiskCopy(tmp_path / "replica", "sekat:", max_age_s=3600)
    assert copy.write(meta(time.time() if written_at is None else written_at), chunks())
    return copy


def test_a_copy_reads_back_as_this_process_hashes_readable_by_its_user_only(tmp_path: Path) -> None:
    copy = written(tmp_path)
    found = copy.load()
    assert found is not None
    described, snap = found
    assert (described.gen, described.last_id, described.added, described.build, described.entries) == \
        ("g1", "1700000000000-3", 42, "b1", 3)
    assert snap.hashes.tolist() == [hash(k) for keys in KEYS for k in keys]
    assert snap.codes.tolist() == [2, 2, 2] and snap.last_id == "1700000000000-3" and snap.build == "b1"
    assert stat.S_IMODE(copy.path.stat().st_mode) == 0o600
    assert stat.S_IMODE(copy.path.parent.stat().st_mode) == 0o700
    assert copy.current_gen() == "g1"
    assert [p.name for p in copy.path.parent.iterdir()] == ["sekat_replica.skd"]  # no temporary file left


def test_the_same_generation_is_not_written_again(tmp_path: Path) -> None:
    copy = written(tmp_path)
    before = copy.path.stat().st_mtime_ns
    assert not copy.write(meta(time.time()), chunks())
    assert copy.path.stat().st_mtime_ns == before
    assert copy.write(meta(time.time(), gen="g2"), chunks()) and copy.current_gen() == "g2"


@pytest.mark.parametrize("damage, why", [
    (lambda b: b[: len(b) // 2], "checksum"),
    (lambda b: b[:5], "too short"),
    (lambda b: b"", "too short"),
    (lambda b: b[:30] + bytes([b[30] ^ 0xFF]) + b[31:], "checksum"),
    (lambda b: b"XXXX" + b[4:], "not a replica disk copy"),
    (lambda b: b[:4] + struct.pack("<I", 99) + b[8:], "format version 99"),
])
def test_a_damaged_truncated_or_other_version_file_is_refused_with_a_log(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, damage, why: str) -> None:
    copy = written(tmp_path)
    copy.path.write_bytes(damage(copy.path.read_bytes()))
    with caplog.at_level(logging.WARNING, logger="sekat.blocklist.replica_disk"):
        assert copy.load() is None
    assert why in caplog.text and "not used" in caplog.text


def test_a_whole_file_whose_chunk_is_not_whole_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    copy = disk.DiskCopy(tmp_path, "sekat:", max_age_s=3600)
    copy.path.write_bytes(disk.encode(disk.DiskMeta.of(meta(time.time())), [b"SKR1" + b"\0" * 3]))
    os.chmod(copy.path, 0o600)
    with caplog.at_level(logging.WARNING, logger="sekat.blocklist.replica_disk"):
        assert copy.load() is None
    assert "not used" in caplog.text


def test_a_copy_older_than_the_max_age_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    copy = written(tmp_path, written_at=time.time() - 3601)
    with caplog.at_level(logging.WARNING, logger="sekat.blocklist.replica_disk"):
        assert copy.load() is None
    assert "h old" in caplog.text and "SEKAT_REPLICA_DISK_MAX_AGE_S" in caplog.text
    assert copy.load(now=time.time() - 10) is not None


def test_a_copy_others_may_write_is_refused(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    copy = written(tmp_path)
    os.chmod(copy.path, 0o622)
    with caplog.at_level(logging.WARNING, logger="sekat.blocklist.replica_disk"):
        assert copy.load() is None
    assert "others may write it" in caplog.text


def test_no_copy_is_none(tmp_path: Path) -> None:
    assert disk.DiskCopy(tmp_path / "nothing", "sekat:").load() is None


def test_a_directory_that_cannot_be_written_logs_and_keeps_the_worker_going(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("not a directory")
    copy = disk.DiskCopy(blocker / "replica", "sekat:")
    with caplog.at_level(logging.WARNING, logger="sekat.blocklist.replica_disk"):
        assert not copy.write(meta(time.time()), chunks())
    assert "not written" in caplog.text


def test_an_abandoned_write_leaves_the_previous_copy(tmp_path: Path) -> None:
    copy = written(tmp_path)
    writer = copy.writer("g2")
    assert writer is not None
    writer.add(chunks()[0])
    writer.abandon()
    assert copy.current_gen() == "g1" and copy.load() is not None
    assert [p.name for p in copy.path.parent.iterdir()] == ["sekat_replica.skd"]
