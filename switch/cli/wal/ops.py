"""The WAL tool's operations that write: repair, snapshot, compact, and replay into a new
directory. Each refuses to touch a data directory that a running switch owns."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import msgspec

from actors.codec import decode_events, encode_snapshot
from actors.ledger import snapshot
from actors.ledger.events import transfer_id_of
from persistence.identity import copy_identity
from persistence.layout import shard_directory
from persistence.lmdb_log import LmdbLog
from persistence.lock import is_locked
from persistence.records import CHAIN_BYTES, CRC, HEADER, Record, raw_of
from persistence.scan import scan, starting_point
from switch.cli.wal.audit import ShardAudit, audit_shard

COPY_RECORDS_PER_TRANSACTION = 10_000


class Refused(Exception):
    """The operation would be unsafe here; nothing was written."""


def refuse_if_running(directory: Path) -> None:
    if is_locked(directory):
        raise Refused(f"{directory} is owned by a running switch: stop it first (or work on a "
                      "copy: see docs/OPERATIONS.md)")


@dataclass
class RepairReport:
    shard: int
    backup: Path | None = None
    dropped_seqs: list[int] = field(default_factory=list)
    dropped_transfer_ids: list[str] = field(default_factory=list)
    undecodable_seqs: list[int] = field(default_factory=list)
    reason: str | None = None


def _ids_in(raw: bytes) -> list[str] | None:
    """Transfer ids in a damaged record's events, as far as they can still be read."""
    try:  # a best effort on bytes already known to be bad
        events = decode_events(raw[HEADER.size : -(CHAIN_BYTES + CRC.size)])
    except (ValueError, msgspec.DecodeError):
        return None
    return list(dict.fromkeys(transfer_id for event in events
                              if (transfer_id := transfer_id_of(event))))


def repair_shard(index: int, directory: Path, backup_root: Path,
                 force: bool = False) -> RepairReport:
    """Cut a damaged shard's log (and its store) to its longest valid prefix, after a backup.

    Only a damaged tail (the last record) is cut unless `force`: damage with intact records
    after it is refused, since cutting would drop records that were acknowledged.
    """
    refuse_if_running(directory)
    readonly = LmdbLog(directory, 1 << 20, readonly=True)
    try:
        report = scan(readonly)
        damaged = [(seq, raw) for seq, raw in readonly.raw_records(report.last_seq + 1)]
    finally:
        readonly.close()
    result = RepairReport(index)
    if report.damage is None:
        return result
    result.reason = f"record {report.damage.seq}: {report.damage.reason}"
    if len(damaged) > 1 and not force:
        raise Refused(f"shard {index} {result.reason}, and {len(damaged) - 1} records follow it: "
                      f"cutting there would drop records {damaged[1][0]} to {damaged[-1][0]}, "
                      "which may have been acknowledged. Restore the shard from a backup "
                      "(docs/OPERATIONS.md), or cut anyway with --force (what is dropped is "
                      "listed, and a copy kept).")
    result.backup = backup_root / directory.name
    shutil.copytree(directory, result.backup, ignore=shutil.ignore_patterns("owner.lock"))
    log = LmdbLog(directory, max(1 << 20, (directory / "data.mdb").stat().st_size * 2),
                  check_tail=False)
    try:
        result.dropped_seqs = log.truncate_from(report.last_seq + 1)
    finally:
        log.close()
    for seq, raw in damaged:
        ids = _ids_in(raw)
        if ids is None:
            result.undecodable_seqs.append(seq)
        else:
            result.dropped_transfer_ids.extend(ids)
    (result.backup / "REPAIR.txt").write_text(
        f"repaired {time.strftime('%Y-%m-%dT%H:%M:%S')}: {result.reason}\n"
        f"dropped records: {result.dropped_seqs}\n"
        f"transfer ids in them: {result.dropped_transfer_ids}\n"
        f"records whose content could not be read: {result.undecodable_seqs}\n")
    return result


