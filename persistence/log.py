"""The write-ahead log interface, its shared record logic, and the in-memory twin.

A backend stores raw records by sequence number and raw snapshots; `RecordLog` turns that
into a checked, hash-chained log. `MemoryLog` and `persistence.lmdb_log.LmdbLog` pass the same
contract tests (tests/persistence/test_log_contract.py).
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator
from typing import Any

from actors.ledger.store import MemoryStore
from persistence.records import (
    GENESIS_CHAIN,
    CorruptRecord,
    Record,
    decode_record,
    decode_snapshot,
    encode_record,
    encode_snapshot,
    raw_of,
)

SNAPSHOTS_KEPT = 2


class StorageFull(Exception):
    """The log's configured map size cannot take this commit; nothing of it was written."""


class AfterCommit(Exception):
    """The record is durable, but what follows its commit failed: the batch HAS happened.
    Whoever waits for it must not be told otherwise (the caller asks again, as redrive does)."""


class StoreDamaged(Exception):
    """The storage engine itself reports damage (a page it cannot read), not one record."""


class RecordLog(ABC):
    """A checked, hash-chained log, and the ledger store written with it (`store`: what the
    batch applied to it becomes durable in the same commit as the batch's record)."""

    store: Any  # actors.ledger.store.LedgerStore, with this backend's batch hooks

    def __init__(self) -> None:
        self.last_seq = 0
        self.last_chain = GENESIS_CHAIN
        self.last_timestamp_ns = 0

    def _load_tail(self) -> None:
        """Find the last record (checksum only: recovery checks the chain). A log whose
        records were all moved out (compacted, then its tail cut) continues after its newest
        snapshot: it is never taken for an empty log, which would recover empty."""
        last = self._last_raw()
        if last is not None:
            seq, raw = last
            record = decode_record(raw, seq, None)
            self.last_seq, self.last_chain = record.seq, record.chain
            self.last_timestamp_ns = record.timestamp_ns
            return
        for seq in reversed(self._snapshot_seqs()):
            try:
                snapshot_seq, chain, _ = decode_snapshot(self._get_snapshot(seq))
            except CorruptRecord:
                continue
            self.last_seq, self.last_chain = snapshot_seq, chain
            return

    def append(self, payload: bytes, timestamp_ns: int,
               before_commit: Callable[[Record], None] | None = None) -> Record:
        """Append one record, with what the batch wrote to the store, in one durable commit;
        returns it once it is on disk. If the commit fails, nothing of it is stored here.
        `before_commit` sees the encoded record first (replication ships it from there: a
        follower that got it is made to drop it again, actors/shard/replication.py)."""
        if timestamp_ns <= self.last_timestamp_ns:
            raise ValueError(f"record timestamps rise: {timestamp_ns} after "
                             f"{self.last_timestamp_ns}")
        record = encode_record(self.last_seq + 1, timestamp_ns, payload, self.last_chain)
        if before_commit is not None:
            before_commit(record)
        self._commit_record(record.seq, raw_of(record), timestamp_ns)
        try:  # durable from here on
            self.last_seq, self.last_chain = record.seq, record.chain
            self.last_timestamp_ns = timestamp_ns
            self.store.flush(record.seq, timestamp_ns)
        except Exception as error:
            raise AfterCommit(f"record {record.seq} is committed; then: {error!r}") from error
        return record

    def _commit_record(self, seq: int, raw: bytes, timestamp_ns: int) -> None:
        """Store the record (and the store's staged writes) in one commit."""
        self._put_raw(seq, raw)

    def read(self, seq_from: int, prev_chain: bytes, seq_to: int | None = None) -> Iterator[Record]:
        """Records seq_from..seq_to (inclusive), each checked against the one before it.

        `prev_chain` is the chain of record seq_from - 1 (GENESIS_CHAIN before record 1).
        Raises CorruptRecord at the first record that fails a check or is missing.
        """
        expected, chain = seq_from, prev_chain
        for seq, raw in self._raw_range(seq_from, seq_to):
            if seq != expected:
                raise CorruptRecord(expected, f"missing (next stored record is {seq})")
            record = decode_record(raw, expected, chain)
            yield record
            expected, chain = expected + 1, record.chain
        last = self.last_seq if seq_to is None else min(seq_to, self.last_seq)
        if expected <= last:
            raise CorruptRecord(expected, "missing")

    def save_snapshot(self, seq: int, chain: bytes, body: bytes) -> None:
        self._put_snapshot(seq, encode_snapshot(seq, chain, body))
        for old_seq in self._snapshot_seqs()[:-SNAPSHOTS_KEPT]:
            self._delete_snapshot(old_seq)

    def snapshot_seqs(self) -> list[int]:
        return self._snapshot_seqs()

    def snapshot_at(self, seq: int) -> tuple[int, bytes, bytes]:
        """(seq, chain, body) of the snapshot at `seq`; raises CorruptRecord if damaged."""
        return decode_snapshot(self._get_snapshot(seq))

    def latest_snapshot(self) -> tuple[int, bytes, bytes] | None:
        """The newest intact snapshot as (seq, chain, body); damaged ones are skipped."""
        intact = self.intact_snapshots()
        return intact[0] if intact else None

    def intact_snapshots(self) -> list[tuple[int, bytes, bytes]]:
        """Every intact snapshot within the log, newest first, as (seq, chain, body)."""
        found = []
        for seq in reversed(self._snapshot_seqs()):
            try:
                snapshot = decode_snapshot(self._get_snapshot(seq))
            except CorruptRecord:
                continue
            if snapshot[0] == seq and seq <= self.last_seq:
                found.append(snapshot)
        return found

    def records_from(self, seq_from: int, count: int) -> list[Record]:
        """Up to `count` records from `seq_from`, each checked against its checksum (not the
        chain: readers of a live log trust the writer's chain check)."""
        records = []
        for seq, raw in self._raw_range(seq_from, seq_from + count - 1):
            records.append(decode_record(raw, seq, None))
        return records

    def first_seq_stored(self) -> int:
        """The first record the log holds (1 for an empty log)."""
        for seq, _ in self._raw_range(1, None):
            return seq
        return 1

    @abstractmethod
    def _put_raw(self, seq: int, raw: bytes) -> None: ...

    @abstractmethod
    def _raw_range(self, seq_from: int, seq_to: int | None) -> Iterator[tuple[int, bytes]]: ...

    @abstractmethod
    def _last_raw(self) -> tuple[int, bytes] | None: ...

    @abstractmethod
    def _put_snapshot(self, seq: int, raw: bytes) -> None: ...

    @abstractmethod
    def _get_snapshot(self, seq: int) -> bytes: ...

    @abstractmethod
    def _delete_snapshot(self, seq: int) -> None: ...

    @abstractmethod
    def _snapshot_seqs(self) -> list[int]: ...

    @abstractmethod
    def overwrite_raw(self, seq: int, raw: bytes) -> None:
        """Replace a stored record's bytes as they are: for corruption tests and repair."""

    @abstractmethod
    def stored_bytes(self) -> int:
        """How much of its storage bound the log uses."""

    def map_size_bytes(self) -> int:
        """Its storage bound (0: none, the in-memory twin)."""
        return 0

    def clear_dead_readers(self) -> int:
        """Free what readers that died (a killed `wal verify`) still hold; how many there
        were. Their slots would pin old pages until the map fills."""
        return 0

    @abstractmethod
    def close(self) -> None: ...


