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

import msgspec

from actors.codec import FormatUnknown, apply_payload, decode_snapshot
from actors.ledger import queries, snapshot
from actors.ledger.events import Event
from actors.ledger.ledger import VOID, Ledger, Verdict
from actors.ledger.model import CREDITS_MUST_NOT_EXCEED_DEBITS, DEBITS_MUST_NOT_EXCEED_CREDITS
from actors.ledger.pending import PENDING_STATUS, POSTED
from actors.ledger.queries import add_totals
from actors.ledger.store import ChainDecision, MemoryStore
from actors.ledger.verdicts import (
    claim_verdict,
    is_staged,
    part_verdict,
    remote_shards,
    staged_decision,
)
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
    started_after: int = 0  # a compacted log: the seq of the snapshot it starts from

    @property
    def failure(self) -> str | None:
        if self.report.damage is not None:
            damage = self.report.damage
            return f"shard {self.index} record {damage.seq}: {damage.reason}"
        if self.snapshot_mismatch is not None:
            return f"shard {self.index} {self.snapshot_mismatch}"
        return None


def load_start(ledger: Ledger, start: tuple[int, bytes, bytes | None]) -> None:
    """Load a log's starting snapshot (a compacted log's), format 1 or 2, into a ledger."""
    seq, _, body = start
    if body is None:
        return
    live, legacy_index = decode_snapshot(body)
    snapshot.load(ledger, live)
    if legacy_index is not None:
        legacy_index.accounts = ledger.accounts  # its history heads go to the ledger's rows
        ledger.store.import_legacy(seq - 1, legacy_index)
    ledger.store.begin_at(seq)


def replay_record(ledger: Ledger, record: Record) -> None:
    """Apply one record as recovery does, its store writes kept (a MemoryStore)."""
    try:
        apply_payload(ledger, record.payload)
    except FormatUnknown as error:
        raise CorruptRecord(record.seq, str(error)) from None
    ledger.store.flush(record.seq, record.timestamp_ns)


def audit_shard(
    index: int,
    directory: Path,
    ledgers: tuple[str, ...],
    check_snapshots: bool = True,
    stop_before: Callable[[Record], bool] | None = None,
    on_progress: Callable[[int], None] | None = None,
    on_record: Callable[[Record], None] | None = None,
) -> ShardAudit:
    """Replay one shard's log (read-only: safe beside a running switch) and check it. The
    replayed ledger's store is in memory: the audit never trusts the shard's own."""
    log = LmdbLog(directory, 1 << 20, readonly=True)
    try:
        ledger = Ledger(ledgers, MemoryStore())
        try:
            start = starting_point(log)
            load_start(ledger, start)
        except (CorruptRecord, FormatUnknown, msgspec.ValidationError, ValueError) as error:
            damage = error if isinstance(error, CorruptRecord) else CorruptRecord(0, str(error))
            return ShardAudit(index, directory, ledger, ScanReport(damage=damage))
        audit = ShardAudit(index, directory, ledger, ScanReport(),
                           started_after=start[0] - 1 if start[2] is not None else 0)
        snapshot_seqs = set(log.snapshot_seqs()) if check_snapshots else set()

        def replay(record: Record) -> None:
            replay_record(ledger, record)
            if on_record is not None:
                on_record(record)
            if record.seq in snapshot_seqs and audit.snapshot_mismatch is None:
                audit.snapshots_checked.append(record.seq)
                audit.snapshot_mismatch = _snapshot_mismatch(log, record.seq, ledger)

        with gc_paused():
            audit.report = scan(log, replay, on_progress, start=start, stop_before=stop_before)
        return audit
    finally:
        log.close()


def _headless(state: snapshot.Snapshot) -> snapshot.Snapshot:
    """The state without the accounts' history heads. They are places in the shard's store,
    not balances: a replay from the first record gives the places the records gave, but a
    shard that started from an older release's snapshot gave that snapshot's history new
    places (format 1), or none (format 2: its history is read where it was)."""
    return msgspec.structs.replace(state, account_rows=None, accounts=[
        msgspec.structs.replace(account, history_head=0) for account in state.account_structs()])


def _snapshot_mismatch(log: LmdbLog, seq: int, ledger: Ledger) -> str | None:
    try:
        _, _, body = log.snapshot_at(seq)
        stored, _ = decode_snapshot(body)
        headless = _headless(stored)  # loads its accounts' rows: ValueError if not a table
    except (CorruptRecord, FormatUnknown, msgspec.ValidationError, ValueError) as error:
        return f"snapshot {seq}: {error}"
    if headless != _headless(snapshot.dump(ledger)):
        return f"snapshot {seq}: differs from the state the log replays to"
    return None


