"""The shard host on a real LMDB log: batches, group commit, the store written with each
record, recovery, a full map."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import lmdb

from actors.codec import decode_events, decode_reply, encode_commands
from actors.ledger.model import PENDING, POST_PENDING, Account, Transfer
from actors.ledger.pending import UNSPECIFIED_CODE
from actors.messages import (
    FAILED_STORAGE_FULL,
    AccountTransfers,
    AccountView,
    BatchReply,
    ClaimPending,
    Command,
    Commit,
    CreateAccount,
    Failed,
    FinalizeClaim,
    GetAccount,
    GetTotals,
    GetTransfer,
    ListInDoubt,
    Reserve,
    Settle,
)
from actors.shard.host import ShardConfig, ShardHost
from persistence.index import TABLES
from persistence.lmdb_log import LmdbLog
from persistence.records import GENESIS_CHAIN, CorruptRecord
from tests.actors.ledger_helpers import accounts_now

CONFIG = ShardConfig(0, ("USD",), snapshot_every_events=1_000_000)


def host_on(path: Path, config: ShardConfig = CONFIG, map_size_bytes: int = 1 << 24) -> ShardHost:
    return ShardHost(config, lambda: LmdbLog(path, map_size_bytes))


def read_while_rebuilding(host: ShardHost, read: Callable[[], Any]) -> list[Any]:
    """`read` on another thread, paused inside the log, while the batch thread rebuilds (as
    after a full log): what it read (nothing if it failed). A rebuild that does not wait
    for the read closes the log under it."""
    log_ = host.log
    reading, rebuilt = threading.Event(), threading.Event()
    real_range = log_._raw_range

    def paused_range(seq_from: int, seq_to: int | None) -> Any:
        reading.set()
        rebuilt.wait(timeout=1.0)  # the rebuild goes first, unless it waits for this read
        return real_range(seq_from, seq_to)

    log_._raw_range = paused_range  # type: ignore[method-assign]
    read_back: list[Any] = []
    reader = threading.Thread(target=lambda: read_back.append(read()))
    reader.start()
    assert reading.wait(timeout=5.0)
    rebuild = threading.Thread(target=host._rebuild)
    rebuild.start()
    rebuild.join(timeout=0.3)
    rebuilt.set()
    reader.join(timeout=5.0)
    rebuild.join(timeout=5.0)
    return read_back


def run(host: ShardHost, commands: list[Command]) -> BatchReply:
    return decode_reply(host.handle(encode_commands(commands)))


def call(host: ShardHost, commands: list[Command]) -> list[Any]:
    reply = run(host, commands)
    assert not reply.failed, reply
    return list(reply.replies)


def account(account_id: str, flags: int = 0) -> CreateAccount:
    return CreateAccount(Account(account_id, "USD", 1, "psp", flags, ""))


def transfer(transfer_id: str, debit: str, credit: str, amount: int, flags: int = 0,
             pending_id: str = "") -> Transfer:
    return Transfer(transfer_id, debit, credit, amount, "USD", 1, "", flags, pending_id)


def commit(transfer_id: str, debit: str, credit: str, amount: int) -> Commit:
    return Commit(transfer(transfer_id, debit, credit, amount), 3)


def test_a_batch_is_one_record_and_later_commands_see_earlier_ones(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    replies = call(host, [account("bank"), account("a", flags=1), account("b"),
                          commit("t1", "bank", "a", 100), commit("t2", "a", "b", 60),
                          commit("t3", "a", "b", 60)])
    assert [r.result for r in replies] == ["ok"] * 5 + ["exceeds_credits"]
    assert host.log.last_seq == 1
    timestamps = [r.account.timestamp for r in replies[:3]] + \
        [r.transfer.timestamp for r in replies[3:5]]
    assert timestamps == sorted(timestamps) and len(set(timestamps)) == 5
    host.close()


def test_reads_only_write_nothing(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("a")])
    view, totals, in_doubt = call(host, [GetAccount("a"), GetTotals(), ListInDoubt(0)])
    assert isinstance(view, AccountView) and view.account is not None
    assert view.account.id == "a" and in_doubt.parts == []
    assert [(t.ledger, t.debits_posted) for t in totals.totals] == [("USD", "0")]
    assert host.log.last_seq == 1
    host.close()


def _busy_shard(host: ShardHost) -> None:
    """Accounts, plain transfers, a part reserved for a remote home, a commit of a transfer
    whose other side is remote, and a pending transfer posted in part by one homed here."""
    call(host, [account("bank"), account("a", flags=1), account("b")])
    for i in range(20):
        call(host, [commit(f"t{i}", "bank", "a", 10 + i), commit(f"u{i}", "a", "b", 5)])
    call(host, [Reserve(transfer("r1", "a", "elsewhere", 7), 1, 42),
                Commit(transfer("c1", "b", "elsewhere", 3), 1, "ok", 43)])
    call(host, [Commit(transfer("p1", "bank", "b", 30, PENDING), 3)])
    (claim,) = call(host, [ClaimPending(Transfer("q1", "", "", 20, "", UNSPECIFIED_CODE, "",
                                                 POST_PENDING, "p1"), 44)])
    assert claim.result == "ok"
    (committed,) = call(host, [Commit(transfer("q1", "bank", "b", 20, POST_PENDING, "p1"), 0,
                                      "ok", 44)])
    call(host, [FinalizeClaim("p1", "q1", 44, committed.transfer),
                Settle("p1", True, 20, committed.transfer)])


def _observed(host: ShardHost) -> dict[str, Any]:
    """What a reader can see of a shard: accounts, transfers, histories, attempts, parts."""
    ledger = host.ledger
    ids = [f"t{i}" for i in range(20)] + [f"u{i}" for i in range(20)] + ["c1", "p1", "q1"]
    return {
        "accounts": accounts_now(ledger),
        "transfers": {i: ledger.stored(i) for i in ids},
        "history": {a: ledger.store.history(a, ledger.accounts[a].history_head, 1000, None)[0]
                    for a in ("bank", "a", "b")},
        "resolve": [ledger.resolve(id_, attempt)[0]
                    for id_, attempt in (("c1", 43), ("q1", 44), ("t1", 0))],
        "reservations": dict(ledger.reservations),
        "pending": ledger.pending_status("p1"),
        "totals": ledger.totals.by_ledger,
    }


def test_recovery_rebuilds_the_same_state_with_and_without_snapshots(tmp_path: Path) -> None:
    config = ShardConfig(0, ("USD",), snapshot_every_events=7)
    host = host_on(tmp_path, config)
    _busy_shard(host)
    host.wait_for_snapshot()
    assert host.log.latest_snapshot() is not None
    # A record after the latest snapshot, whatever the timing of the snapshots' thread (one
    # still being written skips the next cut: on a busy machine the last may cover it all).
    late = 0
    while host.log.snapshot_seqs()[-1] == host.log.last_seq:
        call(host, [account(f"late{late}")])
        host.wait_for_snapshot()
        late += 1
    before = _observed(host)
    assert before["pending"].status == "posted" and before["resolve"][0].outcome == "post"
    assert before["resolve"][2].outcome == "void"  # a local commit has no attempt to post
    host.close()
    again = host_on(tmp_path, config)
    assert again.recovery.snapshot_seq > 0 and again.recovery.records_replayed > 0
    assert again.recovery.store_written_from == 0  # the store held everything already
    assert _observed(again) == before
    again.close()
    # From the log alone, as if every snapshot were lost and the store never written:
    log = LmdbLog(tmp_path, 1 << 24)
    for seq in log._snapshot_seqs():
        log._delete_snapshot(seq)
    log.close()
    _drop_store(tmp_path)
    bare = host_on(tmp_path, config)
    assert bare.recovery.snapshot_seq == 0 and bare.recovery.store_written_from == 1
    assert _observed(bare) == before
    bare.close()


def _drop_store(path: Path) -> None:
    """Empty the store's tables (as a data directory of an older release has none)."""
    env = lmdb.open(str(path), max_dbs=10)
    with env.begin(write=True) as txn:
        for name in TABLES:
            txn.drop(env.open_db(name, txn=txn), delete=False)
    env.close()