class MemoryLog(RecordLog):
    """The in-memory twin: for unit tests of the core and the contract suite only."""

    def __init__(self) -> None:
        super().__init__()
        self._records: dict[int, bytes] = {}
        self._snapshots: dict[int, bytes] = {}
        self.store = MemoryStore()

    def _put_raw(self, seq: int, raw: bytes) -> None:
        if seq in self._records:
            raise ValueError(f"record {seq} is already stored")
        self._records[seq] = raw

    def _raw_range(self, seq_from: int, seq_to: int | None) -> Iterator[tuple[int, bytes]]:
        for seq in sorted(self._records):
            if seq >= seq_from and (seq_to is None or seq <= seq_to):
                yield seq, self._records[seq]

    def _last_raw(self) -> tuple[int, bytes] | None:
        if not self._records:
            return None
        seq = max(self._records)
        return seq, self._records[seq]

    def _put_snapshot(self, seq: int, raw: bytes) -> None:
        self._snapshots[seq] = raw

    def _get_snapshot(self, seq: int) -> bytes:
        return self._snapshots[seq]

    def _delete_snapshot(self, seq: int) -> None:
        del self._snapshots[seq]

    def _snapshot_seqs(self) -> list[int]:
        return sorted(self._snapshots)

    def overwrite_raw(self, seq: int, raw: bytes) -> None:
        self._records[seq] = raw

    def stored_bytes(self) -> int:
        return sum(map(len, self._records.values()))

    def reopen(self) -> MemoryLog:
        """A fresh handle on the same stored bytes, as after a restart."""
        log = MemoryLog()
        log._records, log._snapshots = self._records, self._snapshots
        log._load_tail()
        return log  # with an empty store: recovery rebuilds it from the log

    def close(self) -> None:
        pass