def audit_data_dir(
    data_dir: Path, ledgers: tuple[str, ...], **options: Any
) -> list[ShardAudit]:
    return [audit_shard(index, directory, ledgers, **options)
            for index, directory in shard_directories(data_dir)]


def settle_in_doubt(audits: list[ShardAudit], placement: Placement) -> int:
    """Do to the replayed ledgers what `Router.redrive` does at start-up: decide each part in
    doubt by its home's commit, each claim on a pending transfer by its post or void's home,
    and settle the held parts of pending transfers that are resolved. Returns how many.

    A home whose log was compacted no longer holds the records of decisions older than its
    first snapshot; those are read from its own store, as its recovery reads them."""
    compacted = [audit for audit in audits if audit.started_after]
    logs = [LmdbLog(audit.directory, 1 << 20, readonly=True) for audit in compacted]
    try:
        for audit, log in zip(compacted, logs, strict=True):
            _memory_store(audit).earlier = log.store
        return _settle(audits, placement)
    finally:
        for audit in compacted:
            _memory_store(audit).earlier = None
        for log in logs:
            log.close()


def _memory_store(audit: ShardAudit) -> MemoryStore:
    store = audit.ledger.store
    assert isinstance(store, MemoryStore), "an audit replays into memory"
    return store


def _settle(audits: list[ShardAudit], placement: Placement) -> int:
    ledgers = [audit.ledger for audit in audits]

    def home(transfer_id: str) -> Ledger:
        return ledgers[placement.shard_of(transfer_id)]

    def apply(ledger: Ledger, events: list[Event]) -> int:
        for event in events:
            ledger.apply(event)
        ledger.store.flush(ledger.store.applied_seq, 0)  # a MemoryStore: keep what it wrote
        return 1 if events else 0

    def ask_home(key: str, attempt: int, chain: bool) -> Verdict | ChainDecision | None:
        """As redrive asks: the home's answer, its fence (if it gives one) applied there."""
        answer: Verdict | ChainDecision | None
        answer, fences = home(key).resolve_chain(key, attempt) if chain \
            else home(key).resolve(key, attempt)
        apply(home(key), fences)
        return answer

    settled = 0
    for ledger in ledgers:  # staged transfers first, as redrive does
        for part in [part for part in queries.in_doubt(ledger, 2**64) if is_staged(part)]:
            present = True
            for remote in remote_shards(part, placement.shard_of):
                here, fences = ledgers[remote].probe_part(part.transfer.id, part.attempt)
                apply(ledgers[remote], fences)
                present = present and here
            settled += apply(ledger, ledger.finalize_reservation(
                part.transfer.id, part.attempt,
                staged_decision(part.transfer) if present else VOID, part.transfer.timestamp))
    for ledger in ledgers:
        for part in queries.in_doubt(ledger, 2**64):
            transfer_id, chain = part.transfer.id, part.chain
            verdict = ask_home(chain or transfer_id, part.attempt, bool(chain))
            settled += apply(ledger, ledger.finalize_reservation(
                transfer_id, part.attempt,
                *part_verdict(part.transfer, chain, part.member, verdict)))
    for ledger in ledgers:
        for claim in queries.claims_in_doubt(ledger):
            chain, resolving_id = claim.chain, claim.resolving_id
            decided = ask_home(chain or resolving_id, claim.attempt, bool(chain))
            settled += apply(ledger, ledger.finalize_claim(
                claim.pending_id, resolving_id, claim.attempt,
                claim_verdict(chain, claim.member, decided)))
    for ledger in ledgers:
        for held in queries.held_parts(ledger, 2**64):
            status = home(held.pending_id).pending_status(held.pending_id)
            if status is not None and status.status != PENDING_STATUS:
                settled += apply(ledger, ledger.settle_held(
                    held.pending_id, status.status == POSTED, status.amount_posted,
                    status.resolution))
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
        add_totals(totals, queries.totals(audit.ledger))
        limits = audit.ledger.limits
        for account in audit.ledger.accounts.values():
            overdraft = limits[account.id].overdraft if account.id in limits else 0
            if account.flags & DEBITS_MUST_NOT_EXCEED_CREDITS and (
                    account.debits_posted + account.debits_pending
                    > account.credits_posted + overdraft):
                broken.append(f"{account.id}: debits exceed credits (and overdraft)")
            if account.flags & CREDITS_MUST_NOT_EXCEED_DEBITS and (
                    account.credits_posted + account.credits_pending > account.debits_posted):
                broken.append(f"{account.id}: credits exceed debits")
    unbalanced = [code for code, (dp, cp, dpe, cpe) in totals.items() if dp != cp or dpe != cpe]
    return Books(totals, unbalanced, broken)