def test_old_transfers_are_read_from_the_store_not_memory(tmp_path: Path) -> None:
    config = ShardConfig(0, ("USD",), snapshot_every_events=1_000_000)
    host = ShardHost(config, lambda: LmdbLog(tmp_path, 1 << 24, transfer_cache_max=4))
    call(host, [account("bank"), account("a")])
    for i in range(50):
        call(host, [commit(f"t{i}", "bank", "a", 1)])
    store = host.log.store
    assert len(store._cache) <= 2 * 4  # bounded: the rest is read from LMDB
    view, page = call(host, [GetTransfer("t0"), AccountTransfers("a", 10, None)])
    assert view.transfer.id == "t0" and view.transfer.amount == 1
    assert [t.id for t in page.transfers] == [f"t{i}" for i in range(49, 39, -1)]
    older = call(host, [AccountTransfers("a", 100, page.next_position)])[0]
    assert [t.id for t in older.transfers] == [f"t{i}" for i in range(39, -1, -1)]
    assert older.next_position is None
    host.close()


def test_full_map_refuses_the_whole_batch_and_applies_nothing(tmp_path: Path) -> None:
    host = host_on(tmp_path, map_size_bytes=1 << 17)
    call(host, [account("bank"), account("a")])
    committed, refused = 0, None
    for i in range(2000):
        reply = run(host, [commit(f"t{i}-{j}", "bank", "a", 1) for j in range(20)])
        assert not reply.failed
        if any(isinstance(one, Failed) for one in reply.replies):
            refused = reply.replies
            break
        committed += 20
    assert refused is not None
    assert all(isinstance(one, Failed) and one.code == FAILED_STORAGE_FULL for one in refused)
    assert host.ledger.accounts["a"].credits_posted == committed
    assert host.ledger.homed_count == committed
    records = list(host.log.read(1, GENESIS_CHAIN))
    assert sum(len(decode_events(r.payload)) for r in records) == committed + 2
    # Nothing of the failed batch reached the store either (same transaction as its record).
    assert host.ledger.stored(f"t{committed // 20}-0") is None
    assert host.log.store.applied_seq == host.log.last_seq
    host.close()


