"""A data directory written by the release before typed records and the store (48c71b7,
tests/fixtures/legacy_v1): it verifies, and a switch serves it exactly as that release did:
every account, transfer, history page, balance history and total; every request sent again
answers as a repeat. Its topology is adopted, its store rebuilt from its log."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from persistence.topology import load_topology
from tests.conftest import RunningSwitch, switch_settings

FIXTURE = Path(__file__).parent / "fixtures" / "legacy_v1"
EXPECTED: dict[str, Any] = json.loads((FIXTURE / "expected.json").read_text())


@pytest.fixture
def legacy_copy(tmp_path: Path) -> Path:
    """A copy of the fixture (opening a data directory writes lock and topology files)."""
    copy = tmp_path / "data"
    shutil.copytree(FIXTURE / "data", copy)
    return copy


def verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switch.cli", "wal", "verify", str(data_dir)],
                          capture_output=True, text=True, timeout=120)


def test_the_old_data_verifies_as_it_did(legacy_copy: Path) -> None:
    result = verify(legacy_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    old = EXPECTED["wal_verify"].splitlines()
    assert result.stdout.splitlines()[1:3] == old[1:3]  # per shard: records, snapshots, ok
    assert "USD                    439,880                439,880        250/250 balanced" \
        in result.stdout


@pytest.fixture
def served(ray_session: None, legacy_copy: Path) -> Iterator[RunningSwitch]:
    switch = RunningSwitch(switch_settings(legacy_copy, shards=0)).start()
    yield switch
    switch.stop()


def _as_old(transfer: dict[str, Any]) -> dict[str, Any]:
    """A transfer as the old release showed it: before keys, nobody sent it."""
    shown = dict(transfer)
    assert (shown.pop("key_id"), shown.pop("participant_id")) == ("", ""), transfer
    return shown


def _same_pages(switch: RunningSwitch, path: str) -> None:
    """A history page as the old release answered it (its cursor was a position in a list,
    ours is one in the store: the pages must match, not the cursor's text)."""
    old = EXPECTED["account_transfers"][path]
    page = switch.get(path).json()
    assert [_as_old(t) for t in page["transfers"]] == old["transfers"], path
    assert (page["next_cursor"] is None) == (old["next_cursor"] is None)


def test_a_switch_serves_the_old_data_as_the_old_release_did(served: RunningSwitch,
                                                             legacy_copy: Path) -> None:
    switch = served
    topology = load_topology(legacy_copy)
    assert topology is not None and (topology.shard_count, topology.slots) == (2, 1024)
    for account_id, body in EXPECTED["accounts"].items():
        assert switch.account(account_id) == body, account_id
    for transfer_id, expected in EXPECTED["transfers"].items():
        response = switch.get(f"/v1/transfers/{transfer_id}")
        assert response.status_code == expected["status"], transfer_id
        if expected["status"] == 200:
            assert _as_old(response.json()) == expected["body"], transfer_id
    assert switch.get("/v1/ledgers").json() == EXPECTED["ledgers"]
    for path in EXPECTED["account_transfers"]:
        _same_pages(switch, path)
    old_points = EXPECTED["history_balances"]["hist"]["balances"]
    points = switch.get("/v1/accounts/hist/balances?limit=1000").json()["balances"]
    # One point per account per record now (the old replica kept one per event, several
    # with one record's timestamp): every point is one the old release showed, the last too.
    assert points and all(point in old_points for point in points)
    assert points[-1] == old_points[-1]
    assert [p["timestamp"] for p in points] == sorted({p["timestamp"] for p in old_points})


def test_every_request_sent_again_is_a_repeat(served: RunningSwitch) -> None:
    switch = served
    where = {json.dumps(r["body"], sort_keys=True): r for r in EXPECTED["requests"]
             if r["applied"]}
    for answer in EXPECTED["resent"]:
        sent = where[json.dumps(answer["body"], sort_keys=True)]
        response = switch.client.request(sent["method"], switch.url + sent["path"],
                                         json=sent["body"])
        assert response.status_code == answer["status"], (sent["path"], response.text)
        body = response.json()
        results = [r["result"] for r in body["results"]] if "results" in body \
            else [body["result"]]
        assert results == answer["results"], sent["body"]
    for account_id, body in EXPECTED["accounts"].items():
        assert switch.account(account_id)["debits_posted"] == body["debits_posted"]
        assert switch.account(account_id)["credits_posted"] == body["credits_posted"]


def test_after_serving_it_restarts_from_its_own_store_and_still_verifies(
        served: RunningSwitch, legacy_copy: Path) -> None:
    switch = served
    switch.restart()
    for account_id, body in EXPECTED["accounts"].items():
        assert switch.account(account_id) == body, account_id
    switch.stop()
    result = verify(legacy_copy)
    assert result.returncode == 0, result.stdout + result.stderr
    switch.start()
