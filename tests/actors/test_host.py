"""The shard host on a real LMDB log: batches, group commit, recovery, a full map."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import orjson

from actors import messages as p
from actors.shard.host import ShardConfig, ShardHost
from persistence.lmdb_log import LmdbLog
from persistence.records import GENESIS_CHAIN

CONFIG = ShardConfig(0, ("USD",), snapshot_every_events=1_000_000)


def host_on(path: Path, config: ShardConfig = CONFIG, map_size_bytes: int = 1 << 24) -> ShardHost:
    return ShardHost(config, lambda: LmdbLog(path, map_size_bytes))


def call(host: ShardHost, commands: list[list[Any]]) -> Any:
    return orjson.loads(host.handle(orjson.dumps(commands)))


def account(account_id: str, flags: int = 0) -> list[Any]:
    return [p.OP_ACCOUNT, [account_id, "USD", 1, "psp", flags, ""]]


def commit(transfer_id: str, debit: str, credit: str, amount: int) -> list[Any]:
    return [p.OP_COMMIT, [transfer_id, debit, credit, amount, "USD", 1, "", 0, "", 0], 3, "ok", 0]


def test_a_batch_is_one_record_and_later_commands_see_earlier_ones(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    status, replies = call(host, [account("bank"), account("a", flags=1), account("b"),
                                  commit("t1", "bank", "a", 100), commit("t2", "a", "b", 60),
                                  commit("t3", "a", "b", 60)])
    assert status == p.REPLY_OK
    assert [r[0] for r in replies] == ["ok"] * 5 + ["exceeds_credits"]
    assert host._log.last_seq == 1
    timestamps = [r[1][6] for r in replies[:3]] + [r[1][-1] for r in replies[3:5]]
    assert timestamps == sorted(timestamps) and len(set(timestamps)) == 5
    host.close()


def test_reads_only_write_nothing(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("a")])
    _, replies = call(host, [[p.OP_GET_ACCOUNT, "a"], [p.OP_TOTALS], [p.OP_IN_DOUBT, 0]])
    assert replies[0][0][0] == "a" and replies[1] == {"USD": [0, 0, 0, 0]} and replies[2] == []
    assert host._log.last_seq == 1
    host.close()


def test_recovery_rebuilds_the_same_state_with_and_without_snapshots(tmp_path: Path) -> None:
    config = ShardConfig(0, ("USD",), snapshot_every_events=7)
    host = host_on(tmp_path, config)
    call(host, [account("bank"), account("a", flags=1), account("b")])
    for i in range(20):
        call(host, [commit(f"t{i}", "bank", "a", 10 + i), commit(f"u{i}", "a", "b", 5)])
    call(host, [[p.OP_RESERVE, ["r1", "a", "elsewhere", 7, "USD", 1, "", 0, "", 0], 1, 42],
                [p.OP_COMMIT, ["c1", "b", "elsewhere", 3, "USD", 1, "", 0, "", 0], 1, "ok", 43]])
    # A pending transfer held here, posted in part by a transfer homed here too.
    call(host, [[p.OP_COMMIT, ["p1", "bank", "b", 30, "USD", 1, "", 2, "", 0], 3, "ok", 0]])
    _, (claim,) = call(host, [[p.OP_CLAIM, ["q1", "", "", 20, "", -1, "", 4, "p1", 0], 44]])
    assert claim[0] == "ok"
    _, (committed,) = call(host, [[p.OP_COMMIT, ["q1", "bank", "b", 20, "USD", 1, "", 4, "p1",
                                                 0], 0, "ok", 44]])
    call(host, [[p.OP_FINALIZE_CLAIM, "p1", "q1", 44, committed[1]],
                [p.OP_SETTLE, "p1", True, 20, committed[1]]])
    assert host.ledger.accounts["b"].credits_posted >= 20
    before = host.ledger
    host.wait_for_snapshot()
    assert host._log.latest_snapshot() is not None
    host.close()
    again = host_on(tmp_path, config)
    assert again.recovery.snapshot_seq > 0 and again.recovery.records_replayed > 0
    assert {k: v.row() for k, v in again.ledger.accounts.items()} == \
        {k: v.row() for k, v in before.accounts.items()}
    assert again.ledger.transfers == before.transfers
    assert again.ledger.history == before.history
    assert again.ledger.reservations == before.reservations
    assert again.ledger.commit_attempts == before.commit_attempts == {"c1": 43, "q1": 44}
    assert again.ledger.pending == before.pending and before.pending["p1"].status == "posted"
    again.close()
    # And from the log alone, as if every snapshot were lost:
    log = LmdbLog(tmp_path, 1 << 24)
    for seq in log._snapshot_seqs():
        log._delete_snapshot(seq)
    log.close()
    bare = host_on(tmp_path, config)
    assert bare.recovery.snapshot_seq == 0
    assert bare.ledger.transfers == before.transfers and bare.ledger.history == before.history
    assert bare.ledger.commit_attempts == before.commit_attempts
    bare.close()


def test_full_map_fails_the_whole_batch_and_applies_nothing(tmp_path: Path) -> None:
    host = host_on(tmp_path, map_size_bytes=1 << 17)
    call(host, [account("bank"), account("a")])
    committed, failed = 0, None
    for i in range(2000):
        batch = [commit(f"t{i}-{j}", "bank", "a", 1) for j in range(20)]
        reply = call(host, batch)
        if reply[0] != p.REPLY_OK:
            failed = reply
            break
        committed += 20
    assert failed is not None and failed[1] == p.FAILED_STORAGE_FULL
    assert host.ledger.accounts["a"].credits_posted == committed
    assert len(host.ledger.transfers) == committed
    records = list(host._log.read(1, GENESIS_CHAIN))
    assert sum(len(orjson.loads(r.payload)) for r in records) == committed + 2
    host.close()
