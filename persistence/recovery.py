"""Rebuild a shard at start: its live state in memory, and whatever its store lacks.

The store (persistence/index.py) is written in the same commit as each record, so normally
it already holds what every record wrote (`applied_seq` is the last record): recovery loads
the newest intact snapshot into memory and replays the records after it with the store's
writes dropped. When the store is behind the log (data written by a release before the
store, or a log a repair cut), recovery starts from a point at or before `applied_seq`
(the log's start, or a snapshot) and writes what the later records wrote as it replays them.
A format-1 snapshot carries the store's part itself, for logs whose start was compacted away.

A record that fails its checksum, its chain or its sequence stops recovery with CorruptRecord
naming it: nothing from it or after it is applied, and the shard refuses to start rather than
serve a ledger that silently lost acknowledged transfers. So does a log that ends before the
last record whose writes its store holds (records lost below the log).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from persistence.index import IndexConflict
from persistence.log import RecordLog
from persistence.records import GENESIS_CHAIN, CorruptRecord, Record


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    snapshot_seq: int
    records_replayed: int
    last_seq: int
    last_timestamp_ns: int
    duration_ms: float
    store_written_from: int = 0  # the first record whose writes recovery stored (0: none)


# load_snapshot(body) loads the live state and returns, for a format-1 snapshot, the part
# that lives in the store today (else None); apply_record applies one record's events.
LoadSnapshot = Callable[[bytes], Any]
ApplyRecord = Callable[[Record], None]


def recover(log: RecordLog, load_snapshot: LoadSnapshot, apply_record: ApplyRecord
            ) -> RecoveryReport:
    started = time.perf_counter()
    store = log.store
    applied = store.applied_seq
    if applied > log.last_seq:  # written in one commit with its record: the log lost some
        raise CorruptRecord(log.last_seq + 1, f"the log ends at record {log.last_seq}, but "
                            f"its store holds what records up to {applied} wrote: records are "
                            "missing; restore this shard from a backup")
    seq, chain, body = _starting_point(log, applied)
    if body is not None:
        legacy_index = load_snapshot(body)
        if applied < seq:
            if legacy_index is None:
                raise CorruptRecord(applied + 1, f"the store lacks what records {applied + 1} to "
                                                 f"{seq} wrote and the log before {seq} is gone: "
                                                 "restore this shard from a backup")
            store.import_legacy(seq, legacy_index)
            applied = seq
    replayed, last_timestamp_ns = 0, 0
    store.begin_at(seq + 1)
    for record in log.read(seq + 1, chain):
        apply_record(record)
        try:
            store.replayed(record.seq, record.timestamp_ns, write=record.seq > applied)
        except IndexConflict as error:  # the store says it lacks what it holds: damaged
            raise CorruptRecord(record.seq, f"its store writes are already stored though the "
                                f"store is at record {applied} ({error}): the store and the "
                                "log disagree; restore this shard from a backup") from None
        replayed += 1
        last_timestamp_ns = record.timestamp_ns
    store.finish_replay()
    if seq + replayed != log.last_seq:
        raise CorruptRecord(seq + replayed + 1, f"recovery ended at {seq + replayed} but the "
                                                f"log's last record is {log.last_seq}")
    return RecoveryReport(
        snapshot_seq=seq,
        records_replayed=replayed,
        last_seq=log.last_seq,
        last_timestamp_ns=max(last_timestamp_ns, log.last_timestamp_ns),
        duration_ms=(time.perf_counter() - started) * 1000,
        store_written_from=applied + 1 if applied < log.last_seq else 0,
    )


def _starting_point(log: RecordLog, applied: int) -> tuple[int, bytes, bytes | None]:
    """(seq, chain at seq, snapshot body or None for the log's start) to recover from."""
    snapshots = log.intact_snapshots()
    newest = snapshots[0] if snapshots else None
    if newest is not None and newest[0] <= applied:
        return newest
    for snapshot in snapshots:  # the store is behind the newest snapshot
        if snapshot[0] <= applied:
            return snapshot
    if log.first_seq_stored() <= 1:
        return 0, GENESIS_CHAIN, None
    if newest is not None:  # a format-1 snapshot brings the store's part (else: refused)
        return newest
    raise CorruptRecord(1, f"the log starts at {log.first_seq_stored()}, its store is at "
                           f"record {applied}, and no snapshot covers what is between")
