"""Walk a shard's whole log, archive included, checking every record; report the first damage.

Unlike recovery, a scan does not stop the caller at the first bad record with an exception:
it reports what it read, where the damage is and why, so that the WAL tool can print it,
verify it, or repair to the longest valid prefix.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass

from persistence.lmdb_log import LmdbLog
from persistence.log import StoreDamaged
from persistence.records import GENESIS_CHAIN, CorruptRecord, Record, decode_record


@dataclass
class ScanReport:
    records: int = 0
    archived: int = 0
    first_seq: int = 0
    last_seq: int = 0  # the last valid record
    first_timestamp_ns: int = 0
    last_timestamp_ns: int = 0
    start_snapshot_seq: int = 0  # the scan began after this snapshot (a log compacted away)
    damage: CorruptRecord | None = None

    @property
    def intact(self) -> bool:
        return self.damage is None


def _stored(log: LmdbLog) -> Iterator[tuple[int, bytes, bool]]:
    for seq, raw in log.archived_raw_records():
        yield seq, raw, True
    for seq, raw in log.raw_records(1):
        yield seq, raw, False


def starting_point(log: LmdbLog) -> tuple[int, bytes, bytes | None]:
    """Where a full read begins: (first seq, chain before it, snapshot body or None).

    A log compacted without an archive starts after a snapshot, which supplies both the state
    and the chain to continue from.
    """
    archived = next(iter(log.archived_raw_records()), None)
    # An empty live log after a compaction continues after its newest snapshot.
    first = archived[0] if archived is not None else (log.first_seq() or log.last_seq + 1)
    if first <= 1:
        return 1, GENESIS_CHAIN, None
    if first - 1 in log.snapshot_seqs():
        snapshot_seq, chain, body = log.snapshot_at(first - 1)
        return snapshot_seq + 1, chain, body
    raise CorruptRecord(1, f"the log starts at {first} and no snapshot covers what is before it")


def scan(
    log: LmdbLog,
    on_record: Callable[[Record], None] | None = None,
    on_progress: Callable[[int], None] | None = None,
    start: tuple[int, bytes, bytes | None] | None = None,
    stop_before: Callable[[Record], bool] | None = None,
) -> ScanReport:
    """Check every record in order; call `on_record` for each valid one, up to the damage.

    `start` is `starting_point(log)` when the caller needs it too; the scan ends before the
    first record for which `stop_before(record)` is True (a point-in-time cut).
    """
    report = ScanReport()
    try:
        expected, chain, _ = start if start is not None else starting_point(log)
    except CorruptRecord as error:
        report.damage = error
        return report
    report.start_snapshot_seq = expected - 1
    try:
        _walk(log, report, expected, chain, on_record, on_progress, stop_before)
    except StoreDamaged as error:  # the engine cannot read further: damage at this point
        report.damage = CorruptRecord(report.last_seq + 1, str(error))
    if on_progress is not None:
        on_progress(report.records)
    return report


def _walk(
    log: LmdbLog,
    report: ScanReport,
    expected: int,
    chain: bytes,
    on_record: Callable[[Record], None] | None,
    on_progress: Callable[[int], None] | None,
    stop_before: Callable[[Record], bool] | None,
) -> None:
    for seq, raw, archived in _stored(log):
        if seq < expected:
            continue
        try:
            if seq != expected:
                raise CorruptRecord(expected, f"missing (next stored record is {seq})")
            record = decode_record(raw, expected, chain)
        except CorruptRecord as error:
            report.damage = error
            return
        if stop_before is not None and stop_before(record):
            break
        if on_record is not None:
            on_record(record)
        if report.records == 0:
            report.first_seq, report.first_timestamp_ns = record.seq, record.timestamp_ns
        report.records += 1
        report.archived += archived
        report.last_seq, report.last_timestamp_ns = record.seq, record.timestamp_ns
        expected, chain = expected + 1, record.chain
        if on_progress is not None and report.records % 10_000 == 0:
            on_progress(report.records)
