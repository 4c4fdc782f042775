"""A shard host when things fail: a command that raises, a reply that cannot be sent after
its commit, a full log, a rebuild that fails, a store entry written twice."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

import actors.shard.host as host_module
from actors.codec import decode_reply, encode_commands, encode_reply
from actors.ledger.balancing import LIMIT_MIN, decide, rule
from actors.ledger.codes import TransferResult
from actors.ledger.limits import Limits
from actors.ledger.model import Account
from actors.messages import (
    FAILED_INTERNAL,
    FAILED_STORAGE_FULL,
    AccountView,
    BatchReply,
    CreateAccount,
    Failed,
    GetAccount,
    GetTransfer,
    ReserveReply,
)
from actors.shard.commands import CommandTable
from actors.shard.host import ShardBroken, ShardHost
from persistence.index import IndexConflict, put_all
from persistence.lmdb_log import LmdbLog
from tests.actors.test_host import (
    CONFIG,
    account,
    call,
    commit,
    host_on,
    read_while_rebuilding,
    run,
)
from tests.persistence.test_lmdb_log import kill_a_reader


def test_one_command_that_raises_fails_alone_in_a_batch_of_thousands(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real = CommandTable._commit

    def raising_for_one(self: CommandTable, command: Any, events: list[Any]) -> Any:
        if command.transfer.id == "t-1234":
            raise RuntimeError("a bug that this one transfer meets")
        return real(self, command, events)

    monkeypatch.setattr(CommandTable, "_commit", raising_for_one)  # before the table binds it
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a")])
    reply = run(host, [commit(f"t-{n}", "bank", "a", 1) for n in range(3000)])
    assert not reply.failed
    failed = [n for n, r in enumerate(reply.replies) if isinstance(r, Failed)]
    assert failed == [1234] and reply.replies[1234].code == FAILED_INTERNAL
    assert all(r.result == "ok" for n, r in enumerate(reply.replies) if n != 1234)
    assert host.ledger.accounts["a"].credits_posted == 2999  # committed once, without it
    assert host.log.last_seq == 2
    # The next batch is served as usual; the same command sent again fails alone again.
    again = run(host, [commit("t-1234", "bank", "a", 1), commit("t-x", "bank", "a", 1)])
    assert isinstance(again.replies[0], Failed) and again.replies[1].result == "ok"
    host.close()


def test_limits_the_core_refuses_are_a_result_not_an_exception(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    (reply,) = call(host, [CreateAccount(Account("v", "USD", 1, "o", 0, ""),
                                         Limits(velocity_max=10))])  # no window
    assert reply.result == "limits_invalid" and reply.account is None
    host.close()


def test_a_reply_that_fails_after_its_commit_is_never_reported_as_not_done(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a")])
    real = host_module.encode_reply
    calls = {"n": 0}

    def failing_once(reply: Any) -> bytes:
        calls["n"] += 1
        if calls["n"] == 1:
            raise OverflowError("a reply that cannot be encoded")
        return real(reply)

    monkeypatch.setattr(host_module, "encode_reply", failing_once)
    with pytest.raises(OverflowError):  # the caller learns nothing: it must ask again
        host.handle(encode_commands([commit("t1", "bank", "a", 7)]))
    (view,) = call(host, [GetTransfer("t1")])
    assert view.transfer is not None and view.transfer.amount == 7  # it did happen
    host.close()


def test_a_full_log_refuses_writes_and_still_answers_reads(tmp_path: Path) -> None:
    host = host_on(tmp_path, map_size_bytes=1 << 17)
    call(host, [account("bank"), account("a")])
    for i in range(2000):
        reply = run(host, [commit(f"t{i}-{j}", "bank", "a", 1) for j in range(20)])
        if reply.replies and isinstance(reply.replies[0], Failed):
            break
    else:
        raise AssertionError("the log never filled")
    assert reply.replies[0].code == FAILED_STORAGE_FULL
    ledger = host.ledger  # rebuilt once, when the map filled
    for _ in range(3):  # later writes are refused at once: no rebuild per batch
        mixed = run(host, [GetAccount("a"), commit("late", "bank", "a", 1)])
        assert isinstance(mixed.replies[0], AccountView) and mixed.replies[0].account is not None
        assert isinstance(mixed.replies[1], Failed)
        assert mixed.replies[1].code == FAILED_STORAGE_FULL
        assert "larger wal.map_size_bytes" in mixed.replies[1].message
    assert host.ledger is ledger
    host.close()
    again = host_on(tmp_path, map_size_bytes=1 << 20)  # a restart with a larger map: writes
    assert call(again, [commit("late", "bank", "a", 1)])[0].result == "ok"
    again.close()


def test_a_rebuild_that_fails_stops_the_shard_loudly(tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    opened = {"n": 0}

    def open_log() -> LmdbLog:
        opened["n"] += 1
        if opened["n"] > 1:
            raise OSError("the disk went away")
        return LmdbLog(tmp_path, 1 << 24)

    host = ShardHost(CONFIG, open_log)
    call(host, [account("bank"), account("a")])
    monkeypatch.setattr(host.log, "append", _raise_in_commit)
    with pytest.raises(ShardBroken):
        host.handle(encode_commands([commit("t1", "bank", "a", 1)]))
    assert host.broken is not None
    with pytest.raises(ShardBroken):  # nothing more is served, not a half-applied state
        host.handle(encode_commands([GetAccount("a")]))
    status = host.status()  # says why, for /readyz (it raised on the closed log instead)
    assert status.broken is not None and "the disk went away" in status.broken
    assert (status.accounts, status.totals) == (0, [])  # no half-applied state shown


def _raise_in_commit(payload: bytes, timestamp_ns: int) -> Any:
    raise RuntimeError("the commit failed")


def test_a_store_entry_written_twice_fails_its_transaction(tmp_path: Path) -> None:
    log = LmdbLog(tmp_path, 1 << 24)
    table = log.store._tables[b"transfers"]  # type: ignore[index]
    with log._env.begin(write=True) as txn:
        put_all(txn, [(table, [(b"t1", b"x")], 0)])
    with pytest.raises(IndexConflict), log._env.begin(write=True) as txn:
        put_all(txn, [(table, [(b"t1", b"y")], 0)])
    with log._env.begin() as txn:
        assert txn.get(b"t1", db=table) == b"x"
    log.close()


def test_a_balancing_room_far_below_zero_still_fits_a_message() -> None:
    """A room below -2^63 (an overdraft lowered after use, pending debits on top) once made
    the reserving shard's reply fail to encode after its commit. Any room below 1 decides
    alike, so the rule carries LIMIT_MIN, and the reply encodes."""
    far = rule(TransferResult.exceeds_credits, -(2**70), clamps=True)
    assert far.limit == LIMIT_MIN
    zero = rule(TransferResult.exceeds_credits, 0, True)
    assert decide(5, [far])[0] == decide(5, [zero])[0] == TransferResult.exceeds_credits
    reply = ReserveReply("exceeds_credits", None, [far])
    assert decode_reply(encode_reply(BatchReply([reply]))).replies == [reply]


def test_a_reply_of_the_wrong_type_is_refused_even_under_python_O() -> None:
    """`expect` guards what a shard answered; an `assert` would vanish under -O and let a
    wrong reply through as if it were the right one."""
    code = ("from actors.messages import AccountReply, TransferReply, expect\n"
            "expect(AccountReply('ok'), TransferReply)\n")
    result = subprocess.run([sys.executable, "-O", "-c", code], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 1
    assert "TypeError: expected TransferReply from a shard, got AccountReply" in result.stderr


def test_a_snapshot_cut_frees_the_slots_of_readers_that_died(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("a")])
    dead = kill_a_reader(tmp_path)
    readers = host.log._env.readers  # type: ignore[attr-defined]
    assert dead and dead in readers()
    host.take_snapshot()
    host.wait_for_snapshot()
    assert dead not in readers()
    host.close()


def test_a_log_feed_read_while_the_batch_thread_rebuilds_is_answered_whole(
        tmp_path: Path) -> None:
    """The reads thread reads the log feed while the batch thread rebuilds (after a full log
    or a command that raised): the rebuild waits for the read (was: it closed the log under
    it, and the read failed as 'LMDB cannot read it', a spurious 503 on /v1/events; seen in
    the soak test's full-log round)."""
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a")])
    run(host, [commit(f"t-{n}", "bank", "a", 1) for n in range(10)])
    feeds = read_while_rebuilding(host, lambda: host.read_log(1, 100, 1 << 20))
    assert feeds and [r.seq for r in feeds[0].records] == [1, 2]
    assert host.read_log(1, 100, 1 << 20).last_seq == 2  # the rebuilt log serves too
    host.close()
