"""`payswitch slots move` against a running switch (real Ray, LMDB, HTTP over a socket):
a slot moves under load, nothing acknowledged is lost, bad moves change nothing, and the
switch serves the moved slot after a restart."""

from __future__ import annotations

import asyncio
import logging
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from actors.topology import slot_of
from persistence.topology import load_topology
from switch.api.app import _error_handlers
from switch.routing.channel import ShardUnavailable, SlotMoving
from tests.conftest import RunningSwitch, assert_balanced, switch_settings
from tests.switch.test_api import LIMITED, account, transfer

ACCOUNTS = [f"s{i}" for i in range(24)]


def slots(switch: RunningSwitch, verb: str, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "switch.cli", "slots", verb, *args, "--url", switch.url,
         "--data-dir", switch.settings.data.dir], capture_output=True, text=True, timeout=120)


def slots_move(switch: RunningSwitch, *args: str) -> subprocess.CompletedProcess[str]:
    return slots(switch, "move", *args)


class Load(threading.Thread):
    """Arrays of transfers between the accounts until stopped; what was acknowledged."""

    def __init__(self, switch: RunningSwitch) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=switch.url, timeout=30, headers={
            "Authorization": f"Bearer {switch.operator_key}"})
        self.stop = threading.Event()
        self.acknowledged: dict[str, dict[str, Any]] = {}
        self.refused_503 = 0

    def run(self) -> None:
        round_ = 0
        while not self.stop.is_set():
            batch = [transfer(f"L{round_}-{i}", ACCOUNTS[i], ACCOUNTS[(i + round_ + 1) % 24],
                              1 + i) for i in range(24)]
            round_ += 1
            while True:  # a 503 (the slot moving) is retried with the same ids
                response = self.client.post("/v1/transfers", json=batch)
                if response.status_code != 503:
                    break
                self.refused_503 += 1
            assert response.status_code in (200, 201, 207), response.text
            for item, result in zip(batch, response.json()["results"], strict=True):
                if result["result"] in ("ok", "exists"):
                    self.acknowledged[item["id"]] = item


def test_a_slot_moves_under_load_and_stays_moved_after_a_restart(
        ray_session: None, tmp_path: Path) -> None:
    switch = RunningSwitch(switch_settings(tmp_path / "data", shards=2)).start()
    try:
        switch.post("/v1/accounts", [account("bank")] + [account(a, LIMITED) for a in ACCOUNTS])
        switch.post("/v1/transfers", [transfer(f"seed-{a}", "bank", a, 100_000)
                                      for a in ACCOUNTS])
        data_dir = Path(switch.settings.data.dir)
        before = load_topology(data_dir)
        assert before is not None
        slot = slot_of("s3", before.slots)
        from_shard = before.slot_table[slot]
        to_shard = 1 - from_shard

        for args, code in (([str(slot), "--to", "7"], "shard_unknown"),
                           ([str(before.slots), "--to", "0"], "slot_unknown"),
                           ([str(slot), "--to", str(from_shard)], "slot_already_there")):
            refused = slots_move(switch, *args)
            assert refused.returncode == 1 and code in refused.stderr, refused.stderr
        assert switch.post("/v1/cluster/slot-moves", {"slot": "3", "to_shard": 0}
                           ).status_code == 400
        assert load_topology(data_dir) == before

        load = Load(switch)
        load.start()
        while len(load.acknowledged) < 200:
            load.join(0.05)
        moved = slots_move(switch, str(slot), "--to", str(to_shard))
        assert moved.returncode == 0, moved.stderr
        assert f"slot {slot} moved from shard {from_shard} to shard {to_shard}" in moved.stdout
        hot_shard = before.slot_table[slot_of("s7", before.slots)]
        pinned = slots(switch, "pin", "s7", "--to", str(1 - hot_shard))
        assert pinned.returncode == 0, pinned.stderr
        assert f"account s7 moved from shard {hot_shard}" in pinned.stdout
        missing = slots(switch, "pin", "nobody", "--to", "0")
        assert missing.returncode == 1 and "account_not_found" in missing.stderr
        acknowledged_at_move = len(load.acknowledged)
        while len(load.acknowledged) < acknowledged_at_move + 200:
            load.join(0.05)
        load.stop.set()
        load.join(30)

        after = load_topology(data_dir)
        assert after is not None and after.slot_table[slot] == to_shard
        where = subprocess.run([sys.executable, "-m", "switch.cli", "slots", "where", "s7",
                                ACCOUNTS[0], "--data-dir", str(data_dir)],
                               capture_output=True, text=True, timeout=60)
        assert where.returncode == 0, where.stderr
        first_slot = slot_of(ACCOUNTS[0], after.slots)
        assert where.stdout.splitlines()[1:] == [
            f"s7: slot {slot_of('s7', after.slots)}, shard {1 - hot_shard} (pinned)",
            f"{ACCOUNTS[0]}: slot {first_slot}, shard {after.slot_table[first_slot]}"]
        assert f"topology epoch {after.epoch}: {after.slots} slots" in where.stdout
        assert after.epoch == before.epoch + 2 and after.pins == {"s7": 1 - hot_shard}
        cluster = switch.get("/v1/cluster").json()
        slots_by_shard = {row["shard"]: row["slots"] for row in cluster["shards"]}
        assert cluster["pins"] == {"s7": 1 - hot_shard}
        assert cluster["epoch"] == after.epoch  # (was the epoch at start)
        assert slots_by_shard[to_shard] == before.slot_table.count(to_shard) + 1
        for transfer_id, sent in list(load.acknowledged.items())[::7]:
            stored = switch.get(f"/v1/transfers/{transfer_id}").json()
            assert stored["amount"] == sent["amount"], stored
        balances = {name: switch.account(name) for name in ["bank", *ACCOUNTS]}
        assert_balanced(switch.totals_at_rest())
        listed = switch.get("/v1/accounts?limit=100").json()["accounts"]  # the read model
        assert {a["id"]: a for a in listed}["s3"] == balances["s3"]

        switch.restart()
        assert {name: switch.account(name) for name in ["bank", *ACCOUNTS]} == balances
        assert switch.post("/v1/transfers", [transfer("after", "s3", "s4", 1)]
                           ).json()["results"][0]["result"] == "ok"
        assert_balanced(switch.totals_at_rest())
        switch.stop()
        verified = subprocess.run([sys.executable, "-m", "switch.cli", "wal", "verify",
                                   str(data_dir)], capture_output=True, text=True, timeout=300)
        assert verified.returncode == 0, verified.stdout + verified.stderr
    finally:
        if switch.fleet is not None:
            switch.stop()


