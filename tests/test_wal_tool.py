"""`payswitch wal ...` on real data directories: written by a switch under load, then killed."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
import pytest
from msgspec.structs import replace

from actors.codec import decode_events, decode_snapshot, encode_commands, encode_events
from actors.codec import encode_snapshot as encode_live_state
from actors.ledger.accounts import AccountTable
from actors.ledger.events import AccountCreated, TransferCommitted, transfer_id_of
from actors.ledger.ledger import Ledger
from actors.ledger.model import Account, Roles, Transfer
from actors.ledger.store import MemoryStore
from actors.messages import Commit, CreateAccount, Reserve
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, round_robin
from persistence.identity import IDENTITY_FILE
from persistence.layout import shard_directories, shard_directory
from persistence.lmdb_log import LmdbLog
from persistence.lock import DirectoryLock
from persistence.records import CHAIN_BYTES, CRC, HEADER, encode_snapshot
from persistence.scan import ScanReport
from persistence.topology import TOPOLOGY_FILE, read_topology
from switch.cli.wal import audit as audits
from switch.cli.wal import ops
from switch.cli.wal.commands import SETTLE_SECONDS_DEFAULT
from switch.read.events import event_from_json
from tests.actors.ledger_helpers import accounts_now
from tests.chaos import ACCOUNTS, Load, free_port, setup_accounts, transfer
from tests.launcher import SwitchProcess

LEDGERS = ("USD", "EUR", "GBP", "CHF", "KES", "NGN", "INR", "JPY")


def wal(*args: str | Path, timeout_s: float = 300) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switch.cli", "wal", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout_s)


@pytest.fixture(scope="module")
def crashed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, Load]]:
    """A data directory as a kill -9 left it: snapshots, in-doubt parts and all."""
    base = tmp_path_factory.mktemp("crashed")
    switch = SwitchProcess(base / "data", free_port(), shards=2, log_path=base / "switch.log",
                           extra_env={"PAYSWITCH_WAL_SNAPSHOT_EVERY_EVENTS": "300"}).start()
    try:
        setup_accounts(switch.url, switch.headers)
        load = Load(switch.url, 11, switch.headers)
        load.start()
        time.sleep(2.5)
        load.killed.set()
        switch.kill_session()
        load.finish()
        assert not load.failures, load.failures
    finally:
        switch.kill_session()
    yield base / "data", load


@pytest.fixture
def data(crashed: tuple[Path, Load], tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(crashed[0], copy)
    return copy


def payload_of(raw: bytes) -> bytes:
    return raw[HEADER.size : -(CHAIN_BYTES + CRC.size)]


def records_of(directory: Path) -> list[tuple[int, bytes]]:
    log = LmdbLog(directory, 1 << 30, readonly=True)
    try:
        return list(log.raw_records())
    finally:
        log.close()


def test_inspect_lists_every_shard(data: Path) -> None:
    result = wal("inspect", data)
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split()[:3] == ["shard", "records", "archived"]
    for index, directory in shard_directories(data):
        row = lines[1 + index].split()
        assert int(row[0]) == index and int(row[1].replace(",", "")) == len(records_of(directory))


def test_inspect_records_filtered_by_transfer_and_account(data: Path,
                                                          crashed: tuple[Path, Load]) -> None:
    transfer_id = sorted(crashed[1].acked)[0]
    result = wal("inspect", data, "--records", "--transfer", transfer_id)
    events = [orjson.loads(line)["event"] for line in result.stdout.splitlines()]
    assert events and all(transfer_id in _ids_named(event) for event in events)
    assert any(e["type"] == "transfer_committed" for e in events)
    account = wal("inspect", data, "--records", "--account", "acct-3", "--shard", "0")
    lines = account.stdout.splitlines()
    assert lines
    for line in lines:
        event = orjson.loads(line)["event"]
        named = {event.get("account_id"), event.get("account", {}).get("id")}
        for value in event.values():
            if isinstance(value, dict):
                named |= {value.get("debit_account_id"), value.get("credit_account_id")}
        assert "acct-3" in named, event


def _ids_named(event: dict[str, object]) -> set[object]:
    """The transfer ids an exported event names: its own, and those of transfers it holds."""
    ids = {event.get("transfer_id"), event.get("pending_id")}
    ids |= {value.get("id") for value in event.values() if isinstance(value, dict)}
    return ids


def test_verify_passes_on_a_crashed_switch_and_settles_what_is_in_doubt(data: Path) -> None:
    result = wal("verify", data, "--progress")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "USD" in result.stdout and "balanced" in result.stdout
    rows = [line.split() for line in result.stdout.splitlines()[1:3]]
    assert all(row[-1] == "ok" and int(row[4]) > 0 for row in rows), result.stdout  # snapshots
    assert "records" in result.stderr  # the progress bar


def test_verify_names_a_damaged_record(data: Path) -> None:
    directory = shard_directory(data, 1)
    seq, raw = records_of(directory)[5]
    damaged = bytearray(raw)
    damaged[40] ^= 0x10
    log = LmdbLog(directory, 1 << 30)
    log.overwrite_raw(seq, bytes(damaged))
    log.close()
    result = wal("verify", data)
    assert result.returncode == 1
    assert f"shard 1 record {seq}: checksum mismatch" in result.stdout


def test_verify_finds_a_snapshot_that_does_not_match_the_log(data: Path) -> None:
    directory = shard_directory(data, 0)
    log = LmdbLog(directory, 1 << 30)
    seq = log.snapshot_seqs()[-1]
    _, chain, body = log.snapshot_at(seq)
    state, _ = decode_snapshot(body)
    assert state.account_rows is not None
    accounts = AccountTable.from_rows(state.account_rows)
    accounts[next(iter(accounts))].debits_posted += 1  # one more cent than the log says
    state = replace(state, account_rows=accounts.snapshot_rows())
    log._put_snapshot(seq, encode_snapshot(seq, chain, encode_live_state(state)))
    log.close()
    result = wal("verify", data)
    assert result.returncode == 1
    assert f"shard 0 snapshot {seq}: differs from the state the log replays to" in result.stdout


def test_verify_finds_unbalanced_books_in_a_well_formed_log(data: Path) -> None:
    directory = shard_directory(data, 0)
    account = next(e.account.id for _, raw in records_of(directory)
                   for e in decode_events(payload_of(raw)) if isinstance(e, AccountCreated))
    log = LmdbLog(directory, 1 << 30)
    # A record with a valid checksum and chain that debits without a credit anywhere.
    forged = [TransferCommitted(Transfer("forged-1", account, "nowhere", 5, "USD", 1, "",
                                         timestamp=log.last_timestamp_ns + 1), 1, 0)]
    log.append(encode_events(forged), log.last_timestamp_ns + 1)
    log.close()
    result = wal("verify", data)
    assert result.returncode == 1 and "UNBALANCED" in result.stdout


def test_export_writes_every_event_in_order(data: Path) -> None:
    result = wal("export", data, "--shard", "1")
    lines = [orjson.loads(line) for line in result.stdout.splitlines()]
    expected = sum(len(decode_events(payload_of(raw))) for _, raw in
                   records_of(shard_directory(data, 1)))
    assert len(lines) == expected
    assert [x["seq"] for x in lines] == sorted(x["seq"] for x in lines)
    middle = lines[len(lines) // 2]["timestamp_ns"]
    later = wal("export", data, "--shard", "1", "--from", str(middle)).stdout.splitlines()
    assert 0 < len(later) < len(lines)
    assert all(orjson.loads(line)["timestamp_ns"] >= middle for line in later)


@pytest.mark.parametrize("cut", ["sequence", "time"])
def test_replay_rebuilds_a_point_in_time_that_verifies(data: Path, tmp_path: Path,
                                                       cut: str) -> None:
    records = records_of(shard_directory(data, 0))
    seq, raw = records[len(records) // 2]
    # A sequence number is shard 0's; every shard is rebuilt to the moment of that record.
    until = str(seq) if cut == "sequence" else str(HEADER.unpack_from(raw)[1])
    into = tmp_path / "then"
    result = wal("replay", data, "--until", until, "--into", into, "--shard", "0")
    assert result.returncode == 0, result.stderr
    assert f"shard 0: replayed to record {seq}" in result.stdout
    assert "shard 1: replayed to record" in result.stdout
    balances = [orjson.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert {b["id"] for b in balances} >= {"bank", "acct-0"}
    assert len(records_of(shard_directory(into, 0))) == seq
    verified = wal("verify", into)
    assert verified.returncode == 0, verified.stdout
    # Shard 0's record 1 is the operator key's (made at the first start); record 2 opens
    # the accounts.
    diff = wal("replay", data, "--until", "2", "--into", tmp_path / "start", "--diff")
    changed = [orjson.loads(line) for line in diff.stdout.splitlines() if line.startswith("{")]
    assert changed and all("now" in row for row in changed if row["id"] != "bank")


def test_repair_cuts_a_torn_tail_after_a_backup_and_says_what_it_dropped(data: Path) -> None:
    directory = shard_directory(data, 1)
    records = records_of(directory)
    last_seq, last_raw = records[-1]
    ids = [transfer_id_of(e) for e in decode_events(payload_of(last_raw)) if transfer_id_of(e)]
    log = LmdbLog(directory, 1 << 30)
    log.overwrite_raw(last_seq, last_raw[: len(last_raw) // 2])
    log.close()
    assert wal("verify", data).returncode == 1
    result = wal("repair", data)
    assert result.returncode == 0, result.stderr
    assert f"dropped records [{last_seq}]" in result.stdout
    assert "too damaged to read" in result.stdout or all(i in result.stdout for i in ids)
    backups = list(data.parent.glob("data-backup-*"))
    assert len(backups) == 1 and (backups[0] / "shard-0001" / "REPAIR.txt").exists()
    assert len(records_of(backups[0] / "shard-0001")) == len(records)  # untouched copy
    assert len(records_of(directory)) == len(records) - 1
    after = wal("verify", data)
    assert "shard 1 record" not in after.stdout  # every record checks out again


def test_backup_of_a_directory_in_use_verifies(data: Path, tmp_path: Path) -> None:
    lock = DirectoryLock(shard_directory(data, 0))  # as if the switch were running
    try:
        # As if the newest record were written just now (however long ago the fixture wrote
        # it): the default cut, 10 s before the copy starts, leaves it out.
        newest_ns = max(HEADER.unpack_from(raw)[1] for shard in (0, 1)
                        for _, raw in records_of(shard_directory(data, shard)))
        settle_s = time.time() - newest_ns / 1e9 + SETTLE_SECONDS_DEFAULT
        result = wal("backup", data, "--into", tmp_path / "copy",
                     "--settle-seconds", f"{settle_s:.3f}")
        assert result.returncode == 0, result.stderr
        left_out = [int(n) for n in re.findall(r"\((\d+) later records left out\)",
                                                result.stdout)]
        assert len(left_out) == 2 and sum(left_out) > 0, result.stdout
        whole = wal("backup", data, "--into", tmp_path / "whole", "--settle-seconds", "0")
        assert whole.returncode == 0, whole.stderr
        assert "(0 later records left out)" in whole.stdout
    finally:
        lock.release()
    verified = wal("verify", tmp_path / "copy")
    assert verified.returncode == 0, verified.stdout
    verified = wal("verify", tmp_path / "whole")
    assert verified.returncode == 0, verified.stdout
    assert verified.stdout.splitlines()[1:3] == wal("verify", data).stdout.splitlines()[1:3]
    assert wal("backup", data, "--into", tmp_path / "copy").returncode == 2  # never over one
    for shard in (0, 1):  # which switch's shard it is goes with it: a restore is checked
        source = shard_directory(data, shard) / IDENTITY_FILE
        assert (shard_directory(tmp_path / "copy", shard) / IDENTITY_FILE).read_bytes() == \
            source.read_bytes()


def test_writing_commands_refuse_a_running_switchs_directory(data: Path) -> None:
    lock = DirectoryLock(shard_directory(data, 0))  # what a running shard holds
    try:
        for command in ("repair", "snapshot", "compact"):
            result = wal(command, data)
            assert result.returncode == 2, command
            assert "owned by a running switch" in result.stderr
        assert wal("verify", data).returncode == 0  # reading is fine
    finally:
        lock.release()


@pytest.mark.parametrize("discard", [False, True])
def test_compact_keeps_recovery_and_verification_whole(data: Path, discard: bool) -> None:
    before = [_recovered(directory) for _, directory in shard_directories(data)]
    result = wal("compact", data, *(["--discard"] if discard else []))
    assert result.returncode == 0, result.stderr
    moved = [int(line.split()[2]) for line in result.stdout.splitlines()]
    assert any(moved)
    verified = wal("verify", data)
    assert verified.returncode == 0, verified.stdout
    after = [_recovered(directory) for _, directory in shard_directories(data)]
    assert after == before
    archive = [d / "archive" for _, d in shard_directories(data)]
    assert any(a.exists() for a in archive) != discard


def _recovered(directory: Path) -> dict[str, Account]:
    host = ShardHost(ShardConfig(0, LEDGERS, 1_000_000), lambda: LmdbLog(directory, 1 << 30))
    state = accounts_now(host.ledger)
    host.close()
    return state


def test_an_export_replays_to_the_same_books(data: Path) -> None:
    """Every field of every event is in the export: replaying it rebuilds each shard's state,
    and the books, exactly as verify's replay of the logs does."""
    lines = [orjson.loads(line) for line in wal("export", data).stdout.splitlines()]
    kinds = {line["event"]["type"] for line in lines}
    # The two-phase events whose fields an export once dropped are in this one.
    assert {"pending_resolved", "held_settled", "transfer_reserved"} <= kinds, kinds
    shards = shard_directories(data)
    exported = [audits.ShardAudit(index, directory, Ledger(LEDGERS, MemoryStore()),
                                  ScanReport()) for index, directory in shards]
    seq_of = [0] * len(shards)
    for line in lines:
        ledger = exported[line["shard"]].ledger
        if line["seq"] != seq_of[line["shard"]]:  # a new record: the last one's writes stay
            ledger.store.flush(seq_of[line["shard"]], 0)
            seq_of[line["shard"]] = line["seq"]
            ledger.store.begin_at(line["seq"])  # history takes its places in this record
        ledger.apply(event_from_json(line["event"]))
    for audit, seq in zip(exported, seq_of, strict=True):
        audit.ledger.store.flush(seq, 0)
    replayed = audits.audit_data_dir(data, LEDGERS)
    placement = Placement(read_topology(data, 1024))
    audits.settle_in_doubt(exported, placement)
    audits.settle_in_doubt(replayed, placement)
    assert audits.check_books(exported).totals == audits.check_books(replayed).totals
    for mine, theirs in zip(exported, replayed, strict=True):
        assert accounts_now(mine.ledger) == accounts_now(theirs.ledger)
        assert mine.ledger.reservations == theirs.ledger.reservations
        assert mine.ledger.pending == theirs.ledger.pending


