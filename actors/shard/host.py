"""The shard host: runs batches of commands against one shard's ledger and its log.

One call = one batch: decide and apply each command in order (later commands see the
effects of earlier ones), then append every event of the batch as one log record in one
durable commit, and only then reply. If the commit fails, the in-memory state is rebuilt
from the log (the same recovery as at start), so a failed batch leaves nothing applied.

This module knows nothing of Ray (actors/shard.py wraps it in an actor) and takes its log
and clock from the caller, so tests can run it on the in-memory log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import orjson

from actors import failpoints
from actors import messages as p
from actors.codec import apply_payload, decode_snapshot_body, encode_events
from actors.ledger import queries, snapshot
from actors.ledger.codes import (
    TRANSFER_RESULTS,
    AccountResult,
    LimitsResult,
    TransferResult,
)
from actors.ledger.ledger import Event, Ledger
from actors.ledger.limits import Limits
from actors.ledger.model import BALANCING, Account, Transfer
from actors.runtime import GENERATION0_THRESHOLD_DEFAULT, gc_paused
from actors.shard.chain_ops import ChainOps
from actors.shard.stats import ShardStats
from persistence.log import RecordLog, StorageFull
from persistence.recovery import RecoveryReport, recover

log = logging.getLogger("payswitch.shard")
_IN_FLIGHT = TransferResult.in_flight


SLOW_BATCH_S = 0.5  # a batch this slow is logged (with its request ids) at any log level


@dataclass(frozen=True, slots=True)
class ShardConfig:
    shard_index: int
    ledgers: tuple[str, ...]
    snapshot_every_events: int
    history_page_max: int = 1000
    gc_generation0_threshold: int = GENERATION0_THRESHOLD_DEFAULT
    gc_freeze: bool = True
    log_level: str = "INFO"
    log_json: bool = True


class ShardHost:
    def __init__(
        self,
        config: ShardConfig,
        open_log: Callable[[], RecordLog],
        clock_ns: Callable[[], int] = time.time_ns,
        on_snapshot: Callable[[], None] = lambda: None,
    ) -> None:
        assert config.snapshot_every_events > 0
        self.config = config
        self._open_log = open_log
        self._clock_ns = clock_ns
        self._on_snapshot = on_snapshot
        self._log = open_log()
        self.ledger, self.recovery = self._recover()
        self._last_timestamp_ns = self.recovery.last_timestamp_ns
        self._events_since_snapshot = 0
        self._snapshot_thread: threading.Thread | None = None
        self.snapshot_seq_written = self.recovery.snapshot_seq
        self.snapshot_written_at = time.time()
        self.stats = ShardStats()
        self._ops: dict[str, Callable[[list[Any], list[Event]], Any]] = {
            p.OP_ACCOUNT: self._create_account,
            p.OP_COMMIT: self._commit,
            p.OP_RESERVE: self._reserve,
            p.OP_RESERVE_CHAIN: lambda command, events: [
                part.reply() for part in self._chains.reserve_parts(command, events)],
            p.OP_COMMIT_CHAIN: lambda command, events: self._chains.commit_chain(
                command, events),
            p.OP_RESOLVE_CHAIN: lambda command, events: self.ledger.resolve_chain(
                command[1], command[2]),
            p.OP_FINALIZE: self._finalize,
            p.OP_RESOLVE: self._resolve,
            p.OP_GET_ACCOUNT: self._get_account,
            p.OP_GET_TRANSFER: self._get_transfer,
            p.OP_ACCOUNT_TRANSFERS: self._account_transfers,
            p.OP_LIMITS: self._set_limits,
            p.OP_IN_DOUBT: lambda command, events: queries.in_doubt(
                self.ledger, self._last_timestamp_ns - command[1] * 1_000_000),
            p.OP_HELD: lambda command, events: queries.held_parts(
                self.ledger, self._last_timestamp_ns - command[1] * 1_000_000),
            p.OP_CLAIMS: lambda command, events: queries.claims_in_doubt(self.ledger),
            p.OP_CLAIM: self._claim,
            p.OP_FINALIZE_CLAIM: self._finalize_claim,
            p.OP_SETTLE: self._settle,
            p.OP_PENDING_STATUS: lambda command, events: self.ledger.pending_status(command[1]),
            p.OP_TOTALS: lambda command, events: queries.totals_by_ledger(self.ledger),
            p.OP_STATUS: lambda command, events: self.status(),
        }

    @property
    def _chains(self) -> ChainOps:
        """Linked chains' and balancing parts' commands, on the current ledger (a failed batch
        replaces it)."""
        return ChainOps(self.ledger, self._next_timestamp, self._record)

    def _recover(self) -> tuple[Ledger, RecoveryReport]:
        ledger = Ledger(self.config.ledgers)
        with gc_paused():  # millions of long-lived objects: collections would only rescan them
            report = recover(
                self._log,
                lambda body: snapshot.load(ledger, decode_snapshot_body(body)),
                lambda record: apply_payload(ledger, record.payload),
            )
        log.info("shard %d recovered: %s", self.config.shard_index, report)
        return ledger, report

    # ---- the batch ----

    def handle(self, blob: bytes, request_ids: list[str] | None = None) -> bytes:
        """Run one batch; `request_ids` name the API requests it serves, for the logs."""
        started = time.perf_counter()
        commands = orjson.loads(blob)
        # One clock read per batch; each command then takes the next nanosecond.
        self._last_timestamp_ns = max(self._last_timestamp_ns, self._clock_ns() - 1)
        expired = self.ledger.expire_due(self._last_timestamp_ns)
        events: list[Event] = []
        try:
            self._record(expired, events)
            replies = [self._ops[command[0]](command, events) for command in commands]
            applied = time.perf_counter()
            if events:
                if failpoints.ARMED:
                    failpoints.hit(failpoints.SHARD_BEFORE_COMMIT)
                self._log.append(encode_events(events), self._last_timestamp_ns)
                self.stats.commit_seconds.observe(time.perf_counter() - applied)
                if failpoints.ARMED:
                    failpoints.hit(failpoints.SHARD_AFTER_COMMIT)
        except StorageFull as error:
            self._rebuild()
            return orjson.dumps([p.REPLY_FAILED, p.FAILED_STORAGE_FULL, str(error)])
        except Exception as error:  # a bug: never leave a half-applied batch in memory
            log.exception("shard %d: batch failed", self.config.shard_index)
            self._rebuild()
            return orjson.dumps([p.REPLY_FAILED, p.FAILED_INTERNAL, repr(error)])
        self._count(len(commands), len(events), applied - started)
        seconds = time.perf_counter() - started
        if seconds > SLOW_BATCH_S or log.isEnabledFor(logging.DEBUG):
            log.log(logging.WARNING if seconds > SLOW_BATCH_S else logging.DEBUG, "batch", extra={
                "shard": self.config.shard_index, "seq": self._log.last_seq,
                "commands": len(commands), "events": len(events),
                "apply_ms": round(1000 * (applied - started), 3),
                "total_ms": round(1000 * seconds, 3), "request_ids": request_ids or []})
        self._events_since_snapshot += len(events)
        if self._events_since_snapshot >= self._snapshot_due_events():
            self.take_snapshot()
        return orjson.dumps([p.REPLY_OK, replies])

    def _count(self, commands: int, events: int, apply_seconds: float) -> None:
        stats = self.stats
        stats.batches += 1
        stats.commands += commands
        stats.events += events
        stats.batch_size.observe(commands)
        stats.apply_seconds.observe(apply_seconds)

    def _rebuild(self) -> None:
        self.wait_for_snapshot()
        self._log.close()
        self._log = self._open_log()
        self.ledger, _ = self._recover()

    def _next_timestamp(self) -> int:
        self._last_timestamp_ns += 1
        return self._last_timestamp_ns

    def _snapshot_due_events(self) -> int:
        """A snapshot costs time in proportion to the state; taking one only after at least as
        many events as the state holds keeps that cost constant per event, and recovery never
        replays more than about one state's worth of events after the snapshot."""
        state = len(self.ledger.accounts) + len(self.ledger.transfers)
        return max(self.config.snapshot_every_events, state)

    def _record(self, new_events: list[Event], events: list[Event]) -> None:
        for event in new_events:
            self.ledger.apply(event)
        events.extend(new_events)

    # ---- commands ----

    def _create_account(self, command: list[Any], events: list[Event]) -> list[Any]:
        account = Account.from_row([*command[1], self._next_timestamp()])
        result, new_events = self.ledger.create_account(account)
        self._record(new_events, events)
        if result is AccountResult.ok and len(command) > 2 and command[2] is not None:
            outcome, limit_events = self.ledger.set_limits(account.id, Limits(*command[2]),
                                                           account.timestamp)
            if outcome is LimitsResult.limits_invalid:  # checked at the edge: a bug if here
                raise ValueError(f"invalid limits for {account.id}: {command[2]}")
            self._record(limit_events, events)
        return [result, *self._account_view(account.id)]

    def _set_limits(self, command: list[Any], events: list[Event]) -> list[Any]:
        _, account_id, row = command
        result, new_events = self.ledger.set_limits(account_id, Limits(*row),
                                                    self._next_timestamp())
        self._record(new_events, events)
        return [result, *self._account_view(account_id)]

    def _account_view(self, account_id: str) -> list[Any]:
        account = self.ledger.accounts.get(account_id)
        if account is None:
            return [None, None]
        limits = self.ledger.limits.get(account_id)
        return [account.row(), limits.row() if limits is not None else None]

    def _commit(self, command: list[Any], events: list[Event]) -> list[Any]:
        transfer = Transfer.from_row([*command[1], self._next_timestamp()])
        pending_row = command[6] if len(command) > 6 else None
        result, new_events, stored = self.ledger.commit_transfer(
            transfer, command[2], TRANSFER_RESULTS[command[3]], command[4],
            command[5] if len(command) > 5 else None,
            Transfer.from_row(pending_row) if pending_row is not None else None)
        self._record(new_events, events)
        return [result, stored.row() if stored is not None else None]

    def _reserve(self, command: list[Any], events: list[Event]) -> Any:
        if command[1][7] & BALANCING:  # [no objection but its rules, amount held, rules]
            (part,) = self._chains.reserve_parts([p.OP_RESERVE, "", command[3],
                                                  [[command[1], command[2], 0]]], events)
            return [part.result, part.held, part.rules]
        transfer = Transfer.from_row([*command[1], self._next_timestamp()])
        result, new_events, _ = self.ledger.reserve_transfer(transfer, command[2], command[3])
        self._record(new_events, events)
        return result

    def _finalize(self, command: list[Any], events: list[Event]) -> bool:
        _, transfer_id, attempt, outcome, commit_timestamp, amount, *fields = command
        self._next_timestamp()
        new_events = self.ledger.finalize_reservation(transfer_id, attempt, outcome,
                                                      commit_timestamp, amount,
                                                      fields[0] if fields else None)
        self._record(new_events, events)
        return bool(new_events)

    def _claim(self, command: list[Any], events: list[Event]) -> list[Any]:
        resolving = Transfer.from_row([*command[1], self._next_timestamp()])
        result, new_events, pending = self.ledger.claim_pending(resolving, command[2])
        self._record(new_events, events)
        return [result, pending.row() if pending is not None else None]

    def _finalize_claim(self, command: list[Any], events: list[Event]) -> bool:
        _, pending_id, resolving_id, attempt, resolving_row = command
        new_events = self.ledger.finalize_claim(pending_id, resolving_id, attempt, resolving_row)
        self._record(new_events, events)
        return bool(new_events)

    def _settle(self, command: list[Any], events: list[Event]) -> bool:
        _, pending_id, post, amount, resolving_row = command
        new_events = self.ledger.settle_held(pending_id, post, amount, resolving_row)
        self._record(new_events, events)
        return bool(new_events)

    def _resolve(self, command: list[Any], events: list[Event]) -> list[Any]:
        return self.ledger.resolve(command[1], command[2])

    def _get_account(self, command: list[Any], events: list[Event]) -> list[Any] | None:
        view = self._account_view(command[1])
        return view if view[0] is not None else None

    def _get_transfer(self, command: list[Any], events: list[Event]) -> list[Any] | None:
        transfer = self.ledger.transfers.get(command[1])
        if transfer is None:
            return None
        return [transfer.row(), self.ledger.pending_status(command[1])]

    def _account_transfers(self, command: list[Any], events: list[Event]) -> list[Any]:
        _, account_id, limit, before = command
        limit = max(1, min(int(limit), self.config.history_page_max))
        page, cursor = queries.account_transfers_page(self.ledger, account_id, limit, before)
        return [[transfer.row() for transfer in page], cursor]

    # ---- upkeep ----

    def take_snapshot(self) -> None:
        """Cut the state here, between batches (fast); encode and write it on a thread.

        The shard goes on serving while the snapshot is written: a full snapshot of a large
        shard takes hundreds of milliseconds, and blocking for it was the tail of the latency.
        """
        if self._snapshot_thread is not None and self._snapshot_thread.is_alive():
            return
        with gc_paused():
            view = snapshot.cut(self.ledger)
        self._events_since_snapshot = 0
        self._snapshot_thread = threading.Thread(
            target=self._write_snapshot, args=(self._log, self._log.last_seq,
                                               self._log.last_chain, view),
            name=f"snapshot-{self.config.shard_index}", daemon=True)
        self._snapshot_thread.start()

    def _write_snapshot(self, log_: RecordLog, seq: int, chain: bytes, view: snapshot.Cut) -> None:
        try:
            with gc_paused():
                body = orjson.dumps(snapshot.finish(view))
        except Exception:  # a bug; the log still holds everything, recovery just replays more
            log.exception("shard %d: snapshot at %d failed", self.config.shard_index, seq)
            return
        if failpoints.ARMED:
            failpoints.hit(failpoints.SHARD_SNAPSHOT_MIDWAY)
        try:
            log_.save_snapshot(seq, chain, body)
        except StorageFull:
            log.error("shard %d: no room for a snapshot", self.config.shard_index)
            return
        self.snapshot_seq_written = seq
        self.snapshot_written_at = time.time()
        self._on_snapshot()

    def wait_for_snapshot(self) -> None:
        if self._snapshot_thread is not None:
            self._snapshot_thread.join()

    def status(self) -> dict[str, Any]:
        return {
            "shard": self.config.shard_index,
            "accounts": len(self.ledger.accounts),
            "transfers": self.ledger.homed_count,
            "in_doubt": len(self.ledger.reservations),
            "last_seq": self._log.last_seq,
            "recovery_ms": round(self.recovery.duration_ms, 3),
            "recovered_records": self.recovery.records_replayed,
            "snapshot_seq": self.recovery.snapshot_seq,  # the one recovery started from
            "snapshot_seq_written": self.snapshot_seq_written,  # the newest on disk
            "snapshot_age_seconds": round(time.time() - self.snapshot_written_at, 3),
            "log_bytes": self._log.stored_bytes(),
            "stats": self.stats.export(),
        }

    def close(self) -> None:
        self.wait_for_snapshot()
        self._log.close()
