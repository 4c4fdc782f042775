"""One contract, two backends: the in-memory twin and the LMDB log must behave the same."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from persistence.lmdb_log import LmdbLog
from persistence.log import MemoryLog, RecordLog
from persistence.records import GENESIS_CHAIN, CorruptRecord, encode_record, raw_of

Reopen = Callable[[RecordLog], RecordLog]


@pytest.fixture(params=["memory", "lmdb"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[RecordLog, Reopen]]:
    if request.param == "memory":
        memory = MemoryLog()

        def reopen_memory(log: RecordLog) -> RecordLog:
            assert isinstance(log, MemoryLog)
            return log.reopen()

        yield memory, reopen_memory
        return
    opened: list[RecordLog] = []

    def reopen_lmdb(log: RecordLog) -> RecordLog:
        log.close()
        fresh = LmdbLog(tmp_path, 1 << 24)
        opened.append(fresh)
        return fresh

    first = LmdbLog(tmp_path, 1 << 24)
    opened.append(first)
    yield first, reopen_lmdb
    opened[-1].close()


def fill(log: RecordLog, count: int) -> list[bytes]:
    payloads = [f"batch {i} ".encode() * (i + 1) for i in range(1, count + 1)]
    for timestamp, payload in enumerate(payloads, start=100):
        log.append(payload, timestamp)
    return payloads


def test_append_then_read_everything(backend: tuple[RecordLog, Reopen]) -> None:
    log, _ = backend
    payloads = fill(log, 5)
    records = list(log.read(1, GENESIS_CHAIN))
    assert [r.seq for r in records] == [1, 2, 3, 4, 5]
    assert [r.payload for r in records] == payloads
    assert [r.timestamp_ns for r in records] == [100, 101, 102, 103, 104]
    assert log.last_seq == 5 and log.last_chain == records[-1].chain


def test_read_a_range(backend: tuple[RecordLog, Reopen]) -> None:
    log, _ = backend
    payloads = fill(log, 6)
    first = list(log.read(1, GENESIS_CHAIN, 1))
    middle = list(log.read(2, first[0].chain, 4))
    assert [r.seq for r in middle] == [2, 3, 4]
    assert [r.payload for r in middle] == payloads[1:4]


def test_reopen_finds_the_tail(backend: tuple[RecordLog, Reopen]) -> None:
    log, reopen = backend
    fill(log, 3)
    chain = log.last_chain
    log = reopen(log)
    assert (log.last_seq, log.last_chain, log.last_timestamp_ns) == (3, chain, 102)
    log.append(b"after restart", 200)
    assert [r.seq for r in log.read(1, GENESIS_CHAIN)] == [1, 2, 3, 4]


def test_checksum_failure_stops_at_the_damaged_record(backend: tuple[RecordLog, Reopen]) -> None:
    log, _ = backend
    fill(log, 5)
    second = list(log.read(1, GENESIS_CHAIN, 2))[-1]
    raw = raw_of(next(log.read(3, second.chain, 3)))
    flipped = bytearray(raw)
    flipped[30] ^= 0x01
    log.overwrite_raw(3, bytes(flipped))
    seen = []
    with pytest.raises(CorruptRecord) as failure:
        for record in log.read(1, GENESIS_CHAIN):
            seen.append(record.seq)
    assert seen == [1, 2]
    assert failure.value.seq == 3 and "checksum" in failure.value.reason


@pytest.mark.parametrize("keep_bytes", [0, 10, -7])
def test_torn_tail_is_detected_and_not_returned(
    backend: tuple[RecordLog, Reopen], keep_bytes: int
) -> None:
    log, reopen = backend
    fill(log, 4)
    last = list(log.read(1, GENESIS_CHAIN))[-1]
    log.overwrite_raw(4, raw_of(last)[:keep_bytes])
    seen = []
    with pytest.raises(CorruptRecord) as failure:
        for record in log.read(1, GENESIS_CHAIN):
            seen.append(record.seq)
    assert seen == [1, 2, 3] and failure.value.seq == 4
    with pytest.raises(CorruptRecord):
        reopen(log)  # a shard will not even open a log whose last record is torn


def test_broken_hash_chain(backend: tuple[RecordLog, Reopen]) -> None:
    log, _ = backend
    fill(log, 5)
    # A record that is whole and checksummed, but chained to the wrong predecessor.
    forged = encode_record(3, 102, b"forged but well formed", GENESIS_CHAIN)
    log.overwrite_raw(3, raw_of(forged))
    with pytest.raises(CorruptRecord) as failure:
        list(log.read(1, GENESIS_CHAIN))
    assert failure.value.seq == 3 and "chain" in failure.value.reason


def test_replaced_record_breaks_the_chain_after_it(backend: tuple[RecordLog, Reopen]) -> None:
    log, _ = backend
    fill(log, 5)
    records = list(log.read(1, GENESIS_CHAIN))
    # Re-chained correctly to record 2, but with other content: record 4 no longer follows it.
    forged = encode_record(3, 102, b"other content", records[1].chain)
    log.overwrite_raw(3, raw_of(forged))
    with pytest.raises(CorruptRecord) as failure:
        list(log.read(1, GENESIS_CHAIN))
    assert failure.value.seq == 4 and "chain" in failure.value.reason


def test_record_under_the_wrong_sequence_number(backend: tuple[RecordLog, Reopen]) -> None:
    log, _ = backend
    fill(log, 3)
    records = list(log.read(1, GENESIS_CHAIN))
    log.overwrite_raw(3, raw_of(records[1]))
    with pytest.raises(CorruptRecord) as failure:
        list(log.read(1, GENESIS_CHAIN))
    assert failure.value.seq == 3 and "sequence" in failure.value.reason


def test_snapshots_newest_intact_wins(backend: tuple[RecordLog, Reopen]) -> None:
    log, reopen = backend
    fill(log, 6)
    assert log.latest_snapshot() is None
    log.save_snapshot(2, b"c" * 16, b"state at 2")
    log.save_snapshot(4, b"d" * 16, b"state at 4")
    log.save_snapshot(6, b"e" * 16, b"state at 6")
    log = reopen(log)
    assert log.latest_snapshot() == (6, b"e" * 16, b"state at 6")
    assert log._snapshot_seqs() == [4, 6]  # only the newest two are kept
    log._put_snapshot(6, b"damaged")
    assert log.latest_snapshot() == (4, b"d" * 16, b"state at 4")
