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

from actors.codec import apply_payload, decode_snapshot_body
from actors.ledger import queries, snapshot
from actors.ledger.ledger import Ledger
from actors.ledger.model import CREDITS_MUST_NOT_EXCEED_DEBITS, DEBITS_MUST_NOT_EXCEED_CREDITS
from actors.ledger.pending import PENDING_STATUS, POSTED
from actors.ledger.queries import totals_by_ledger
from actors.ledger.verdicts import claim_verdict, part_verdict
from actors.runtime import gc_paused
from actors.topology import Placement
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
    """Do to the replayed ledgers what `Router.redrive` does at start-up: decide each part in
    doubt by its home's commit, each claim on a pending transfer by its post or void's home,
    and settle the held parts of pending transfers that are resolved. Returns how many."""
    ledgers = [audit.ledger for audit in audits]

    def home(transfer_id: str) -> Ledger:
        return ledgers[placement.shard_of(transfer_id)]

    def apply(ledger: Ledger, events: list[list[Any]]) -> int:
        for event in events:
            ledger.apply(event)
        return 1

    settled = 0
    for ledger in ledgers:
        for row, _, attempt, chain, member in queries.in_doubt(ledger, 2**64):
            verdict = home(chain).resolve_chain(chain, attempt) if chain \
                else home(row[0]).resolve(row[0], attempt)
            settled += apply(ledger, ledger.finalize_reservation(
                row[0], attempt, *part_verdict(row, chain, member, verdict)))
    for ledger in ledgers:
        for pending_id, resolving_id, attempt, chain, member in queries.claims_in_doubt(ledger):
            verdict = home(chain).resolve_chain(chain, attempt) if chain \
                else home(resolving_id).resolve(resolving_id, attempt)
            settled += apply(ledger, ledger.finalize_claim(
                pending_id, resolving_id, attempt, claim_verdict(chain, member, verdict)))
    for ledger in ledgers:
        for pending_id, _ in queries.held_parts(ledger, 2**64):
            status = home(pending_id).pending_status(pending_id)
            if status is not None and status[0] != PENDING_STATUS:
                settled += apply(ledger, ledger.settle_held(pending_id, status[0] == POSTED,
                                                            status[1], status[2]))
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