def backup_shard(directory: Path, target: Path) -> int:
    """Copy a shard (even a running one) into `target`, which must not exist yet; returns
    the time the copy started (every record committed before it is in the copy)."""
    if target.exists():
        raise Refused(f"{target} already exists: a backup goes into a new directory")
    log = LmdbLog(directory, 1 << 20, readonly=True)
    try:
        started_ns = time.time_ns()
        log.copy_to(target)
    finally:
        log.close()
    copy_identity(directory, target)
    return started_ns


def cut_at(directory: Path, moment_ns: int) -> int:
    """Drop a copied shard's records after `moment_ns` (and what they wrote to its store, and
    later snapshots); returns how many records were dropped."""
    log = LmdbLog(directory, _map_size_for(directory))
    try:
        later = next((seq for seq, raw in log.raw_records(1)
                      if HEADER.unpack_from(raw)[1] > moment_ns), None)
        return 0 if later is None else len(log.truncate_from(later))
    finally:
        log.close()


def snapshot_shard(index: int, directory: Path, ledgers: tuple[str, ...]) -> ShardAudit:
    """Replay and verify the shard, then store a snapshot of its state at its last record."""
    refuse_if_running(directory)
    audit = audit_shard(index, directory, ledgers)
    if audit.failure is not None:
        raise Refused(f"not snapshotting a damaged log: {audit.failure}")
    log = LmdbLog(directory, _map_size_for(directory))
    try:
        log.save_snapshot(log.last_seq, log.last_chain,
                          encode_snapshot(snapshot.dump(audit.ledger)))
    finally:
        log.close()
    return audit


def compact_shard(index: int, directory: Path, ledgers: tuple[str, ...], discard: bool) -> int:
    """Fresh snapshot, then move the records the older kept snapshot covers out of the log
    (into archive/, or gone with `discard`). The newer snapshot's fallback keeps its tail."""
    snapshot_shard(index, directory, ledgers)
    log = LmdbLog(directory, _map_size_for(directory))
    try:
        seqs = log.snapshot_seqs()
        if len(seqs) < 2:
            return 0
        return log.archive_prefix(seqs[-2], keep=not discard)
    finally:
        log.close()


def replay_into(
    index: int,
    directory: Path,
    into: Path,
    ledgers: tuple[str, ...],
    stop_before: Callable[[Record], bool],
) -> ShardAudit:
    """Rebuild the shard as it was at the cut into `into`: its log up to there, a snapshot."""
    target = shard_directory(into, index)
    if target.exists():
        raise Refused(f"{target} already exists: replay writes into a new directory")
    copied: list[tuple[int, bytes]] = []
    source = LmdbLog(directory, 1 << 20, readonly=True)
    try:
        first_seq, chain, body = starting_point(source)
    finally:
        source.close()
    log = LmdbLog(target, _map_size_for(directory))
    copy_identity(directory, target)
    try:
        if body is not None:  # a compacted log starts after a snapshot: keep that pair
            log.save_snapshot(first_seq - 1, chain, body)
        def keep(record: Record) -> None:
            copied.append((record.seq, raw_of(record)))
            if len(copied) >= COPY_RECORDS_PER_TRANSACTION:
                log.append_raw_many(copied)
                copied.clear()

        audit = audit_shard(index, directory, ledgers, stop_before=stop_before, on_record=keep)
        if copied:
            log.append_raw_many(copied)
        source = LmdbLog(directory, 1 << 20, readonly=True)
        try:  # the store as it was at the cut (else the copy rebuilds it from its log)
            source.store.copy_into(log.store, log.last_seq)
        finally:
            source.close()
        if log.last_seq:
            log.save_snapshot(log.last_seq, log.last_chain,
                              encode_snapshot(snapshot.dump(audit.ledger)))
        return audit
    finally:
        log.close()


def _map_size_for(directory: Path) -> int:
    data = directory / "data.mdb"
    size = data.stat().st_size if data.exists() else 0
    return max(1 << 30, size * 2)
