"""Rebuild a shard's state at start: the newest intact snapshot, then the log after it.

The caller supplies how to load a snapshot body and how to apply one record's payload (the
same apply code that ran when the events were first committed). A record that fails its
checksum, its chain or its sequence stops recovery with CorruptRecord naming it: nothing
from it or after it is applied, and the shard refuses to start rather than serve a ledger
that silently lost acknowledged transfers.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from persistence.log import RecordLog
from persistence.records import GENESIS_CHAIN, Record


@dataclass(frozen=True, slots=True)
class RecoveryReport:
    snapshot_seq: int
    records_replayed: int
    last_seq: int
    last_timestamp_ns: int
    duration_ms: float


def recover(
    log: RecordLog,
    load_snapshot: Callable[[bytes], None],
    apply_record: Callable[[Record], None],
) -> RecoveryReport:
    started = time.perf_counter()
    snapshot = log.latest_snapshot()
    seq, chain = 0, GENESIS_CHAIN
    if snapshot is not None:
        seq, chain, body = snapshot
        load_snapshot(body)
    replayed = 0
    last_timestamp_ns = 0
    for record in log.read(seq + 1, chain):
        apply_record(record)
        replayed += 1
        last_timestamp_ns = record.timestamp_ns
    assert seq + replayed == log.last_seq, (seq, replayed, log.last_seq)
    return RecoveryReport(
        snapshot_seq=seq,
        records_replayed=replayed,
        last_seq=log.last_seq,
        last_timestamp_ns=max(last_timestamp_ns, log.last_timestamp_ns),
        duration_ms=(time.perf_counter() - started) * 1000,
    )
