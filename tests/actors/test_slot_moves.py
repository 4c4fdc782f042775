"""Slot moves (actors/ledger/slots.py, switch/routing/slot_move.py) on shard hosts with real
LMDB logs, through the real router: what moves, what is refused, what survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from actors.ledger.model import PENDING, POST_PENDING, Account, Transfer
from actors.messages import (
    AccountTransfers,
    FreezeSlot,
    GetAccount,
    GetSlotMoves,
    GetTransfer,
    Reserve,
    SlotReply,
)
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, Topology, round_robin, slot_of
from persistence.lmdb_log import LmdbLog
from switch.routing.channel import SlotMoving
from switch.routing.router import Router
from switch.routing.slot_move import SlotMoveRefused, move_slot, moved_in
from switch.routing.transport import LocalShard

SLOTS = 64


class Cluster:
    """Two shard hosts on LMDB, a router over them, the topology a mover saves."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.topology: Topology = round_robin(2, SLOTS)
        self.hosts = [self._host(index) for index in range(2)]
        self.router = self._router()

    def _host(self, index: int) -> ShardHost:
        path = self.root / f"shard-{index}"
        return ShardHost(ShardConfig(index, ("USD",), 1_000_000),
                         lambda: LmdbLog(path, 1 << 26))

    def _router(self) -> Router:
        links = [LocalShard(index, host) for index, host in enumerate(self.hosts)]
        return Router(links, Placement(self.topology), 10_000, 8190)

    def restart(self, stale_router: bool = False) -> None:
        """Both hosts again from their logs; a router with the table saved at the start
        (`stale_router`: one that has not heard of any move), else the saved one."""
        for host in self.hosts:
            host.close()
        self.hosts = [self._host(index) for index in range(2)]
        saved = self.topology
        if stale_router:
            self.topology = round_robin(2, SLOTS)
        self.router = self._router()
        self.topology = saved

    def load(self) -> Topology:
        return self.topology

    def save(self, slot: int, shard: int, epoch: int) -> Topology:
        self.topology = moved_in(self.topology, slot, shard, epoch)
        return self.topology

    async def move(self, slot: int, to_shard: int, busy_timeout_s: float = 1.0) -> Any:
        return await move_slot(self.router, self.load, self.save, slot, to_shard,
                               busy_timeout_s)


def ids_in(slot: int, prefix: str, count: int) -> list[str]:
    found, n = [], 0
    while len(found) < count:
        if slot_of(f"{prefix}{n}", SLOTS) == slot:
            found.append(f"{prefix}{n}")
        n += 1
    return found


def ids_on(router: Router, shard: int, slot_not: int, prefix: str, count: int) -> list[str]:
    found, n = [], 0
    while len(found) < count:
        candidate = f"{prefix}{n}"
        if router.shard_of(candidate) == shard and slot_of(candidate, SLOTS) != slot_not:
            found.append(candidate)
        n += 1
    return found


def transfer(transfer_id: str, debit: str, credit: str, amount: int, flags: int = 0,
             pending_id: str = "") -> Transfer:
    return Transfer(transfer_id, debit, credit, amount, "USD", 1, "", flags, pending_id)


async def create(router: Router, transfers: list[Transfer]) -> list[str]:
    return [outcome[0] for outcome in await router.create_transfers(transfers)]  # type: ignore[index]


async def balances(router: Router, account_ids: list[str]) -> dict[str, tuple[int, ...]]:
    found = {}
    for account_id in account_ids:
        view = await router.ask(router.shard_of(account_id), GetAccount(account_id))
        account = view.account
        found[account_id] = (account.debits_posted, account.credits_posted,
                             account.debits_pending, account.credits_pending)
    return found


async def books(router: Router) -> list[int]:
    return (await router.totals())["USD"]


SLOT = 5  # on shard 1 (round robin over two shards): it moves to shard 0


@pytest.fixture
def cluster(tmp_path: Path) -> Any:
    made = Cluster(tmp_path)
    yield made
    for host in made.hosts:
        host.close()


