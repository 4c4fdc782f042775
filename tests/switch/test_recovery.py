"""Restarts: every account and transfer comes back, from snapshots and the log tail."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest
import ray

import actors.shard.actor as actor_module
from actors.shard.actor import ShardActor, SwitchAlreadyRunning
from actors.shard.host import ShardConfig
from persistence.identity import ShardIdentity
from persistence.layout import shard_directory
from persistence.lmdb_log import LmdbLog
from persistence.records import GENESIS_CHAIN, raw_of
from tests.conftest import RunningSwitch, assert_balanced, switch_settings
from tests.switch.test_api import LIMITED, account, transfer

ACCOUNTS = [f"r{i}" for i in range(30)]


def make_history(switch: RunningSwitch, rounds: int = 6) -> None:
    switch.post("/v1/accounts", [account("bank")] + [account(a, LIMITED) for a in ACCOUNTS])
    switch.post("/v1/transfers", [transfer(f"seed-{a}", "bank", a, 1_000) for a in ACCOUNTS])
    for r in range(rounds):
        batch = [transfer(f"x{r}-{i}", ACCOUNTS[i], ACCOUNTS[(i + r + 1) % 30], 10 + i)
                 for i in range(30)]
        results = switch.post("/v1/transfers", batch).json()["results"]
        assert {x["result"] for x in results} == {"ok"}


def observe(switch: RunningSwitch) -> dict[str, Any]:
    view: dict[str, Any] = {}
    for name in ["bank", *ACCOUNTS]:
        view[name] = switch.account(name)
        view[name + "/transfers"] = switch.get(f"/v1/accounts/{name}/transfers?limit=1000").json()
    view["x3-4"] = switch.get("/v1/transfers/x3-4").json()
    return view


@pytest.mark.parametrize("how", ["clean stop", "crash"])
def test_restart_recovers_everything(ray_session: None, tmp_path: Path, how: str) -> None:
    switch = RunningSwitch(switch_settings(tmp_path, **{"wal.snapshot_every_events": 40})).start()
    try:
        make_history(switch)
        before = observe(switch)
        deadline = time.monotonic() + 30
        while not all(s["snapshot_seq_written"] for s in switch.get("/readyz").json()["shards"]):
            assert time.monotonic() < deadline, "no snapshot was written"
            time.sleep(0.1)
        if how == "crash":
            switch.crash()
        else:
            switch.stop()
        switch.start()
        assert observe(switch) == before
        status = switch.get("/readyz").json()["shards"]
        assert any(s["snapshot_seq"] > 0 for s in status), status
        assert all(s["recovered_records"] < s["last_seq"] for s in status if s["snapshot_seq"])
        again = transfer("x0-0", ACCOUNTS[0], ACCOUNTS[1], 10)
        assert switch.post("/v1/transfers", again).json()["result"] == "exists"
        assert_balanced(switch.totals_at_rest())
    finally:
        switch.stop()


def test_corrupt_log_refuses_to_start(ray_session: None, tmp_path: Path) -> None:
    switch = RunningSwitch(switch_settings(tmp_path)).start()
    make_history(switch, rounds=1)
    switch.stop()
    directory = shard_directory(tmp_path, 0)
    log = LmdbLog(directory, 1 << 30)
    last = list(log.read(1, GENESIS_CHAIN))[-1]
    damaged = bytearray(raw_of(last))
    damaged[len(damaged) // 2] ^= 0xFF
    log.overwrite_raw(last.seq, bytes(damaged))
    log.close()
    with pytest.raises(ray.exceptions.RayActorError) as failure:
        switch.start()
    assert f"record {last.seq}: checksum mismatch" in str(failure.value)


def test_a_second_switch_on_the_same_data_is_refused(ray_session: None, tmp_path: Path,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    """In the same Ray cluster, by its actors' names (after waiting for them to be freed, as
    a switch that just stopped frees them); in another, by the shard directories' locks."""
    monkeypatch.setattr(actor_module, "NAME_FREED_TIMEOUT_S", 0.5)
    first = RunningSwitch(switch_settings(tmp_path)).start()
    try:
        second = RunningSwitch(switch_settings(tmp_path))
        second._wait_unlocked = lambda shard_count: None  # type: ignore[method-assign]
        with pytest.raises(SwitchAlreadyRunning, match="already served in this Ray cluster"):
            second.start()
        assert first.get("/readyz").status_code == 200
        switch_id = first.topology.switch_id if first.topology else ""
        with pytest.raises(ray.exceptions.RayActorError) as failure:  # as another switch would
            ray.get(ShardActor.remote(  # type: ignore[attr-defined]
                ShardConfig(0, ("USD",), 1_000_000), str(tmp_path), 1 << 24, 1024,
                ShardIdentity(switch_id, 0), False).status.remote())
        assert "owned by another process" in str(failure.value)
        assert first.get("/readyz").status_code == 200
    finally:
        first.stop()
