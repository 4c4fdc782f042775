"""A shard's log shipped to a follower (actors/shard/replication.py), on real LMDB logs: a
leader host, a follower's copy in another directory, and the follower called in-process
(the Ray actor around it is exercised by tests/test_cluster.py).

Pinned here: sync commits land on the follower before they are answered; a follower that
does not confirm blocks the shard (nothing acknowledged, every call refused) until the
controller lets it go alone, and it is copied back; a follower refuses a deposed leader's
epoch; a copy that returns after a promotion cuts what the new leader never held; and a
promoted copy serves the same books.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from actors.messages import FAILED_REPLICA_UNAVAILABLE, GetAccount
from actors.shard.data_port import DataPort
from actors.shard.host import ShardHost
from actors.shard.replication import (
    Follower,
    FollowerAnswer,
    NotReplicated,
    ReplicationMode,
    Replicator,
    SocketFollowerLink,
    serve_follower_request,
)
from persistence.epochs import EpochStart, load_epochs
from persistence.lmdb_log import LmdbLog
from persistence.log import StorageFull
from persistence.records import raw_of
from tests.actors.test_host import account, call, commit, host_on, read_while_rebuilding, run

MAP_BYTES = 1 << 24


def wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.01)
    return True


class Done:
    def __init__(self, answer: FollowerAnswer) -> None:
        self.answer = answer

    def result(self, timeout_s: float) -> FollowerAnswer:
        return self.answer


class Lost:
    def result(self, timeout_s: float) -> FollowerAnswer:
        raise TimeoutError("no answer")


class InProcess:
    """The follower called directly; `reachable` False makes every call time out."""

    def __init__(self, follower: Follower) -> None:
        self.follower = follower
        self.reachable = True

    def join(self, epochs: list[EpochStart], next_seq: int) -> Done | Lost:
        return Done(self.follower.join(epochs, next_seq)) if self.reachable else Lost()

    def append(self, epoch: int, records: list[tuple[int, bytes]], join_id: int
               ) -> Done | Lost:
        return Done(self.follower.append(epoch, records, join_id)) if self.reachable \
            else Lost()


def follower_on(path: Path) -> tuple[Follower, LmdbLog]:
    path.mkdir(parents=True, exist_ok=True)
    copy = LmdbLog(path, MAP_BYTES)
    return Follower(copy, path), copy


def replicated(path: Path, link: InProcess | None, epoch: int = 1,
               mode: ReplicationMode = "sync") -> ShardHost:
    host = host_on(path)
    host.replicator = Replicator(mode, epoch, path, lambda: host.log_reads,  # as the actor
                                 lambda: link, timeout_s=1.0, batch_lock=host.batch_lock)
    return host


def balance(host: ShardHost, account_id: str) -> int:
    (view,) = call(host, [GetAccount(account_id)])
    return int(view.account.credits_posted - view.account.debits_posted)


def test_sync_commits_reach_the_follower_before_they_are_answered(tmp_path: Path) -> None:
    follower, copy = follower_on(tmp_path / "follower")
    host = replicated(tmp_path / "leader", InProcess(follower))
    call(host, [account("a"), account("b")])
    call(host, [commit("t1", "a", "b", 5)])
    assert copy.last_seq == host.log.last_seq == 2
    assert [r.chain for r in copy.records_from(1, 2)] == \
        [r.chain for r in host.log.records_from(1, 2)]
    assert load_epochs(tmp_path / "leader") == load_epochs(tmp_path / "follower") == \
        [EpochStart(1, 1)]
    assert host.status().replication.waits  # type: ignore[union-attr]
    host.close()
    copy.close()


def test_a_lost_follower_blocks_the_shard_until_it_goes_alone_then_copies_it_back(
        tmp_path: Path) -> None:
    follower, copy = follower_on(tmp_path / "follower")
    link = InProcess(follower)
    host = replicated(tmp_path / "leader", link)
    call(host, [account("a"), account("b")])
    link.reachable = False
    with pytest.raises(NotReplicated):  # committed here, not acknowledged: callers must ask
        run(host, [commit("t1", "a", "b", 5)])
    assert host.log.last_seq == 2 and copy.last_seq == 1
    assert host.read_log(1, 100, 1 << 20).last_seq == 1  # readers do not see record 2
    refused = run(host, [GetAccount("a")])  # reads too: nothing seen a failover takes back
    assert refused.failed == FAILED_REPLICA_UNAVAILABLE and not refused.replies
    state = host.status().replication
    assert state is not None and state.blocked and not state.waits
    # The controller recorded the follower out of sync: the shard serves alone ...
    host.replicator.go_alone()  # type: ignore[union-attr]
    call(host, [commit("t2", "a", "b", 7)])
    assert balance(host, "b") == 12 and host.read_log(1, 100, 1 << 20).last_seq == 3
    # ... and copies the follower back once it answers; commits then wait for it again.
    link.reachable = True
    assert wait_until(lambda: copy.last_seq == 3, 5)
    call(host, [commit("t3", "a", "b", 1)])
    assert copy.last_seq == 4 and host.status().replication.waits  # type: ignore[union-attr]
    host.close()
    copy.close()


def test_a_follower_refuses_a_deposed_leader_and_a_returning_copy_cuts_its_tail(
        tmp_path: Path) -> None:
    """Leader A (epoch 1) is replaced by its follower B (epoch 2). A comes back: its records
    B never had are cut, and its appends in epoch 1 are refused."""
    follower_b, copy_b = follower_on(tmp_path / "b")
    link_b = InProcess(follower_b)
    host_a = replicated(tmp_path / "a", link_b)
    call(host_a, [account("a"), account("b")])
    call(host_a, [commit("t1", "a", "b", 5)])  # records 1, 2 on both
    link_b.reachable = False
    with pytest.raises(NotReplicated):
        run(host_a, [commit("t-lost", "a", "b", 50)])  # record 3 on A only: not acknowledged
    host_a.close()
    copy_b.close()

    # B is promoted under epoch 2 and takes writes; A's copy will follow it.
    follower_a, copy_a = follower_on(tmp_path / "a")
    link_a = InProcess(follower_a)
    host_b = replicated(tmp_path / "b", link_a, epoch=2)
    assert balance(host_b, "b") == 5  # what was acknowledged, and nothing else
    call(host_b, [commit("t2", "a", "b", 3)])
    assert wait_until(lambda: copy_a.last_chain == host_b.log.last_chain, 5)
    assert load_epochs(tmp_path / "a") == [EpochStart(1, 1), EpochStart(2, 3)]
    assert [r.payload for r in copy_a.records_from(1, 10)] == \
        [r.payload for r in host_b.log.records_from(1, 10)]  # t-lost is gone from A
    # A's old leader, had it kept running: its epoch-1 records are refused by either copy.
    assert follower_a.append(1, [(4, b"x")], 1).kind == "fenced"
    assert follower_a.join([EpochStart(1, 1)], 4).kind == "fenced"
    # A leader still on epoch 1 (a paused process that resumes) gets no batch acknowledged:
    # its commit fails, it refuses every call after, and the controller cannot release it.
    stale = replicated(tmp_path / "stale", link_a)
    # refused at once if its shipper met the new epoch first, else not acknowledged
    with contextlib.suppress(NotReplicated):
        assert run(stale, [account("z")]).failed == FAILED_REPLICA_UNAVAILABLE
    state = stale.status().replication
    assert state is not None and state.deposed and state.blocked
    stale.replicator.go_alone()  # type: ignore[union-attr]
    assert run(stale, [GetAccount("z")]).failed == FAILED_REPLICA_UNAVAILABLE
    stale.close()
    host_b.close()
    copy_a.close()

    # A copy promoted serves the same books (its store is rebuilt from the log).
    promoted = host_on(tmp_path / "a")
    assert balance(promoted, "b") == 8
    promoted.close()


def test_a_leader_refuses_to_serve_under_an_epoch_older_than_its_copy_served(
        tmp_path: Path) -> None:
    host = replicated(tmp_path / "leader", None, epoch=3)
    host.close()
    with pytest.raises(ValueError, match="newer than the topology's 2"):
        replicated(tmp_path / "leader", None, epoch=2)


def test_a_restarted_sync_leader_waits_for_its_follower_whatever_it_was_started_with(
        tmp_path: Path) -> None:
    """Ray restarts a leader with the arguments it was first made with, which cannot say
    what the controller recorded since (it took whether the follower was in sync from them:
    a restarted leader could acknowledge batches its in-sync follower lacked). A sync leader
    therefore always starts waiting: with its follower gone, its first batch is not
    acknowledged, until the controller lets it go alone."""
    follower, copy = follower_on(tmp_path / "follower")
    link = InProcess(follower)
    link.reachable = False
    host = replicated(tmp_path / "leader", link)
    with pytest.raises(NotReplicated):
        run(host, [account("a")])
    host.replicator.go_alone()  # type: ignore[union-attr]
    call(host, [account("b")])
    host.close()
    copy.close()


def test_a_leader_is_confirmed_only_once_its_follower_is_seen_to_hold_its_log(
        tmp_path: Path) -> None:
    """The controller records a follower in sync on `confirmed`, not on `waits` (a sync
    leader waits from its start, before it knows what its follower holds: review). An idle
    leader confirms its follower without waiting for a batch."""
    follower, copy = follower_on(tmp_path / "follower")
    link = InProcess(follower)
    host = replicated(tmp_path / "leader", link)
    call(host, [account("a")])
    link.reachable = False
    with pytest.raises(NotReplicated):
        run(host, [account("b")])
    host.replicator.go_alone()  # type: ignore[union-attr]
    call(host, [account("c")])  # the follower lacks records 2 and 3
    host.close()
    host = replicated(tmp_path / "leader", link)  # Ray restarts the leader
    state = host.status().replication
    assert state is not None and state.waits and not state.confirmed
    assert host.read_log(1, 100, 1 << 20).last_seq == 3  # what readers saw before
    link.reachable = True
    assert wait_until(lambda: host.status().replication.confirmed, 5)  # type: ignore[union-attr]
    assert copy.last_seq == 3
    host.close()
    copy.close()


def test_a_record_shipped_before_the_leaders_commit_failed_is_taken_back(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The record goes to the follower before the leader's own commit; a commit that then
    fails (here: the log full) answers the batch as not applied, so the follower must not
    keep the record: it is cut by joining again at once (review)."""
    follower, copy = follower_on(tmp_path / "follower")
    host = replicated(tmp_path / "leader", InProcess(follower))
    call(host, [account("a"), account("b")])
    assert wait_until(lambda: host.status().replication.confirmed, 5)  # type: ignore[union-attr]

    def full(seq: int, raw: bytes, timestamp_ns: int) -> None:
        raise StorageFull("the test's map is full")

    monkeypatch.setattr(host.log, "_commit_record", full)
    refused = run(host, [commit("t1", "a", "b", 5)])
    assert [reply.code for reply in refused.replies] == ["storage_full"]
    assert copy.last_seq == host.log.last_seq == 1
    host.close()
    copy.close()


