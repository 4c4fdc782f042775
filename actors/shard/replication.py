"""A shard's log shipped to a follower on another storage node, under leader epochs.

The leader ships each committed record (its raw bytes: the follower's log is the same
hash chain) to one follower. `replication.mode`:

- `sync`: a batch is answered only after the follower has fsynced its record too. The record
  goes to the follower before the leader's own commit, so the two fsyncs overlap. If the
  follower does not confirm (gone, too slow, fenced), the batch fails as "committed, then
  failed" (its callers must ask) and the shard refuses every call (`replica_unavailable`)
  until the controller has recorded in the topology that the follower is out of sync; it
  then goes on alone and copies the follower back in the background; once the follower has
  everything, commits wait for it again (and the controller records it in sync).
- `async`: batches never wait; a background thread ships. A failover can lose what had not
  been shipped.

Epochs fence deposed leaders: a follower refuses records from a leader of an older epoch
than its own, so a leader that was replaced (paused, partitioned, restarted from old
settings) can never have a batch acknowledged in `sync` mode. A follower joins a leader by
cutting what it holds beyond what the leader's history says its epoch wrote (KIP-101), then
appends from there; each record must chain onto the one before it.

Readers of the log feed (the read model, event streams) see only records the follower holds
in `sync` mode: nothing a failover could take back.

No Ray here: the follower is reached through a `FollowerLink` (actors/shard/actor.py).
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal, Protocol

import msgspec

from actors.shard.data_port import ANSWER, READY, REQUEST
from persistence.epochs import (
    EpochStart,
    current_epoch,
    end_of,
    entered,
    load_epochs,
    save_epochs,
)
from persistence.lmdb_log import LmdbLog
from persistence.log import AfterCommit
from persistence.records import CorruptRecord, Record, decode_record, raw_of

log = logging.getLogger("payswitch.replication")

ReplicationMode = Literal["sync", "async", "off"]
SHIP_RECORDS_MAX = 1_000  # records in one catch-up call
SHIP_BYTES_MAX = 8 << 20
SHIP_IDLE_S = 0.05  # the background shipper's pause when the follower has everything
RETRY_S = 0.5  # after a failed call to the follower
START_GRACE_S = 30.0  # a follower not reachable this soon after the leader started: info


class FollowerAnswer(msgspec.Struct, frozen=True, array_like=True):
    """`ok`: the follower holds every record up to `last_seq`. `fenced`: it follows a newer
    epoch (`epoch`); the caller is a deposed leader. `rejoin`: it expects a join first (it
    restarted, another join came since, or the records do not follow its log: `last_seq`
    says where it is)."""

    kind: Literal["ok", "fenced", "rejoin"]
    last_seq: int
    epoch: int
    join_id: int = 0  # the join this answers (a join's): appends must name it
    last_chain: bytes = b""  # the chain of the follower's record `last_seq`


class NotReplicated(AfterCommit):
    """The batch is in the leader's log but its follower did not confirm it: the batch HAS
    happened here, but is not acknowledged; its callers must ask (redrive does)."""


class Pending(Protocol):
    def result(self, timeout_s: float) -> FollowerAnswer:
        """The follower's answer; raises if it does not come within `timeout_s`."""


class LogReads(Protocol):
    """What the shipper reads of the leader's log (a RecordLog; in a shard, reads taken
    under the host's lock, since a rebuild closes and reopens the log: ShardHost.log_reads)."""

    @property
    def last_seq(self) -> int: ...

    def records_from(self, seq_from: int, count: int) -> list[Record]: ...

    def first_seq_stored(self) -> int: ...


class FollowerLink(Protocol):
    def join(self, epochs: list[EpochStart], next_seq: int) -> Pending: ...

    def append(self, epoch: int, records: list[tuple[int, bytes]], join_id: int
               ) -> Pending: ...


# ---- the follower ----