def test_a_record_of_an_unknown_format_stops_recovery_naming_shard_and_record(
        tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("a"), account("b")])
    call(host, [commit("t1", "a", "b", 5)])
    host.close()
    log = LmdbLog(tmp_path, 1 << 24)
    log.append(bytes([9]) + b"a format from the future", log.last_timestamp_ns + 1)
    log.close()
    try:
        host_on(tmp_path)
    except CorruptRecord as error:
        assert error.seq == 3
        assert "shard 0" in str(error) and "format 9 is not one this release reads" in str(error)
    else:
        raise AssertionError("a record of an unknown format was skipped")


def test_a_snapshot_taken_before_any_money_moved_restores_a_ledger_that_posts(
        tmp_path: Path) -> None:
    """Accounts created, a snapshot, a restart from it: every balance is zero, and the
    ledger's sums must still be there for the first transfer (it once answered
    internal_error: the sums were rebuilt from non-zero balances only)."""
    config = ShardConfig(0, ("USD",), snapshot_every_events=1)
    host = host_on(tmp_path, config)
    call(host, [account("a"), account("b")])
    host.close()
    host = host_on(tmp_path, config)
    assert host.status().snapshot_seq > 0  # recovered from the snapshot
    (reply,) = call(host, [commit("t1", "a", "b", 5)])
    assert reply.result == "ok"
    host.close()