def test_a_backup_taken_while_shards_change_is_one_consistent_cut(tmp_path: Path) -> None:
    """Shard 0 is copied, then cross-shard transfers commit, then shard 1 is copied: the
    copies hold two different moments. Each transfer is homed on shard 0 and debits an
    account of shard 1: shard 1's copy holds its debit posted, shard 0's copy lacks its
    decision and credit. Left so (no cut), the restored books are unbalanced. Cut at the
    moment the first copy began, as `wal backup` does, they verify whole and hold exactly
    what was acknowledged before that moment."""
    data = tmp_path / "data"
    switch = SwitchProcess(data, free_port(), shards=2, log_path=tmp_path / "switch.log").start()
    try:
        setup_accounts(switch.url, switch.headers)
        placement = Placement(read_topology(data, 1024))
        debits = [a for a in ACCOUNTS if placement.shard_of(a) == 1]
        credits = [a for a in ACCOUNTS if placement.shard_of(a) == 0]
        homed = (f"move-{n}" for n in range(10_000) if placement.shard_of(f"move-{n}") == 0)
        moves = [transfer(transfer_id, debits[n % len(debits)], credits[n % len(credits)], 1)
                 for n, transfer_id in zip(range(40), homed, strict=False)]
        before, after = moves[:20], moves[20:]
        assert _all_ok(switch, before)
        copies = tmp_path / "copies"
        first_started = ops.backup_shard(shard_directory(data, 0),
                                         copies / shard_directory(data, 0).name)
        assert _all_ok(switch, after)  # committed after shard 0's copy began
        time.sleep(1.5)  # and their parts finalized (round C runs after the answer)
        ops.backup_shard(shard_directory(data, 1), copies / shard_directory(data, 1).name)
    finally:
        switch.stop()
    shutil.copy(data / TOPOLOGY_FILE, copies / TOPOLOGY_FILE)
    shutil.copy(data / "operator.key", copies / "operator.key")
    uncut = tmp_path / "uncut"
    shutil.copytree(copies, uncut)
    verified = wal("verify", uncut)
    assert verified.returncode == 1 and "UNBALANCED" in verified.stdout, verified.stdout

    for _, directory in shard_directories(copies):
        ops.cut_at(directory, first_started)
    verified = wal("verify", copies)
    assert verified.returncode == 0 and "UNBALANCED" not in verified.stdout, verified.stdout
    restored = SwitchProcess(copies, free_port(), shards=2,
                             log_path=tmp_path / "restored.log").start()
    try:
        for sent in before:
            assert restored.http.get(f"/v1/transfers/{sent['id']}").status_code == 200
        for sent in after:
            assert restored.http.get(f"/v1/transfers/{sent['id']}").status_code == 404
        ledgers = restored.http.get("/v1/ledgers").json()["ledgers"]
        assert ledgers and all(ledger["balanced"] for ledger in ledgers)
    finally:
        restored.stop()