class Follower:
    """A follower's copy of one shard's log (an owner's log: the follower is its only
    writer), with its epochs in the same directory."""

    def __init__(self, shard_log: LmdbLog, directory: Path) -> None:
        self._log = shard_log
        self._directory = directory
        self.epochs = load_epochs(directory)
        self._joined_epoch = 0  # the leader epoch it joined since it started (0: none)
        # Each join is numbered; an append must name the latest. An append sent before a
        # join but arriving after it (a connection the leader gave up on) is refused: it
        # may carry a record the leader took back by that join.
        self._join_id = 0

    @property
    def last_seq(self) -> int:
        return self._log.last_seq

    def join(self, leader_epochs: list[EpochStart], leader_next_seq: int) -> FollowerAnswer:
        """A leader of `leader_epochs[-1]` whose next record is `leader_next_seq`: cut what
        this copy holds beyond what the leader's history keeps of its own newest epoch."""
        mine, theirs = current_epoch(self.epochs), current_epoch(leader_epochs)
        if theirs < mine:
            return FollowerAnswer("fenced", self.last_seq, mine)
        keep_before = end_of(leader_epochs, mine, leader_next_seq)
        if self.last_seq >= keep_before:
            dropped = self._log.truncate_from(keep_before)
            log.warning("follower at %s: cut %d record(s) from %d that leader epoch %d does "
                        "not hold (never acknowledged)", self._directory, len(dropped),
                        keep_before, theirs)
        if leader_epochs != self.epochs:
            save_epochs(self._directory, leader_epochs)
            self.epochs = list(leader_epochs)
        self._joined_epoch = theirs
        self._join_id += 1
        return FollowerAnswer("ok", self.last_seq, theirs, self._join_id,
                              self._log.last_chain)

    def append(self, epoch: int, records: list[tuple[int, bytes]],
               join_id: int) -> FollowerAnswer:
        """Store the records (one fsync) if they extend this copy's log under `epoch`, sent
        by the latest join."""
        mine = current_epoch(self.epochs)
        if epoch < mine:
            return FollowerAnswer("fenced", self.last_seq, mine)
        if epoch != self._joined_epoch or join_id != self._join_id:
            return FollowerAnswer("rejoin", self.last_seq, mine)
        held = [(seq, raw) for seq, raw in records if seq <= self.last_seq]  # a resend
        if held and any(raw_of(stored) != raw for stored, (_, raw) in zip(
                self._log.records_from(held[0][0], len(held)), held, strict=False)):
            log.error("follower at %s: a resent record differs from the one it holds",
                      self._directory)
            return FollowerAnswer("rejoin", self.last_seq, mine)
        new = records[len(held):]
        if not new:
            return FollowerAnswer("ok", self.last_seq, mine)
        if new[0][0] != self.last_seq + 1:
            return FollowerAnswer("rejoin", self.last_seq, mine)
        chain = self._log.last_chain
        try:
            for seq, raw in new:
                chain = decode_record(raw, seq, chain).chain
        except CorruptRecord as error:  # not this log's history: join again to cut it
            log.error("follower at %s: record %d does not follow its log (%s)",
                      self._directory, error.seq, error.reason)
            return FollowerAnswer("rejoin", self.last_seq, mine)
        self._log.append_raw_many(new)
        return FollowerAnswer("ok", self.last_seq, mine)


# ---- the leader ----

class ReplicationState(msgspec.Struct, frozen=True):
    """What a leader says about its follower (status, /v1/cluster, the controller)."""

    mode: str
    epoch: int
    waits: bool  # sync: commits wait for the follower
    blocked: str  # why every call is refused until the controller decides ("" if not)
    deposed: bool  # a follower follows a newer epoch: this leader never serves again
    # The follower was seen to hold the whole log since the last failure (sync: and every
    # commit waits for it): only then may the controller record it in sync.
    confirmed: bool
    follower_seq: int  # the last record the follower confirmed (-1: not known yet)
    lag_records: int


class FollowerCannotCopy(Exception):
    """The leader's log no longer holds what the follower lacks (its start was compacted)."""


