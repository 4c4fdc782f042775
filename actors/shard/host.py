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

import msgspec

from actors import failpoints
from actors.codec import (
    FormatUnknown,
    apply_payload,
    decode_commands,
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
    FAILED_REPLICA_UNAVAILABLE,
    FAILED_STORAGE_FULL,
    READS,
    BatchReply,
    Command,
    Failed,
    FeedRecord,
    LogFeed,
    Reply,
)
from actors.runtime import GENERATION0_THRESHOLD_DEFAULT, gc_paused
from actors.shard import slot_guard
from actors.shard.commands import CommandTable
from actors.shard.replication import NotReplicated, Replicator
from actors.shard.stats import ShardStats, ShardStatus
from persistence.log import AfterCommit, RecordLog, StorageFull
from persistence.records import CorruptRecord, Record
from persistence.recovery import RecoveryReport, recover

log = logging.getLogger("payswitch.shard")

SLOW_BATCH_S = 0.5  # a batch this slow is logged (with its request ids) at any log level


class CommandRaised(Exception):
    """A command raised while the batch was applied (a bug): the batch runs again without it."""

    def __init__(self, index: int, error: Exception) -> None:
        super().__init__(f"command {index}: {error!r}")
        self.index = index
        self.error = error


class ShardBroken(Exception):
    """The shard could not rebuild its state after a failed batch: it serves nothing more."""


def _decoded(blob: bytes) -> list[Command] | BatchReply:
    """A merged caller's commands; or, if its blob does not decode, its failed reply (the
    other callers' batches run)."""
    try:
        return decode_commands(blob)
    except (msgspec.DecodeError, msgspec.ValidationError) as error:
        log.error("a batch that does not decode was refused: %s", error)
        return BatchReply([], FAILED_INTERNAL, f"the batch does not decode: {error}")


def _named(command: Command) -> str:
    """A command's kind and the id it is about, for the log."""
    return f"{type(command).__name__} {_about(command)}"


def _about(command: Command) -> str:
    transfer = getattr(command, "transfer", None) or getattr(command, "account", None)
    return str(getattr(transfer, "id", None) or next(
        (getattr(command, name) for name in ("transfer_id", "account_id", "pending_id",
                                             "chain") if hasattr(command, name)), ""))


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
    accounts_per_participant_max: int = 0  # on this shard (0: no bound)


