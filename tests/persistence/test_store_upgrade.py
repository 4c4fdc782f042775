"""A shard written before history was chained (c824699: format-2 snapshots, history in a
table keyed by account, tests/fixtures/store_v2) is served as it was: every history page,
then new transfers in front of the old ones, paged across the two; it verifies, and it
restarts from its own snapshots."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from actors.messages import AccountTransfers
from actors.shard.host import ShardHost
from tests.actors.test_host import call, commit, host_on

FIXTURE = Path(__file__).parents[1] / "fixtures" / "store_v2"
EXPECTED = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def data(tmp_path: Path) -> Path:
    copy = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", copy)
    return copy


def pages(host: ShardHost, account_id: str, limit: int) -> list[str]:
    """Every posted transfer of the account, newest first, read `limit` at a time."""
    ids: list[str] = []
    before = None
    while True:
        (page,) = call(host, [AccountTransfers(account_id, limit, before)])
        assert len(page.transfers) <= limit
        ids += [t.id for t in page.transfers]
        if page.next_position is None:
            return ids
        before = page.next_position


def test_old_history_reads_as_it_did_and_new_transfers_come_first(data: Path) -> None:
    host = host_on(data / "shard-0000")
    assert host.log.last_seq == EXPECTED["last_seq"]
    for account_id, ids in EXPECTED["history"].items():
        assert pages(host, account_id, 7) == ids, account_id
    call(host, [commit(f"new-{n}", "bank", "a", 1) for n in range(5)])
    call(host, [commit("new-5", "a", "c", 1)])
    newer = ["new-5", "new-4", "new-3", "new-2", "new-1", "new-0"]
    assert pages(host, "a", 4) == newer + EXPECTED["history"]["a"]  # pages cross the two
    assert pages(host, "bank", 3) == newer[1:] + EXPECTED["history"]["bank"]
    host.take_snapshot()  # of format 3: heads saved
    host.close()
    verified = subprocess.run([sys.executable, "-m", "switch.cli", "wal", "verify", str(data)],
                              capture_output=True, text=True, timeout=120)
    assert verified.returncode == 0, verified.stdout + verified.stderr
    assert verified.stdout.count(" ok") == 1  # its snapshots of both formats check out
    again = host_on(data / "shard-0000")
    assert pages(again, "a", 5) == newer + EXPECTED["history"]["a"]
    assert pages(again, "c", 50) == ["new-5"] + EXPECTED["history"]["c"]
    again.close()
