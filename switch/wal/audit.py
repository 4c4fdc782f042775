"""Rebuild each shard's ledger from its log, checking records and snapshots on the way, and
audit the books across shards as recovery would leave them.

The replay runs the same code as recovery (`actors.codec.apply_payload`); a snapshot passes
when the replayed state at its sequence number is exactly the snapshot's state.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from actors import snapshot
from actors.codec import apply_payload, decode_snapshot_body
from actors.ledger import Ledger
from actors.model import CREDITS_MUST_NOT_EXCEED_DEBITS, DEBITS_MUST_NOT_EXCEED_CREDITS
from actors.placement import Placement
from actors.queries import totals_by_ledger
from actors.runtime import gc_paused
from persistence.layout import shard_directories
from persistence.lmdb_log import LmdbLog
from persistence.records import CorruptRecord, Record
from persistence.scan import ScanReport, scan, starting_point


@dataclass
class ShardAudit:
    index: int
    directory: Path
    ledger: Ledger
    report: ScanReport
    snapshots_checked: list[int] = field(default_factory=list)
    snapshot_mismatch: str | None = None

    @property
    def failure(self) -> str | None:
        if self.report.damage is not None:
            damage = self.report.damage
            return f"shard {self.index} record {damage.seq}: {damage.reason}"
        if self.snapshot_mismatch is not None:
            return f"shard {self.index} {self.snapshot_mismatch}"
        return None


def canonical_state(ledger: Ledger) -> Any:
    """A ledger's snapshot form as decoded JSON: comparable with a stored snapshot."""
    return orjson.loads(orjson.dumps(snapshot.dump(ledger)))


def audit_shard(
    index: int,
    directory: Path,
    ledgers: tuple[str, ...],
    check_snapshots: bool = True,
    stop_before: Callable[[Record], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> ShardAudit:
    """Replay one shard's log (read-only: safe beside a running switch) and check it."""
    log = LmdbLog(directory, 1 << 20, readonly=True)
    try:
        ledger = Ledger(ledgers)
        try:
            start = starting_point(log)
        except CorruptRecord as error:
            return ShardAudit(index, directory, ledger, ScanReport(damage=error))
        if start[2] is not None:
            snapshot.load(ledger, decode_snapshot_body(start[2]))
        audit = ShardAudit(index, directory, ledger, ScanReport())
        snapshot_seqs = set(log.snapshot_seqs()) if check_snapshots else set()

        def replay(record: Record) -> None:
            apply_payload(ledger, record.payload)
            if on_record is not None:
                on_record(record)
            if record.seq in snapshot_seqs and audit.snapshot_mismatch is None:
                audit.snapshots_checked.append(record.seq)
                try:
                    _, _, body = log.snapshot_at(record.seq)
                except CorruptRecord as error:
                    audit.snapshot_mismatch = f"snapshot {record.seq}: {error.reason}"
                    return
                if decode_snapshot_body(body) != canonical_state(ledger):
                    audit.snapshot_mismatch = (
                        f"snapshot {record.seq}: differs from the state the log replays to")

        with gc_paused():
            audit.report = scan(log, replay, on_progress, start=start, stop_before=stop_before)
        return audit
    finally:
        log.close()


def audit_data_dir(
    data_dir: Path, ledgers: tuple[str, ...], **options: Any
) -> list[ShardAudit]:
    return [audit_shard(index, directory, ledgers, **options)
            for index, directory in shard_directories(data_dir)]


def settle_in_doubt(audits: list[ShardAudit], placement: Placement) -> int:
    """Do to the replayed ledgers what redrive does at start-up: post each reservation whose
    attempt its home committed, void the rest. Returns how many were settled."""
    settled = 0
    for audit in audits:
        for reservation in list(audit.ledger.reservations.values()):
            transfer_id = reservation.transfer.id
            home = audits[placement.shard_of(transfer_id)].ledger
            commit_timestamp = home.resolve(transfer_id, reservation.attempt)
            for event in audit.ledger.finalize_reservation(
                    transfer_id, reservation.attempt, commit_timestamp > 0, commit_timestamp):
                audit.ledger.apply(event)
            settled += 1
    return settled


@dataclass
class Books:
    totals: dict[str, list[int]]
    unbalanced: list[str]
    limits_broken: list[str]


def check_books(audits: list[ShardAudit]) -> Books:
    """Per ledger, debits equal credits (posted and pending); no account breaks its flags."""
    totals: dict[str, list[int]] = {}
    broken = []
    for audit in audits:
        for code, values in totals_by_ledger(audit.ledger).items():
            row = totals.setdefault(code, [0, 0, 0, 0])
            for i, value in enumerate(values):
                row[i] += value
        for account in audit.ledger.accounts.values():
            if account.flags & DEBITS_MUST_NOT_EXCEED_CREDITS and (
                    account.debits_posted + account.debits_pending > account.credits_posted):
                broken.append(f"{account.id}: debits exceed credits")
            if account.flags & CREDITS_MUST_NOT_EXCEED_DEBITS and (
                    account.credits_posted + account.credits_pending > account.debits_posted):
                broken.append(f"{account.id}: credits exceed debits")
    unbalanced = [code for code, (dp, cp, dpe, cpe) in totals.items() if dp != cp or dpe != cpe]
    return Books(totals, unbalanced, broken)