class LockedLogReads:
    """Reads of a host's log from a thread other than its batches': each one under the lock a
    rebuild takes to close and reopen the log, so none meets a closed LMDB environment."""

    def __init__(self, host: ShardHost) -> None:
        self._host = host

    @property
    def last_seq(self) -> int:
        return self._host.log.last_seq

    def records_from(self, seq_from: int, count: int) -> list[Record]:
        with self._host.log_in_use:
            return self._host.log.records_from(seq_from, count)

    def first_seq_stored(self) -> int:
        with self._host.log_in_use:
            return self._host.log.first_seq_stored()


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
        self.broken: str | None = None  # why the shard stopped serving, once it has
        self.full: str | None = None  # why it takes no more writes (its map is full)
        self.replicator: Replicator | None = None  # set by its actor when it has a follower
        self.batch_lock = threading.Lock()  # held while a batch runs (replication waits on it)
        # Held by the reads thread while it reads the log (the feed, the status) and by a
        # rebuild or close while it closes it: no read meets a closed LMDB environment.
        self.log_in_use = threading.Lock()

    @property
    def log(self) -> RecordLog:
        return self._log

    @property
    def log_reads(self) -> LockedLogReads:
        """The log as another thread reads it (the replication shipper's)."""
        return LockedLogReads(self)

    def _recover(self) -> tuple[Ledger, RecoveryReport]:
        ledger = Ledger(self.config.ledgers, self._log.store)
        ledger.accounts_per_participant_max = self.config.accounts_per_participant_max

        def load(body: bytes) -> Any:
            live, legacy_index = decode_snapshot(body)
            snapshot.load(ledger, live)
            if legacy_index is not None:
                legacy_index.accounts = ledger.accounts  # its history heads go to these rows
            return legacy_index

        def apply(record: Record) -> None:
            try:
                apply_payload(ledger, record.payload)
            except FormatUnknown as error:
                raise CorruptRecord(record.seq, f"shard {self.config.shard_index}: {error}"
                                    ) from None

        with gc_paused():  # millions of long-lived objects: collections would only rescan them
            try:
                report = recover(self._log, load, apply)
            except CorruptRecord as error:
                where = f"shard {self.config.shard_index}"
                if where in error.reason:
                    raise
                raise CorruptRecord(error.seq, f"{where}: {error.reason}") from None
        log.info("shard %d recovered: %s", self.config.shard_index, report)
        return ledger, report

    # ---- the batch ----

    def handle(self, blob: bytes, request_ids: list[str] | None = None) -> bytes:
        """Run one batch; `request_ids` name the API requests it serves, for the logs."""
        return self.handle_many([(blob, request_ids or [])])[0]

    def handle_many(self, batches: list[tuple[bytes, list[str]]]) -> list[bytes]:
        """Run several callers' batches as one: one commit, a reply blob for each caller.
        Several ingress processes' batches that arrive while the shard commits are merged
        (actors/shard/combine.py), so a commit carries as much as with one ingress."""
        with self.batch_lock:
            return self._handle_many(batches)

    def _handle_many(self, batches: list[tuple[bytes, list[str]]]) -> list[bytes]:
        if self.broken is not None:
            raise ShardBroken(self.broken)
        if len(batches) == 1:
            return [encode_reply(self._run_batch(decode_commands(batches[0][0]),
                                                 batches[0][1]))]
        decoded: list[list[Command] | BatchReply] = [_decoded(blob) for blob, _ in batches]
        commands = [c for part in decoded if isinstance(part, list) for c in part]
        request_ids = [request_id for _, ids in batches for request_id in ids]
        reply = self._run_batch(commands, request_ids)
        blobs, start = [], 0
        for part in decoded:
            if isinstance(part, BatchReply):  # this caller's blob did not decode: its alone
                blobs.append(encode_reply(part))
            elif reply.failed:
                blobs.append(encode_reply(reply))
            else:
                blobs.append(encode_reply(BatchReply(reply.replies[start:start + len(part)])))
                start += len(part)
        return blobs

    def _run_batch(self, commands: list[Command], request_ids: list[str]) -> BatchReply:
        """Run one batch: the replies, or why nothing of it was applied.

        A command that raises (a bug) is answered alone with internal_error and the rest of
        the batch runs again without it; a full log refuses the batch's writes and still
        answers its reads. A failure after the record is committed is never answered as
        "not done": the call fails, and whoever sent it must ask (redrive does).
        """
        started = time.perf_counter()
        if self.replicator is not None and self.replicator.blocked:
            return BatchReply([], FAILED_REPLICA_UNAVAILABLE,
                              f"shard {self.config.shard_index}: {self.replicator.blocked}")
        if self.full is not None:  # until a restart with a larger map: reads only, no rebuild
            return BatchReply(self._reads_only(commands, self.full))
        skipped: dict[int, str] = {}
        while True:
            try:
                replies, events, applied = self._attempt(commands, skipped)
                break
            except CommandRaised as failure:
                log.error("shard %d: command %d (%s) raised; answered internal_error, the rest "
                          "of the batch runs again", self.config.shard_index, failure.index,
                          _named(commands[failure.index]), exc_info=failure.error,
                          extra={"request_ids": request_ids or []})
                skipped[failure.index] = repr(failure.error)
                self._rebuild()
            except StorageFull as error:
                self._rebuild()  # once: memory again as the log says, without this batch
                self.full = (f"{error}; shard {self.config.shard_index} answers reads only "
                             "until it restarts with a larger wal.map_size_bytes "
                             "(docs/OPERATIONS.md, the log is full)")
                log.error("%s", self.full)
                return BatchReply(self._reads_only(commands, self.full))
            except NotReplicated:  # memory is as the log says: the batch waits to be asked
                log.warning("shard %d: a batch committed here but not on its follower: its "
                            "callers must ask", self.config.shard_index)
                raise
            except AfterCommit:
                log.exception("shard %d: batch committed, then failed: its callers must ask",
                              self.config.shard_index)
                self._rebuild()  # memory as the log says: the committed record included
                raise
            except Exception as error:  # a bug outside any command: nothing of it stays
                log.exception("shard %d: batch failed", self.config.shard_index)
                self._rebuild()
                return BatchReply([], FAILED_INTERNAL, repr(error))
        self._after(commands, events, started, applied, request_ids)
        return BatchReply(replies)

    def _attempt(self, commands: list[Command], skipped: dict[int, str]
                 ) -> tuple[list[Reply], list[Event], float]:
        """Run the batch but the skipped commands, and commit it (raises what failed)."""
        # One clock read per batch; each command then takes the next nanosecond.
        self._last_timestamp_ns = max(self._last_timestamp_ns, self._clock_ns() - 1)
        store = self._log.store
        store.begin()
        try:
            events: list[Event] = []
            self.record(self.ledger.expire_due(self._last_timestamp_ns), events)
            replies = [Failed(FAILED_INTERNAL, skipped[index]) if index in skipped
                       else self._run(index, command, events)
                       for index, command in enumerate(commands)]
            applied = time.perf_counter()
            if events:
                self._commit(events)
            self.ledger.accounts.trim()  # between batches: no account struct is changing
            return replies, events, applied
        finally:  # (a failed attempt rebuilds the ledger: its accounts are not trimmed)
            store.end_reads()

    def _run(self, index: int, command: Command, events: list[Event]) -> Reply:
        moves = self.ledger.slot_moves
        if moves.closed:  # a slot moved from or through here: is this command about it?
            refused = slot_guard.refusal(command, self.ledger)
            if refused is not None:
                return refused
        try:
            if failpoints.ARMED and not isinstance(command, READS):  # a bug in a write
                failpoints.raise_for(_about(command))
            return self._commands.run(command, events)
        except (StorageFull, CommandRaised, AfterCommit):
            raise
        except Exception as error:
            raise CommandRaised(index, error) from error

    def _reads_only(self, commands: list[Command], reason: str) -> list[Reply]:
        """The log is full: answer what only reads; refuse what writes (storage_full)."""
        self._log.store.begin()
        try:
            moves = self.ledger.slot_moves
            return [(moves.closed and slot_guard.refusal(command, self.ledger))
                    or self._commands.run(command, []) if isinstance(command, READS)
                    else Failed(FAILED_STORAGE_FULL, reason) for command in commands]
        finally:
            self._log.store.end_reads()
            self.ledger.accounts.trim()  # reads make accounts live too

    def _commit(self, events: list[Event]) -> None:
        applied = time.perf_counter()
        if failpoints.ARMED:
            failpoints.hit(failpoints.SHARD_BEFORE_COMMIT)
        replicator = self.replicator
        try:
            record = self._log.append(encode_events(events), self._next_timestamp(),
                                      replicator.before_commit if replicator else None)
        except AfterCommit:
            raise
        except Exception:
            if replicator is not None:  # shipped, not committed here: take it back there
                replicator.abandon()
            raise
        if replicator is not None:
            replicator.after_commit(record)
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
        """Forget the failed batch: memory again as the log says. If that fails too, the
        shard stops serving (every later call refused, loudly) rather than serve a state
        the log does not hold."""
        try:
            self._log.store.discard()
            self.wait_for_snapshot()
            with self.log_in_use:
                self._log.close()
                self._log = self._open_log()
            self.ledger, _ = self._recover()
        except Exception as error:
            self.broken = f"shard {self.config.shard_index} could not rebuild its state: {error!r}"
            log.critical("%s; it refuses every call until restarted", self.broken)
            raise ShardBroken(self.broken) from error

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
        cleared = self._log.clear_dead_readers()  # now and then, while the shard runs
        if cleared:
            log.warning("shard %d: freed %d slots of readers that died (a killed tool?)",
                        self.config.shard_index, cleared)
        with gc_paused():
            body = encode_snapshot(snapshot.dump(self.ledger))
        self._events_since_snapshot = 0
        self._snapshot_thread = threading.Thread(
            target=self._write_snapshot, args=(self._log, self._log.last_seq,
                                               self._log.last_chain, [body]),
            name=f"snapshot-{self.config.shard_index}", daemon=True)
        self._snapshot_thread.start()

    def _write_snapshot(self, log_: RecordLog, seq: int, chain: bytes, held: list[bytes]
                        ) -> None:
        """`held` holds the body so that this frame holds the only reference: it is freed
        before `on_snapshot` (which may give freed memory back to the system)."""
        if failpoints.ARMED:
            failpoints.hit(failpoints.SHARD_SNAPSHOT_MIDWAY)
        body = held.pop()
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
        del body
        self._on_snapshot()

    def wait_for_snapshot(self) -> None:
        if self._snapshot_thread is not None:
            self._snapshot_thread.join()

    def status(self) -> ShardStatus:
        """(On the reads thread, while batches run: copies of what a batch may change.)"""
        if self.broken is not None:  # its log is closed, its memory a failed batch's
            return self._broken_status(self.broken)
        ledger = self.ledger
        with self.log_in_use:
            last_seq, used, bound = (self._log.last_seq, self._log.stored_bytes(),
                                     self._log.map_size_bytes())
        return ShardStatus(
            shard=self.config.shard_index,
            accounts=len(ledger.accounts),
            transfers=ledger.homed_count,
            in_doubt=len(ledger.reservations),
            pending_open=len(ledger.pending),
            last_seq=last_seq,
            recovery_ms=round(self.recovery.duration_ms, 3),
            recovered_records=self.recovery.records_replayed,
            snapshot_seq=self.recovery.snapshot_seq,
            snapshot_seq_written=self.snapshot_seq_written,
            snapshot_age_seconds=round(time.time() - self.snapshot_written_at, 3),
            log_bytes=used,
            log_used_ratio=round(used / bound, 4) if bound else 0.0,
            stats=self.stats.export(),
            totals=totals(ledger),
            fences=sum(len(attempts) for fenced in (ledger.fenced_transfers,
                                                    ledger.fenced_chains)
                       for attempts in list(fenced.values())),
            replication=self.replicator.state(last_seq)
            if self.replicator is not None else None,
            commits_applied=ledger.commits_applied,
        )

    def _broken_status(self, why: str) -> ShardStatus:
        return ShardStatus(
            shard=self.config.shard_index, accounts=0, transfers=0, in_doubt=0,
            pending_open=0, last_seq=self._log.last_seq, recovery_ms=0.0,
            recovered_records=0, snapshot_seq=0, snapshot_seq_written=0,
            snapshot_age_seconds=0.0, log_bytes=0, log_used_ratio=0.0,
            stats=self.stats.export(), totals=[], broken=why)

    def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed:
        """Committed records from `from_seq` (at most `records_max`, and no more than about
        `bytes_max` of payload): the log feed. Safe on another thread than the batches'."""
        with self.log_in_use:
            return self._read_log(from_seq, records_max, bytes_max)

    def _read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed:
        log_ = self._log
        last_seq = log_.last_seq
        if self.replicator is not None:  # sync: nothing a failover could take back
            last_seq = self.replicator.committed_seq(last_seq)
        records, size = [], 0
        for record in log_.records_from(max(1, from_seq),
                                        min(records_max, last_seq - max(1, from_seq) + 1)):
            records.append(FeedRecord(record.seq, record.timestamp_ns, record.payload))
            size += len(record.payload)
            if size >= bytes_max:
                break
        return LogFeed(records, last_seq)

    def close(self) -> None:
        if self.replicator is not None:
            self.replicator.close()
        self.wait_for_snapshot()
        with self.log_in_use:
            self._log.close()


__all__ = ["Reply", "ShardConfig", "ShardHost"]
