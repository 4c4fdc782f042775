"""The shard host: runs batches of commands against one shard's ledger and its log.

One call = one batch: decide and apply each command in order (later commands see the
effects of earlier ones), then append every event of the batch as one log record, with what
the batch wrote to the store, in one durable commit, and only then reply. If the commit
fails, the in-memory state is rebuilt from the log (the same recovery as at start), so a
failed batch leaves nothing applied.

This module knows nothing of Ray (actors/shard/actor.py wraps it in an actor) and takes its
log and clock from the caller, so tests can run it on the in-memory log.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from actors import failpoints
from actors.codec import (
    FormatUnknown,
    decode_commands,
    decode_events,
    decode_snapshot,
    encode_events,
    encode_reply,
    encode_snapshot,
)
from actors.ledger import snapshot
from actors.ledger.events import Event
from actors.ledger.ledger import Ledger
from actors.ledger.queries import totals
from actors.messages import (
    FAILED_INTERNAL,
    FAILED_STORAGE_FULL,
    BatchReply,
    Command,
    FeedRecord,
    LogFeed,
    Reply,
)
from actors.runtime import GENERATION0_THRESHOLD_DEFAULT, gc_paused
from actors.shard.commands import CommandTable
from actors.shard.stats import ShardStats, ShardStatus
from persistence.log import RecordLog, StorageFull
from persistence.records import CorruptRecord, Record
from persistence.recovery import RecoveryReport, recover

log = logging.getLogger("payswitch.shard")

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
        if config.snapshot_every_events <= 0:
            raise ValueError("snapshot_every_events must be positive")
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
        self._commands = CommandTable(self)

    @property
    def log(self) -> RecordLog:
        return self._log

    def _recover(self) -> tuple[Ledger, RecoveryReport]:
        ledger = Ledger(self.config.ledgers, self._log.store)

        def load(body: bytes) -> Any:
            live, legacy_index = decode_snapshot(body)
            snapshot.load(ledger, live)
            return legacy_index

        def apply(record: Record) -> None:
            try:
                events = decode_events(record.payload)
            except FormatUnknown as error:
                raise CorruptRecord(record.seq, f"shard {self.config.shard_index}: {error}"
                                    ) from None
            for event in events:
                ledger.apply(event)

        with gc_paused():  # millions of long-lived objects: collections would only rescan them
            report = recover(self._log, load, apply)
        log.info("shard %d recovered: %s", self.config.shard_index, report)
        return ledger, report

    # ---- the batch ----

    def handle(self, blob: bytes, request_ids: list[str] | None = None) -> bytes:
        """Run one batch; `request_ids` name the API requests it serves, for the logs."""
        started = time.perf_counter()
        commands = decode_commands(blob)
        # One clock read per batch; each command then takes the next nanosecond.
        self._last_timestamp_ns = max(self._last_timestamp_ns, self._clock_ns() - 1)
        store = self._log.store
        store.begin()
        events: list[Event] = []
        try:
            self.record(self.ledger.expire_due(self._last_timestamp_ns), events)
            replies = [self._commands.run(command, events) for command in commands]
            applied = time.perf_counter()
            if events:
                self._commit(events)
        except StorageFull as error:
            self._rebuild()
            return encode_reply(BatchReply([], FAILED_STORAGE_FULL, str(error)))
        except Exception as error:  # a bug: never leave a half-applied batch in memory
            log.exception("shard %d: batch failed", self.config.shard_index)
            self._rebuild()
            return encode_reply(BatchReply([], FAILED_INTERNAL, repr(error)))
        finally:
            store.end_reads()
        self._after(commands, events, started, applied, request_ids)
        return encode_reply(BatchReply(replies))

    def _commit(self, events: list[Event]) -> None:
        applied = time.perf_counter()
        if failpoints.ARMED:
            failpoints.hit(failpoints.SHARD_BEFORE_COMMIT)
        self._log.append(encode_events(events), self._next_timestamp())
        self.stats.commit_seconds.observe(time.perf_counter() - applied)
        if failpoints.ARMED:
            failpoints.hit(failpoints.SHARD_AFTER_COMMIT)

    def _after(self, commands: list[Command], events: list[Event], started: float,
               applied: float, request_ids: list[str] | None) -> None:
        stats = self.stats
        stats.batches += 1
        stats.commands += len(commands)
        stats.events += len(events)
        stats.batch_size.observe(len(commands))
        stats.apply_seconds.observe(applied - started)
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

    def _rebuild(self) -> None:
        self._log.store.discard()
        self.wait_for_snapshot()
        self._log.close()
        self._log = self._open_log()
        self.ledger, _ = self._recover()

    def next_timestamp(self) -> int:
        self._last_timestamp_ns += 1
        return self._last_timestamp_ns

    _next_timestamp = next_timestamp

    @property
    def last_timestamp_ns(self) -> int:
        return self._last_timestamp_ns

    def _snapshot_due_events(self) -> int:
        """A snapshot costs time in proportion to the state; taking one only after at least as
        many events as the state holds keeps that cost constant per event, and recovery never
        replays more than about one state's worth of events after the snapshot."""
        state = len(self.ledger.accounts) + len(self.ledger.reservations)
        return max(self.config.snapshot_every_events, state)

    def record(self, new_events: list[Event], events: list[Event]) -> None:
        """Apply a decision's events now (later commands see them) and keep them for the
        batch's record."""
        apply = self.ledger.apply
        for event in new_events:
            apply(event)
        events.extend(new_events)

    # ---- upkeep ----

    def take_snapshot(self) -> None:
        """Encode the live state here, between batches (msgpack, in C); write it on a thread.

        The shard goes on serving while the snapshot is written and fsync'd.
        """
        if self._snapshot_thread is not None and self._snapshot_thread.is_alive():
            return
        with gc_paused():
            body = encode_snapshot(snapshot.dump(self.ledger))
        self._events_since_snapshot = 0
        self._snapshot_thread = threading.Thread(
            target=self._write_snapshot, args=(self._log, self._log.last_seq,
                                               self._log.last_chain, body),
            name=f"snapshot-{self.config.shard_index}", daemon=True)
        self._snapshot_thread.start()

    def _write_snapshot(self, log_: RecordLog, seq: int, chain: bytes, body: bytes) -> None:
        if failpoints.ARMED:
            failpoints.hit(failpoints.SHARD_SNAPSHOT_MIDWAY)
        try:
            log_.save_snapshot(seq, chain, body)
        except StorageFull:
            log.error("shard %d: no room for a snapshot", self.config.shard_index)
            return
        except Exception:  # a bug; the log still holds everything, recovery just replays more
            log.exception("shard %d: snapshot at %d failed", self.config.shard_index, seq)
            return
        self.snapshot_seq_written = seq
        self.snapshot_written_at = time.time()
        self._on_snapshot()

    def wait_for_snapshot(self) -> None:
        if self._snapshot_thread is not None:
            self._snapshot_thread.join()

    def status(self) -> ShardStatus:
        ledger = self.ledger
        return ShardStatus(
            shard=self.config.shard_index,
            accounts=len(ledger.accounts),
            transfers=ledger.homed_count,
            in_doubt=len(ledger.reservations),
            pending_open=len(ledger.pending),
            last_seq=self._log.last_seq,
            recovery_ms=round(self.recovery.duration_ms, 3),
            recovered_records=self.recovery.records_replayed,
            snapshot_seq=self.recovery.snapshot_seq,
            snapshot_seq_written=self.snapshot_seq_written,
            snapshot_age_seconds=round(time.time() - self.snapshot_written_at, 3),
            log_bytes=self._log.stored_bytes(),
            stats=self.stats.export(),
            totals=totals(ledger),
        )

    def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed:
        """Committed records from `from_seq` (at most `records_max`, and no more than about
        `bytes_max` of payload): the log feed. Safe on another thread than the batches'."""
        log_ = self._log
        records, size = [], 0
        for record in log_.records_from(max(1, from_seq), records_max):
            records.append(FeedRecord(record.seq, record.timestamp_ns, record.payload))
            size += len(record.payload)
            if size >= bytes_max:
                break
        return LogFeed(records, log_.last_seq)

    def close(self) -> None:
        self.wait_for_snapshot()
        self._log.close()


__all__ = ["Reply", "ShardConfig", "ShardHost"]