def test_records_go_to_the_follower_over_its_port_and_a_lost_port_blocks(
        tmp_path: Path) -> None:
    """The leader's link in production: the follower's data port (a real socket), requests
    pipelined and answered in order; a port that goes away fails the batch's wait, and the
    link connects again to the port it is given next."""
    follower, copy = follower_on(tmp_path / "follower")
    lock = threading.Lock()

    def serve(blob: bytes, request_ids: list[str]) -> bytes:
        with lock:
            return serve_follower_request(follower, blob)

    port = DataPort("127.0.0.1", serve)
    ports = [port]
    link = SocketFollowerLink(lambda: (ports[-1].host, ports[-1].port, ports[-1].token))
    host = host_on(tmp_path / "leader")
    host.replicator = Replicator("sync", 1, tmp_path / "leader", lambda: host.log,
                                 lambda: link, timeout_s=1.0, batch_lock=host.batch_lock)
    call(host, [account("a"), account("b")])
    call(host, [commit("t1", "a", "b", 5)])
    assert copy.last_seq == host.log.last_seq == 2
    port.close()
    with pytest.raises(NotReplicated):
        run(host, [commit("t2", "a", "b", 5)])
    host.replicator.go_alone()  # type: ignore[union-attr]
    ports.append(DataPort("127.0.0.1", serve))  # the follower again, on another port
    assert wait_until(lambda: host.status().replication.waits, 5)  # type: ignore[union-attr]
    call(host, [commit("t3", "a", "b", 1)])
    assert copy.last_seq == host.log.last_seq == 4
    link.close()
    ports[-1].close()
    host.close()
    copy.close()