def _all_ok(switch: SwitchProcess, transfers: list[dict[str, Any]]) -> bool:
    response = switch.http.post("/v1/transfers", json=transfers, timeout=60)
    return {r["result"] for r in response.json()["results"]} == {"ok"}


def test_verify_settles_a_part_whose_home_decided_before_its_kept_snapshot(
        tmp_path: Path) -> None:
    """A cross-shard transfer is decided at its home (shard 0) and its part on shard 1 is
    still in doubt when the switch dies. Compacting shard 0 with --discard drops the record of
    the decision from its log: verify must still find it (in the shard's store), not void the
    part and report the books unbalanced (a flake of the compact test, made certain here)."""
    data = tmp_path / "data"
    placement = Placement(round_robin(2, 1024))
    def on(shard: int, prefix: str) -> str:
        return next(f"{prefix}{n}" for n in range(1000)
                    if placement.shard_of(f"{prefix}{n}") == shard)
    transfer_id, credit, debit = on(0, "t"), on(0, "c"), on(1, "d")
    def host(shard: int) -> ShardHost:
        return ShardHost(ShardConfig(shard, LEDGERS, 1_000_000),
                         lambda: LmdbLog(shard_directory(data, shard), 1 << 24))
    moved = Transfer(transfer_id, debit, credit, 7, "USD", 1, "")
    payer = host(1)
    payer.handle(encode_commands([CreateAccount(Account(debit, "USD", 1, "psp", 0, ""))]))
    payer.handle(encode_commands([Reserve(moved, Roles.debit, 1)]))
    payer.close()  # dies before its home's decision reaches it
    home = host(0)
    home.handle(encode_commands([CreateAccount(Account(credit, "USD", 1, "psp", 0, ""))]))
    home.handle(encode_commands([Commit(moved, Roles.credit, attempt=1)]))
    home.close()
    ops.snapshot_shard(0, shard_directory(data, 0), LEDGERS)
    home = host(0)
    home.handle(encode_commands([CreateAccount(Account(on(0, "e"), "USD", 1, "psp", 0, ""))]))
    home.close()
    assert ops.compact_shard(0, shard_directory(data, 0), LEDGERS, discard=True) == 2
    replayed = audits.audit_data_dir(data, LEDGERS)
    assert audits.settle_in_doubt(replayed, placement) == 1
    books = audits.check_books(replayed)
    assert books.unbalanced == [] and books.totals["USD"][:2] == [7, 7], books
