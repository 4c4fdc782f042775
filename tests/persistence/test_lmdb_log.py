"""What only the LMDB log does: one owner per directory, and a bounded map."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from persistence.index import IndexConflict
from persistence.lmdb_log import LmdbLog
from persistence.lock import DirectoryLocked, is_locked
from persistence.log import StorageFull
from persistence.records import GENESIS_CHAIN


def test_second_owner_in_another_process_is_refused(tmp_path: Path) -> None:
    log = LmdbLog(tmp_path, 1 << 20)
    try:
        assert is_locked(tmp_path)
        code = (
            "import sys; from pathlib import Path; from persistence.lmdb_log import LmdbLog\n"
            "from persistence.lock import DirectoryLocked\n"
            f"try:\n    LmdbLog(Path({str(tmp_path)!r}), 1 << 20)\n"
            "except DirectoryLocked as e:\n    print(e); sys.exit(3)\n"
        )
        child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                               timeout=30)
        assert child.returncode == 3, child.stderr
        assert "owned by another process" in child.stdout
    finally:
        log.close()
    assert not is_locked(tmp_path)
    LmdbLog(tmp_path, 1 << 20).close()  # free again once the owner closed it


def test_second_owner_in_the_same_process_is_refused(tmp_path: Path) -> None:
    log = LmdbLog(tmp_path, 1 << 20)
    with pytest.raises(DirectoryLocked):
        LmdbLog(tmp_path, 1 << 20)
    log.close()


def test_lock_is_released_when_the_owner_is_killed(tmp_path: Path) -> None:
    code = (
        "import os, signal; from pathlib import Path; from persistence.lmdb_log import LmdbLog\n"
        f"log = LmdbLog(Path({str(tmp_path)!r}), 1 << 20); log.append(b'x', 1)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    subprocess.run([sys.executable, "-c", code], timeout=30)
    log = LmdbLog(tmp_path, 1 << 20)
    assert log.last_seq == 1
    log.close()


def test_map_full_fails_the_commit_and_writes_nothing(tmp_path: Path) -> None:
    log = LmdbLog(tmp_path, 1 << 17)
    payload = b"x" * 4000
    appended = 0
    with pytest.raises(StorageFull):
        for timestamp in range(1, 1000):
            log.append(payload, timestamp)
            appended += 1
    assert 0 < appended < 999
    assert log.last_seq == appended
    assert len(list(log.read(1, GENESIS_CHAIN))) == appended
    log.close()
    reopened = LmdbLog(tmp_path, 1 << 17)
    assert reopened.last_seq == appended
    reopened.close()


def test_a_record_stored_again_or_out_of_order_fails_loudly(tmp_path: Path) -> None:
    """LMDB's put answers False (nothing written) for an append below the last key: the log
    must raise instead of carrying on as if the record were stored."""
    log = LmdbLog(tmp_path, 1 << 20)
    for timestamp in (1, 2, 3):
        log.append(b"x", timestamp)
    (_, second), = [(seq, raw) for seq, raw in log.raw_records(2)][:1]
    with pytest.raises(IndexConflict, match="not written"):
        log._put_raw(2, second)  # an append below record 3
    with pytest.raises(IndexConflict, match="already stored"):
        log._commit_record(3, second, 4)
    assert log.last_seq == 3 and [seq for seq, _ in log.raw_records(1)] == [1, 2, 3]
    log.close()


def test_a_reader_that_died_is_cleared_while_the_log_stays_open(tmp_path: Path) -> None:
    """A killed reader (a `wal verify` of a running switch) leaves its slot in the lock
    table while the shard keeps the environment open; the slot pins old pages until the
    map fills. The shard clears such slots at each snapshot cut."""
    log = LmdbLog(tmp_path, 1 << 20)
    log.append(b"x", 1)
    dead = kill_a_reader(tmp_path)
    assert dead and dead in log._env.readers()
    assert log.clear_dead_readers() == 1
    assert dead not in log._env.readers()
    log.close()


def kill_a_reader(directory: Path) -> str:
    """A process that reads the log's environment, then dies by SIGKILL mid-transaction;
    returns its pid (its slot stays in the lock table while another process holds it open)."""
    code = ("import os, signal, lmdb\n"
            f"env = lmdb.open({str(directory)!r}, readonly=True, lock=True, max_dbs=16)\n"
            "txn = env.begin(); txn.get(b'x')\n"
            "print(os.getpid(), flush=True); os.kill(os.getpid(), signal.SIGKILL)\n")
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60).stdout.strip()