def test_an_append_from_before_the_latest_join_is_refused(tmp_path: Path) -> None:
    """A record sent on a connection the leader gave up on may arrive after the leader joined
    again to take it back (review): the follower refuses appends that do not name its
    latest join."""
    follower, copy = follower_on(tmp_path / "follower")
    source = host_on(tmp_path / "source")
    call(source, [account("a")])
    (record,) = source.log.records_from(1, 1)
    first = follower.join([EpochStart(1, 1)], 1)
    second = follower.join([EpochStart(1, 1)], 1)
    late = follower.append(1, [(1, raw_of(record))], first.join_id)
    assert (late.kind, copy.last_seq) == ("rejoin", 0)
    assert follower.append(1, [(1, raw_of(record))], second.join_id).kind == "ok"
    source.close()
    copy.close()


def test_a_follower_whose_copy_differs_is_never_called_in_sync(tmp_path: Path) -> None:
    """A copy whose last record is not this leader's at that seq (another history) cannot be
    repaired by copying: the leader stops instead of confirming it."""
    follower, copy = follower_on(tmp_path / "follower")
    other = replicated(tmp_path / "other", InProcess(follower))
    call(other, [account("x")])
    call(other, [account("y")])  # the copy holds the other leader's records 1 and 2
    other.close()
    unreplicated = host_on(tmp_path / "leader")  # this leader's own records 1 to 3
    for name in ("p", "q", "r"):
        call(unreplicated, [account(name)])
    unreplicated.close()
    host = replicated(tmp_path / "leader", InProcess(follower))
    with contextlib.suppress(NotReplicated):
        run(host, [account("a")])
    call_failed = run(host, [account("b")])
    assert call_failed.failed == FAILED_REPLICA_UNAVAILABLE
    state = host.status().replication
    assert state is not None and not state.confirmed and "differs" in state.blocked
    host.close()
    copy.close()


def test_the_shipper_reading_the_log_while_the_batch_thread_rebuilds_gets_its_records(
        tmp_path: Path) -> None:
    """The shipper thread (async mode, or sync gone alone) reads records while a rebuild
    closes and reopens the log: the rebuild waits for the read (was: it closed the LMDB
    environment under it; a reviewer's finding beside the reads thread's)."""
    follower, _ = follower_on(tmp_path / "follower")
    host = replicated(tmp_path / "leader", InProcess(follower), mode="async")
    call(host, [account("a"), account("b")])
    call(host, [commit("t1", "a", "b", 5)])
    replicator = host.replicator
    assert replicator is not None
    shipped = read_while_rebuilding(host, lambda: replicator._records(1, 2))
    assert shipped and [seq for seq, _ in shipped[0]] == [1, 2]
    host.close()