def test_the_slots_command_asks_where_serve_listens() -> None:
    """Without --url it asks the address `payswitch serve` takes from the same settings
    (PAYSWITCH_SERVER_PORT here), not a port of its own (a newcomer's recipe failed on it)."""
    from tests.chaos import free_port

    port = free_port()
    ran = subprocess.run([sys.executable, "-m", "switch.cli", "slots", "move", "0", "--to", "0",
                          "--key", "k"], capture_output=True, text=True, timeout=120,
                         env={**os.environ, "PAYSWITCH_SERVER_PORT": str(port)})
    assert ran.returncode == 1 and f"no answer from http://127.0.0.1:{port}" in ran.stderr, \
        ran.stderr


def test_a_command_about_a_slot_being_moved_says_so() -> None:
    """The 503 while a slot is frozen names the move (was: "A shard did not answer", though
    the shard had answered)."""
    handler = _error_handlers(1)[ShardUnavailable]
    moving = asyncio.run(handler(None, SlotMoving("frozen", 17, 2, moved=False)))
    body = orjson.loads(moving.body)
    assert (moving.status_code, body["code"]) == (503, "shard_unavailable")
    assert "Slot 17 is being moved" in body["message"] and moving.headers["retry-after"] == "1"
    pinning = asyncio.run(handler(None, SlotMoving("frozen", 17, 2, False, account="hot-1")))
    assert "Account hot-1 is being moved" in orjson.loads(pinning.body)["message"]
    dead = orjson.loads(asyncio.run(handler(None, ShardUnavailable("gone"))).body)
    assert dead["message"] == "A shard did not answer; retry with the same ids."


def test_a_shard_unavailable_503_logs_its_cause_now_and_then(
        caplog: pytest.LogCaptureFixture) -> None:
    """The answer says only that a shard did not answer; the log says why (was: nothing, so a
    race in the soak test was found only with a hook), at most a line every few seconds."""
    handler = _error_handlers(1)[ShardUnavailable]
    with caplog.at_level(logging.WARNING, logger="payswitch.api"):
        for cause in ("StoreDamaged: LMDB cannot read it", "the same again", "and again"):
            asyncio.run(handler(None, ShardUnavailable(cause)))
    lines = [r.getMessage() for r in caplog.records if "503 shard_unavailable" in r.getMessage()]
    assert lines == ["answered 503 shard_unavailable: StoreDamaged: LMDB cannot read it "
                     "(and 0 more since the last such line)"]


def test_where_says_what_to_do_with_a_topology_it_cannot_read(tmp_path: Path) -> None:
    (tmp_path / "topology.json").mkdir()  # as unreadable as one of another user's
    where = subprocess.run([sys.executable, "-m", "switch.cli", "slots", "where", "x",
                            "--data-dir", str(tmp_path)], capture_output=True, text=True,
                           timeout=60)
    assert where.returncode == 2 and "Traceback" not in where.stderr, where.stderr
    assert "run it as the user the switch runs as" in where.stderr
