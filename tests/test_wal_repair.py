"""`wal verify` and `wal repair` on a shard written by the shard host, where what each record
holds is known: an account in its overdraft verifies; a record whose content is intact but
whose checksum is wrong is cut with exactly its transfer ids listed (a torn tail at once, a
record in the middle only with --force); damage to the first record after a compaction is
never taken for an empty log."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from actors.codec import decode_events, encode_commands
from actors.ledger.events import transfer_id_of
from actors.ledger.limits import Limits
from actors.ledger.model import DEBITS_MUST_NOT_EXCEED_CREDITS, Account, Transfer
from actors.messages import Commit, CreateAccount
from actors.shard.host import ShardConfig, ShardHost
from persistence.layout import shard_directory
from persistence.lmdb_log import LmdbLog
from persistence.records import CRC, GENESIS_CHAIN
from tests.persistence.test_corruption import probe

BATCHES = 12


def wal(*args: str | Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switch.cli", "wal", *map(str, args)],
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def data(tmp_path: Path) -> Path:
    """One shard: a funded account, one in its overdraft, and BATCHES records of three
    transfers each (t{batch}-{n})."""
    data_dir = tmp_path / "data"
    host = ShardHost(ShardConfig(0, ("USD",), snapshot_every_events=1_000_000),
                     lambda: LmdbLog(shard_directory(data_dir, 0), 1 << 26))
    limited = DEBITS_MUST_NOT_EXCEED_CREDITS
    host.handle(encode_commands([
        CreateAccount(Account("bank", "USD", 1, "o", 0, "")),
        CreateAccount(Account("shop", "USD", 1, "o", 0, "")),
        CreateAccount(Account("loan", "USD", 1, "o", limited, ""), Limits(overdraft=500))]))
    for batch in range(BATCHES):
        host.handle(encode_commands([
            Commit(Transfer(f"t{batch}-{n}", "loan" if n == 0 else "bank", "shop", 10,
                            "USD", 1), 3) for n in range(3)]))
    assert host.ledger.accounts["loan"].debits_posted == 10 * BATCHES  # into its overdraft
    host.close()
    return data_dir


def _ids(directory: Path, seq: int) -> list[str]:
    log = LmdbLog(directory, 1 << 26, readonly=True)
    (record,) = list(log.read(seq, _chain_before(log, seq), seq))
    log.close()
    return [i for e in decode_events(record.payload) if (i := transfer_id_of(e))]


def _chain_before(log: LmdbLog, seq: int) -> bytes:
    chain = GENESIS_CHAIN
    for record in log.read(1, GENESIS_CHAIN, seq - 1):
        chain = record.chain
    return chain


def _wrong_checksum(directory: Path, seq: int) -> None:
    """Record `seq` as it was, but for one bit of its checksum."""
    log = LmdbLog(directory, 1 << 26)
    stored_seq, stored = next(iter(log.raw_records(seq)))
    assert stored_seq == seq
    raw = bytearray(stored)
    raw[-CRC.size] ^= 0x01
    log.overwrite_raw(seq, bytes(raw))
    log.close()


def test_an_account_in_its_overdraft_verifies(data: Path) -> None:
    result = wal("verify", data)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "exceed" not in result.stdout


def test_a_torn_tail_is_cut_with_exactly_its_ids_listed(data: Path) -> None:
    directory = shard_directory(data, 0)
    last = BATCHES + 1
    ids = _ids(directory, last)
    _wrong_checksum(directory, last)
    assert wal("verify", data).returncode == 1
    repaired = wal("repair", data)
    assert repaired.returncode == 0, repaired.stderr
    assert f"dropped records [{last}]" in repaired.stdout
    assert f"transfer ids in them: {ids}" in repaired.stdout, repaired.stdout
    assert wal("verify", data).returncode == 0


def test_a_record_in_the_middle_is_cut_only_when_forced(data: Path) -> None:
    directory = shard_directory(data, 0)
    middle = 5
    dropped = list(range(middle, BATCHES + 2))
    ids = [i for seq in dropped for i in _ids(directory, seq)]  # in log order
    _wrong_checksum(directory, middle)
    refused = wal("repair", data)
    assert refused.returncode == 2 and "--force" in refused.stderr, refused
    assert LmdbLog(directory, 1 << 26, readonly=True).tail_seq() == BATCHES + 1
    forced = wal("repair", data, "--force")
    assert forced.returncode == 0, forced.stderr
    assert f"dropped records {dropped}" in forced.stdout, forced.stdout
    assert f"transfer ids in them: {ids}" in forced.stdout, forced.stdout
    assert wal("verify", data).returncode == 0


@pytest.mark.parametrize("discard", [False, True])
def test_damage_after_a_compaction_never_recovers_empty(data: Path, discard: bool) -> None:
    directory = shard_directory(data, 0)
    assert wal("snapshot", data).returncode == 0
    host = ShardHost(ShardConfig(0, ("USD",), snapshot_every_events=1_000_000),
                     lambda: LmdbLog(directory, 1 << 26))
    host.handle(encode_commands([Commit(Transfer("later", "bank", "shop", 1, "USD", 1), 3)]))
    host.close()
    compacted = wal("compact", data, *(["--discard"] if discard else []))
    assert compacted.returncode == 0, compacted.stderr
    first_live = LmdbLog(directory, 1 << 26, readonly=True).first_seq()
    assert first_live == BATCHES + 2
    _wrong_checksum(directory, first_live)
    recovered = probe(directory)
    assert not recovered["ok"], recovered  # never an empty (or older) ledger, in silence
    assert f"record {first_live}" in recovered["error"], recovered
    verified = wal("verify", data)
    assert verified.returncode == 1 and f"record {first_live}" in verified.stdout, verified