class Replicator:
    """The leader's side. `before_commit`, `after_commit` and `abandon` run in the shard's
    writer; the shipper on a thread of its own, which copies the follower when commits do
    not wait for it and confirms an idle follower when they do. Lock order: the shard's
    batch lock, then `_lock`."""

    def __init__(self, mode: ReplicationMode, epoch: int, directory: Path,
                 shard_log: Callable[[], LogReads], link: Callable[[], FollowerLink | None],
                 timeout_s: float, batch_lock: threading.Lock) -> None:
        self.mode = mode
        self._batch_lock = batch_lock  # the shard's: no batch runs while it is held
        self.epoch = epoch
        self._shard_log = shard_log
        self._link = link
        self._timeout_s = timeout_s
        self._directory = directory
        next_seq = shard_log().last_seq + 1
        self.epochs = self._enter_epoch(directory, epoch, next_seq)
        # A sync leader starts waiting for its follower, whatever the topology said when it
        # was made (Ray restarts it with those arguments): only the controller, having
        # recorded the follower out of sync, lets it go on without (`go_alone`).
        self.waits = mode == "sync"
        self.blocked = ""
        self.deposed = False  # a follower answered with a newer epoch: blocked for good
        self.confirmed = False
        self.acked_seq = -1  # the follower's last confirmed record (-1: not known yet)
        self._floor_seq = next_seq - 1  # readers saw up to here before this start
        self._joined = False  # joined under this epoch since the last failure
        self._join_id = 0  # the follower's number for that join: appends name it
        self._pending: Pending | None = None
        self._lock = threading.Lock()  # the shipper against the writer
        self._stop = threading.Event()
        self._started_s = time.monotonic()
        self._shipper: threading.Thread | None = None
        if mode != "off":
            self._shipper = threading.Thread(target=self._ship_forever, daemon=True,
                                             name="replication")
            self._shipper.start()

    @staticmethod
    def _enter_epoch(directory: Path, epoch: int, next_seq: int) -> list[EpochStart]:
        epochs = load_epochs(directory)
        if epoch < current_epoch(epochs):
            raise ValueError(f"{directory} served leader epoch {current_epoch(epochs)}, newer "
                             f"than the topology's {epoch}: this copy was promoted later "
                             "than the topology says; refusing to lead under an old epoch")
        updated = entered(epochs, epoch, next_seq)
        if updated != epochs:
            save_epochs(directory, updated)
        return updated

    # -- the writer's path --

    def before_commit(self, record: Record) -> None:
        """Sync mode: send the record (and whatever the follower lacks before it) now, so
        its fsync runs beside the leader's."""
        if self.mode != "sync" or self.blocked or not self.waits:
            return
        with self._lock:
            try:
                link = self._joined_link()
                records = self._catch_up(self.acked_seq + 1, record.seq - 1)
                if records is None:
                    return
                self._pending = link.append(self.epoch, [*records,
                                                         (record.seq, raw_of(record))],
                                            self._join_id)
            except Exception as error:
                self._block(f"the follower could not be reached: {error!r}")

    def after_commit(self, record: Record) -> None:
        if self.mode != "sync":
            return
        with self._lock:  # one look: the controller's go_alone may come meanwhile
            pending, self._pending = self._pending, None
            blocked = self.blocked
        if pending is None:  # not shipped: blocked in before_commit, or alone (recorded so)
            if blocked:
                raise NotReplicated(f"record {record.seq} is not on the follower: {blocked}")
            return
        fenced = False
        try:
            answer = pending.result(self._timeout_s)
        except Exception as error:
            why = f"the follower did not confirm within {self._timeout_s} s: {error!r}"
        else:
            why, fenced = self._refusal(answer, record.seq), answer.kind == "fenced"
            if not why:
                self.acked_seq, self.confirmed = answer.last_seq, True
                return
        self._block(why, deposed=fenced)
        raise NotReplicated(f"record {record.seq} is not on the follower: {why}")

    def abandon(self) -> None:
        """The leader's commit failed after its record was shipped: the follower may hold a
        record the leader does not. Join again at once, which cuts it there; if that cannot
        be done, the batch is in doubt (AfterCommit: its callers must ask), not refused."""
        pending, self._pending = self._pending, None
        if pending is None:
            return
        with contextlib.suppress(Exception):  # let the append land before the join cuts it
            pending.result(self._timeout_s)
        with self._lock:
            self._joined, self.confirmed = False, False
            try:
                self._joined_link()
            except Exception as error:
                self._block(f"a record shipped before the leader's commit failed could not "
                            f"be taken back: {error!r}")
                raise AfterCommit("the batch's record may be on the follower though the "
                                  "leader's commit failed: its callers must ask") from error

    def _catch_up(self, seq_from: int, seq_to: int) -> list[tuple[int, bytes]] | None:
        """What the follower lacks before a batch's record, if it is little enough to send
        with it (else the shard blocks: the controller lets it copy in the background)."""
        behind = seq_to - seq_from + 1
        if behind > SHIP_RECORDS_MAX:
            self._block(f"the follower is {behind} records behind: it is copied in the "
                        "background, not inside a batch")
            return None
        records = self._records(seq_from, seq_to)
        if sum(len(raw) for _, raw in records) > SHIP_BYTES_MAX:
            self._block(f"the follower is {behind} records (over {SHIP_BYTES_MAX} bytes) "
                        "behind: it is copied in the background, not inside a batch")
            return None
        return records

    def _refusal(self, answer: FollowerAnswer, seq: int) -> str:
        if answer.kind == "fenced":
            return (f"the follower follows epoch {answer.epoch}: this leader (epoch "
                    f"{self.epoch}) was deposed")
        if answer.kind != "ok" or answer.last_seq < seq:
            return f"the follower answered {answer.kind} at record {answer.last_seq}"
        return ""

    def _block(self, why: str, deposed: bool = False) -> None:
        self.deposed = self.deposed or deposed
        if not self.blocked:
            log.error("replication: %s; the shard refuses calls until the controller records "
                      "its follower out of sync", why)
        self.blocked = why
        self._joined, self.confirmed = False, False

    def go_alone(self) -> None:
        """The controller recorded the follower out of sync: a blocked leader serves without
        waiting for it, and copies it back in the background. (Nothing for a leader that is
        not blocked: a late call must not stop one that waits again.)"""
        with self._lock:
            if self.deposed or not self.blocked:
                return  # a deposed leader never serves again
            self.waits = False
            self.blocked = ""
            self._joined, self.confirmed = False, False

    def follower_replaced(self) -> None:
        """A new follower actor was started: what the old one held proves nothing."""
        with self._lock:
            self._joined, self.confirmed = False, False

    def committed_seq(self, last_seq: int) -> int:
        """The newest record readers may see: in sync mode, only what the follower holds
        (or what readers could see before this leader started)."""
        if self.mode == "sync" and (self.waits or self.blocked):
            return min(last_seq, max(self.acked_seq, self._floor_seq))
        return last_seq

    def state(self, last_seq: int) -> ReplicationState:
        follower = self.acked_seq
        return ReplicationState(self.mode, self.epoch, self.waits and not self.blocked,
                                self.blocked, self.deposed, self.confirmed and not self.blocked,
                                follower,
                                max(0, last_seq - follower) if follower >= 0 else last_seq)

    def close(self) -> None:
        self._stop.set()
        if self._shipper is not None:
            self._shipper.join(timeout=5)

    # -- shared --

    def _joined_link(self) -> FollowerLink:
        """The follower's link, joined under this epoch (its last record then known)."""
        link = self._link()
        if link is None:
            raise ConnectionError("no follower is running")
        if not self._joined:
            answer = link.join(self.epochs, self._shard_log().last_seq + 1).result(
                self._timeout_s)
            if answer.kind == "fenced":
                self._block(self._refusal(answer, 0), deposed=True)
            if answer.kind != "ok":
                raise ConnectionError(self._refusal(answer, 0) or answer.kind)
            self._accept_join(answer)
        return link

    def _accept_join(self, answer: FollowerAnswer) -> None:
        """(Under `_lock`.) A join answered ok: the follower's log must be a prefix of this
        one (its last record's chain is ours at that seq); if not, it cannot be repaired by
        copying, and the shard stops rather than call it in sync."""
        if answer.last_seq > 0:
            mine = self._shard_log().records_from(answer.last_seq, 1)
            if mine and mine[0].chain != answer.last_chain:
                self._block(f"the follower's copy differs from this log at record "
                            f"{answer.last_seq}: give it a fresh copy of the shard "
                            "(docs/OPERATIONS.md, a follower is out of sync)")
                raise ConnectionError("the follower's copy differs from this log")
        self.acked_seq, self._joined, self._join_id = answer.last_seq, True, answer.join_id

    def _records(self, seq_from: int, seq_to: int) -> list[tuple[int, bytes]]:
        """Records seq_from..seq_to of the leader's log, raw (raises if it lacks some)."""
        if seq_to < seq_from:
            return []
        records = [(r.seq, raw_of(r)) for r in
                   self._shard_log().records_from(seq_from, seq_to - seq_from + 1)]
        if not records or records[0][0] != seq_from:
            raise FollowerCannotCopy(
                f"the follower needs record {seq_from}, which the leader's log no longer "
                f"holds (its first is {self._shard_log().first_seq_stored()}: compacted); "
                "give the follower a copy of the shard (docs/CLUSTER.md, Limits)")
        return records

    def _ship_forever(self) -> None:
        """Copy the follower up to the leader's log whenever commits do not wait for it;
        confirm an idle follower when they do."""
        failed_before = ""
        while not self._stop.is_set():
            try:
                progressed = self._ship_once()
            except Exception as error:
                with self._lock:
                    self._joined = False
                if repr(error) != failed_before:  # once per kind of failure, not per retry
                    # (at start its follower may not run yet: that is no news)
                    starting = time.monotonic() - self._started_s < START_GRACE_S
                    log.log(logging.INFO if starting else logging.WARNING,
                            "replication: the follower cannot be copied (%r); retrying every "
                            "%.1f s", error, RETRY_S)
                failed_before = repr(error)
                self._stop.wait(RETRY_S)
                continue
            failed_before = ""
            if not progressed:
                self._stop.wait(SHIP_IDLE_S)

    def _ship_once(self) -> bool:
        """One step; False when there was nothing to do. Raises when a step failed."""
        if self.blocked or self._stop.is_set():
            return False
        if self.waits:
            return self._confirm_idle()
        if not self._joined:  # a join may wait for a follower: not under the lock
            link = self._link()
            if link is None:
                raise ConnectionError("no follower is running")
            answer = link.join(self.epochs, self._shard_log().last_seq + 1).result(
                self._timeout_s)
            with self._lock:
                if answer.kind == "fenced":
                    self._block(self._refusal(answer, 0), deposed=True)
                elif answer.kind == "ok" and not self.waits:
                    self._accept_join(answer)
                    self.confirmed = self.mode == "async"
            self._wait_if_caught_up()
            return True
        with self._lock:
            if self.waits or self.blocked or self._stop.is_set() or not self._joined:
                return False
            link = self._joined_link()
            if self.acked_seq >= self._shard_log().last_seq:
                return False
            records = self._records(self.acked_seq + 1,
                                    min(self._shard_log().last_seq,
                                        self.acked_seq + SHIP_RECORDS_MAX))
            while len(records) > 1 and sum(len(raw) for _, raw in records) > SHIP_BYTES_MAX:
                records = records[:len(records) // 2]
            epoch, join_id = self.epoch, self._join_id
        answer = link.append(epoch, records, join_id).result(self._timeout_s)
        with self._lock:
            if answer.kind == "fenced":
                self._block(self._refusal(answer, 0), deposed=True)
                return False
            if answer.kind != "ok":
                raise ConnectionError(f"the follower answered {answer.kind} at record "
                                      f"{answer.last_seq}: joining it again")
            if not self.waits:
                self.acked_seq = max(self.acked_seq, answer.last_seq)
        self._wait_if_caught_up()
        return True

    def _confirm_idle(self) -> bool:
        """Sync, and commits wait: a follower not yet seen to hold the whole log since the
        last failure (this leader just started, or it restarted) is joined and copied now,
        between batches, rather than at the next batch (an idle shard may have none)."""
        if self.confirmed:
            return False
        with self._batch_lock, self._lock:
            if self.confirmed or self.blocked or not self.waits:
                return False
            link = self._joined_link()
            last = self._shard_log().last_seq
            if self.acked_seq < last:
                records = self._catch_up(self.acked_seq + 1, last)
                if records is None:
                    return False
                answer = link.append(self.epoch, records, self._join_id).result(
                    self._timeout_s)
                if answer.kind == "fenced":
                    self._block(self._refusal(answer, 0), deposed=True)
                    return False
                if answer.kind != "ok" or answer.last_seq < last:
                    raise ConnectionError(f"the follower answered {answer.kind} at record "
                                          f"{answer.last_seq}")
                self.acked_seq = answer.last_seq
            self.confirmed = True
            log.info("shard follower confirmed at record %d (epoch %d)", self.acked_seq,
                     self.epoch)
            return True

    def _wait_if_caught_up(self) -> None:
        """Sync mode: once the follower holds the whole log, commits wait for it again. Done
        between batches (under the shard's batch lock), so that no batch answered without
        the follower slips in after it was judged caught up."""
        if self.mode != "sync" or self.waits:
            return
        with self._batch_lock, self._lock:
            if not self.waits and not self.blocked and self._joined and \
                    self.acked_seq == self._shard_log().last_seq:
                self.waits, self.confirmed = True, True
                log.info("shard follower in sync at record %d (epoch %d)", self.acked_seq,
                         self.epoch)


# ---- the follower's port: records over a socket, not Ray calls ----

class FollowerRequest(msgspec.Struct, frozen=True, array_like=True):
    """One call to a follower over its data port (actors/shard/data_port.py's framing)."""

    kind: Literal["join", "append"]
    epoch: int
    epochs: list[EpochStart]
    next_seq: int
    records: list[tuple[int, bytes]]
    join_id: int = 0


_REQUEST_DECODER = msgspec.msgpack.Decoder(FollowerRequest)
_ANSWER_DECODER = msgspec.msgpack.Decoder(FollowerAnswer)
_ENCODER = msgspec.msgpack.Encoder()


def serve_follower_request(follower: Follower, blob: bytes) -> bytes:
    """A follower's answer to one request from its port."""
    request = _REQUEST_DECODER.decode(blob)
    if request.kind == "join":
        return _ENCODER.encode(follower.join(request.epochs, request.next_seq))
    return _ENCODER.encode(follower.append(request.epoch, request.records, request.join_id))


Endpoint = Callable[[], tuple[str, int, bytes]]  # the follower's port and token, looked up
CONNECT_TIMEOUT_S = 5.0


class SocketFollowerLink:
    """The leader's connection to its follower's port (a `FollowerLink`). Requests are
    pipelined, answers read in order; any failure drops the connection (an answer that
    timed out would leave the stream out of step) and the next call looks the follower's
    port up again (it may have restarted elsewhere)."""

    def __init__(self, endpoint: Endpoint) -> None:
        self._endpoint = endpoint
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._reader: Any = None
        self._generation = 0
        self._sent = 0
        self._read = 0
        self._answers: dict[int, FollowerAnswer] = {}

    def join(self, epochs: list[EpochStart], next_seq: int) -> _SocketAnswer:
        return self._send(FollowerRequest("join", 0, epochs, next_seq, []))

    def append(self, epoch: int, records: list[tuple[int, bytes]], join_id: int
               ) -> _SocketAnswer:
        return self._send(FollowerRequest("append", epoch, [], 0, records, join_id))

    def _send(self, request: FollowerRequest) -> _SocketAnswer:
        blob = _ENCODER.encode(request)
        with self._lock:
            try:
                self._connected().sendall(REQUEST.pack(len(blob), 0) + blob)
            except Exception as error:
                self._drop()
                raise ConnectionError(f"the follower's port: {error!r}") from None
            self._sent += 1
            return _SocketAnswer(self, self._sent, self._generation)

    def answer(self, ticket: int, generation: int, timeout_s: float) -> FollowerAnswer:
        with self._lock:
            if generation != self._generation or self._socket is None:
                raise ConnectionError("the connection to the follower was lost")
            try:
                self._socket.settimeout(timeout_s)
                while self._read < ticket:
                    (size,) = ANSWER.unpack(self._exactly(ANSWER.size))
                    self._read += 1
                    self._answers[self._read] = _ANSWER_DECODER.decode(self._exactly(size))
            except Exception as error:
                self._drop()
                raise ConnectionError(f"the follower did not answer: {error!r}") from None
            for older in [t for t in self._answers if t < ticket]:  # never asked for
                del self._answers[older]
            return self._answers.pop(ticket)

    def _exactly(self, size: int) -> bytes:
        data = self._reader.read(size)
        if len(data) < size:
            raise ConnectionError("the follower closed the connection")
        return bytes(data)

    def _connected(self) -> socket.socket:
        if self._socket is None:
            host, port, token = self._endpoint()
            connection = socket.create_connection((host, port), timeout=CONNECT_TIMEOUT_S)
            try:
                connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                connection.sendall(token)
                if connection.recv(len(READY)) != READY:
                    raise ConnectionError("the follower's port did not accept the token")
            except BaseException:
                connection.close()
                raise
            self._socket, self._reader = connection, connection.makefile("rb")
            self._sent = self._read = 0
            self._answers.clear()
        return self._socket

    def _drop(self) -> None:
        if self._socket is not None:
            with contextlib.suppress(OSError):
                self._reader.close()
                self._socket.close()
        self._socket = self._reader = None
        self._generation += 1

    def close(self) -> None:
        with self._lock:
            self._drop()


class _SocketAnswer:
    """A request sent on the follower's port (a `Pending`)."""

    def __init__(self, link: SocketFollowerLink, ticket: int, generation: int) -> None:
        self._link, self._ticket, self._generation = link, ticket, generation

    def result(self, timeout_s: float) -> FollowerAnswer:
        return self._link.answer(self._ticket, self._generation, timeout_s)