def test_a_slot_moves_whole_and_its_old_shard_sends_its_commands_on(cluster: Cluster) -> None:
    moving = ids_in(SLOT, "m", 3)  # accounts of the slot that moves
    staying = ids_on(cluster.router, 1, SLOT, "k", 2)  # beside it on shard 1, staying
    elsewhere = ids_on(cluster.router, 0, SLOT, "e", 2)  # on shard 0
    homed = ids_in(SLOT, "t", 4)  # transfer ids homed in the slot
    everyone = moving + staying + elsewhere

    async def drive() -> dict[str, tuple[int, ...]]:
        router = cluster.router
        outcomes = await router.create_accounts([Account(a, "USD", 1, "o", 0, "")
                                                 for a in everyone])
        assert all(o[0] == "ok" for o in outcomes)  # type: ignore[index]
        assert await create(router, [
            transfer(homed[0], moving[0], moving[1], 100),  # wholly in the slot
            transfer("x1", moving[1], elsewhere[0], 40),  # across shards
            transfer(homed[1], elsewhere[1], moving[2], 30),
            transfer("p1", moving[0], staying[0], 25, PENDING),  # held, split on the move
            transfer(homed[2], moving[2], elsewhere[0], 15, PENDING),  # homed in the slot
        ]) == ["ok"] * 5
        before = await balances(router, everyone)
        books_before = await books(router)
        history_before = await router.ask(1, AccountTransfers(moving[1], 10))

        moved = await cluster.move(SLOT, 0)
        assert (moved.from_shard, moved.to_shard, moved.accounts) == (1, 0, 3)
        assert cluster.topology.slot_table[SLOT] == 0 and cluster.topology.epoch == 2
        assert router.shard_of(moving[0]) == 0
        assert await balances(router, everyone) == before
        assert await books(router) == books_before
        history = await router.ask(0, AccountTransfers(moving[1], 10))
        assert [t.id for t in history.transfers] == [t.id for t in history_before.transfers]
        stored = await router.ask(0, GetTransfer(homed[0]))
        assert stored.transfer is not None and stored.transfer.amount == 100
        # The old shard answers for the slot no more: it says where it went.
        (refused,) = await router.scatter([(1, GetAccount(moving[0]))])
        assert isinstance(refused, SlotMoving) and refused.moved and refused.shard == 0
        # Retries of transfers homed in the slot are answered by the new home.
        assert await create(router, [transfer(homed[0], moving[0], moving[1], 100),
                                     transfer(homed[0], moving[0], moving[1], 99)]) == \
            ["exists", "exists_with_different_amount"]
        # Both pending transfers settle where their sides are now.
        assert await create(router, [
            transfer("q1", "", "", 25, POST_PENDING, pending_id="p1"),
            transfer(homed[3], "", "", 0, POST_PENDING, pending_id=homed[2]),
            transfer("n1", moving[0], moving[2], 5),
        ]) == ["ok"] * 3
        await asyncio.sleep(0)
        after = await balances(router, everyone)
        assert after[moving[0]] == (before[moving[0]][0] + 30, before[moving[0]][1], 0, 0)
        assert after[staying[0]][1] == 25 and after[staying[0]][3] == 0
        assert after[elsewhere[0]][1] == before[elsewhere[0]][1] + 15
        final = await books(router)
        assert final[0] == final[1] and final[2] == final[3] == 0
        return after

    expected = asyncio.run(drive())
    cluster.restart(stale_router=True)  # recovery replays the move; this router knows none

    async def after_restart() -> None:
        router = cluster.router
        assert router.shard_of(moving[0]) == 1  # stale: it learns from shard 1's answer
        assert await balances(router, everyone) == expected
        assert router.shard_of(moving[0]) == 0
        assert await create(router, [transfer("n2", moving[1], staying[1], 1)]) == ["ok"]

    asyncio.run(after_restart())


def test_refused_moves_change_nothing(cluster: Cluster) -> None:
    async def drive() -> None:
        router = cluster.router
        for slot, shard, code in ((SLOTS, 0, "slot_unknown"), (SLOT, 2, "shard_unknown"),
                                  (SLOT, 1, "slot_already_there")):
            with pytest.raises(SlotMoveRefused) as refused:
                await cluster.move(slot, shard)
            assert refused.value.code == code
        # Another move under way (frozen on shard 0, its mover stopped): refused, by name.
        other = 4
        frozen = await router.ask(0, FreezeSlot(other, SLOTS, 1, 2))
        assert isinstance(frozen, SlotReply) and frozen.result == "ok"
        with pytest.raises(SlotMoveRefused) as running:
            await cluster.move(SLOT, 0)
        assert running.value.code == "slot_move_running" and "slot 4" in running.value.message
        assert cluster.topology == round_robin(2, SLOTS)
        # Asked again, the stopped move finishes.
        finished = await cluster.move(other, 1)
        assert finished.resumed and cluster.topology.slot_table[other] == 1
        views = await router.ask_all(GetSlotMoves())
        assert views[0].frozen == {} and views[0].moved == {other: 1}

    asyncio.run(drive())


def test_a_slot_with_a_transfer_in_doubt_does_not_move(cluster: Cluster) -> None:
    account_id = ids_in(SLOT, "m", 1)[0]
    other = ids_on(cluster.router, 0, SLOT, "e", 1)[0]

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "")
                                      for a in (account_id, other)])
        # A part reserved on the slot's shard whose home never decides (its router died).
        reserved = await router.ask(1, Reserve(transfer("d1", account_id, other, 5), 1, 77))
        assert reserved.result == "ok"
        with pytest.raises(SlotMoveRefused) as busy:
            await cluster.move(SLOT, 0, busy_timeout_s=0.2)
        assert busy.value.code == "slot_busy"
        assert cluster.topology == round_robin(2, SLOTS)
        views = await router.ask_all(GetSlotMoves())
        assert all(view.frozen == {} for view in views)  # never frozen: it still serves
        view = await router.ask(1, GetAccount(account_id))
        assert view.account.debits_pending == 5

    asyncio.run(drive())
