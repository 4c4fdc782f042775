"""Slot moves (actors/ledger/slots.py, switch/routing/slot_move.py) on shard hosts with real
LMDB logs, through the real router: what moves, what is refused, what survives a restart."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import orjson
import pytest

import switch.routing.slot_move as slot_move_module
from actors.codec import decode_snapshot, encode_snapshot
from actors.ledger import slots as slots_core
from actors.ledger import snapshot
from actors.ledger.events import SlotFrozen, SlotImported, SlotMovedOut
from actors.ledger.ledger import Ledger
from actors.ledger.model import LINKED, PENDING, POST_PENDING, Account, Roles, Transfer
from actors.ledger.store import MemoryStore
from actors.messages import (
    AccountTransfers,
    Finalize,
    FreezeSlot,
    GetAccount,
    GetSlotMoves,
    GetTransfer,
    ProbePart,
    Reserve,
    Resolve,
    Settle,
    SlotReply,
)
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, Topology, round_robin, slot_of
from persistence.lmdb_log import LmdbLog
from switch.read.events import event_from_json, event_json
from switch.routing.channel import SlotMoving
from switch.routing.router import Router
from switch.routing.slot_move import SlotMoveRefused, move_slot, moved_in, pin_account
from switch.routing.transport import LocalShard

SLOTS = 64


class Cluster:
    """Two shard hosts on LMDB, a router over them, the topology a mover saves."""

    def __init__(self, root: Path, shards: int = 2) -> None:
        self.root = root
        self.shards = shards
        self.topology: Topology = round_robin(shards, SLOTS)
        self.hosts = [self._host(index) for index in range(shards)]
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
        self.hosts = [self._host(index) for index in range(self.shards)]
        saved = self.topology
        if stale_router:
            self.topology = round_robin(self.shards, SLOTS)
        self.router = self._router()
        self.topology = saved

    def load(self) -> Topology:
        return self.topology

    def save(self, slot: int, shard: int, epoch: int, account: str) -> Topology:
        self.topology = moved_in(self.topology, slot, shard, epoch, account)
        return self.topology

    async def move(self, slot: int, to_shard: int, busy_timeout_s: float = 1.0) -> Any:
        return await move_slot(self.router, self.load, self.save, slot, to_shard,
                               busy_timeout_s)

    async def pin(self, account: str, to_shard: int, alone: bool = False) -> Any:
        return await pin_account(self.router, self.load, self.save, account, to_shard, 1.0,
                                 alone)


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
        # A stale redrive asking whether a part on a moved account is there is sent on too
        # (answering "absent" would void a transfer whose part is on the new shard).
        (probed,) = await router.scatter([(1, ProbePart("later", 9, [moving[0]]))])
        assert isinstance(probed, SlotMoving) and probed.shard == 0
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
    homed = [host.ledger.homed_count for host in cluster.hosts]
    moves = [host.ledger.slot_moves for host in cluster.hosts]
    for host in cluster.hosts:  # a snapshot holds what the moves left
        body = encode_snapshot(snapshot.dump(host.ledger))
        again = Ledger(("USD",), MemoryStore())
        snapshot.load(again, decode_snapshot(body)[0])
        assert again.slot_moves == host.ledger.slot_moves
        assert sorted(again.accounts) == sorted(host.ledger.accounts)
    cluster.restart(stale_router=True)  # recovery replays the move; this router knows none
    assert [host.ledger.homed_count for host in cluster.hosts] == homed
    assert [host.ledger.slot_moves for host in cluster.hosts] == moves

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


def test_a_hot_account_pinned_to_another_shard_leaves_its_slot_mates(cluster: Cluster) -> None:
    hot, mate = ids_in(SLOT, "h", 2)  # one slot, on shard 1
    other = ids_on(cluster.router, 0, SLOT, "e", 1)[0]
    everyone = [hot, mate, other]

    async def drive() -> dict[str, tuple[int, ...]]:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in everyone])
        assert await create(router, [transfer("a1", mate, hot, 50),
                                     transfer("a2", hot, other, 20),
                                     transfer("p1", hot, mate, 5, PENDING)]) == ["ok"] * 3
        before = await balances(router, everyone)
        for account, shard, code in (("nobody", 0, "account_not_found"),
                                     (hot, 1, "slot_already_there")):
            with pytest.raises(SlotMoveRefused) as refused:
                await cluster.pin(account, shard)
            assert refused.value.code == code
        pinned = await cluster.pin(hot, 0)
        assert (pinned.from_shard, pinned.to_shard, pinned.accounts) == (1, 0, 1)
        assert cluster.topology.pins == {hot: 0} and cluster.topology.format_version == 4
        assert router.shard_of(hot) == 0 and router.shard_of(mate) == 1
        assert await balances(router, everyone) == before
        history = await router.ask(0, AccountTransfers(hot, 10))
        assert [t.id for t in history.transfers] == ["a2", "a1"]
        (refused,) = await router.scatter([(1, GetAccount(hot))])
        assert isinstance(refused, SlotMoving) and refused.shard == 0
        # Its slot moves on without it; the pending transfer split across them settles.
        await cluster.move(SLOT, 0)
        await cluster.move(SLOT, 1)
        assert router.shard_of(hot) == 0 and router.shard_of(mate) == 1
        assert await create(router, [transfer("q1", "", "", 5, POST_PENDING, pending_id="p1"),
                                     transfer("a3", hot, mate, 1)]) == ["ok"] * 2
        after = await balances(router, everyone)
        assert after[hot] == (before[hot][0] + 6, before[hot][1], 0, 0)
        assert after[mate] == (before[mate][0], before[mate][1] + 6, 0, 0)
        return after

    expected = asyncio.run(drive())
    cluster.restart(stale_router=True)

    async def after_restart() -> None:
        router = cluster.router
        assert await balances(router, everyone) == expected
        assert router.shard_of(hot) == 0  # learned from shard 1's answer
        unpinned = await cluster.pin(hot, 1)  # to its slot's shard: the pin goes
        assert unpinned.to_shard == 1 and cluster.topology.pins == {}
        assert await balances(router, everyone) == expected

    asyncio.run(after_restart())


def test_an_account_whose_id_is_also_a_transfers_is_not_pinned(cluster: Cluster) -> None:
    shared, mate = ids_in(SLOT, "z", 2)

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in (shared, mate)])
        assert await create(router, [transfer(shared, mate, shared, 3)]) == ["ok"]
        with pytest.raises(SlotMoveRefused) as refused:
            await cluster.pin(shared, 0)
        assert refused.value.code == "account_id_shared"
        assert cluster.topology.pins == {}

    asyncio.run(drive())


def test_a_frozen_slot_settles_nothing_its_move_would_lose(cluster: Cluster) -> None:
    """Review: a settle of a held part in a frozen slot was applied, then lost by the move."""
    debit = ids_in(SLOT, "m", 1)[0]
    credit = ids_on(cluster.router, 0, SLOT, "e", 1)[0]

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in (debit, credit)])
        assert await create(router, [transfer("p1", debit, credit, 7, PENDING)]) == ["ok"]
        frozen = await router.ask(1, FreezeSlot(SLOT, SLOTS, 0, 2))
        assert frozen.result == "ok"
        for expected in ([debit], []):
            (settled,) = await router.scatter([(1, Settle("p1", True, 7, None, expected))])
            assert isinstance(settled, SlotMoving) and not settled.moved, settled
        await cluster.move(SLOT, 0)  # the stopped move finishes
        assert await create(router, [transfer("q1", "", "", 7, POST_PENDING,
                                              pending_id="p1")]) == ["ok"]
        after = await balances(router, [debit, credit])
        assert after == {debit: (7, 0, 0, 0), credit: (0, 7, 0, 0)}

    asyncio.run(drive())


def test_an_unpinned_account_moves_with_its_slot_again(cluster: Cluster) -> None:
    """Review: an account pinned away and back stayed behind when its slot moved."""
    hot, mate = ids_in(SLOT, "u", 2)

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in (hot, mate)])
        await cluster.pin(hot, 0)
        await cluster.pin(hot, 1)  # back to its slot's shard: unpinned
        assert cluster.topology.pins == {}
        await cluster.move(SLOT, 0)
        assert router.shard_of(hot) == 0
        view = await router.ask(0, GetAccount(hot))
        assert view.account is not None and view.account.id == hot
        (refused,) = await router.scatter([(1, GetAccount(hot))])
        assert isinstance(refused, SlotMoving) and refused.shard == 0
        assert await create(router, [transfer("v1", hot, mate, 1)]) == ["ok"]

    asyncio.run(drive())


def test_the_new_home_keeps_the_homes_record_over_a_parts_copy(cluster: Cluster) -> None:
    """Review: the new shard kept its own part's copy of a transfer homed in the slot (no
    commit attempt), so a part still asking the home was answered void."""
    homed = ids_in(SLOT, "t", 1)[0]
    debit = ids_in(SLOT, "m", 1)[0]
    credit = ids_on(cluster.router, 0, SLOT, "e", 1)[0]

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in (debit, credit)])
        assert await create(router, [transfer(homed, debit, credit, 3)]) == ["ok"]
        record = cluster.hosts[1].ledger.store.transfer(homed)
        assert record is not None and record.commit_attempt
        assert cluster.hosts[0].ledger.store.transfer(homed).commit_attempt == 0  # a copy
        await cluster.move(SLOT, 0)
        moved = cluster.hosts[0].ledger.store.transfer(homed)
        assert moved is not None and moved.commit_attempt == record.commit_attempt
        verdict = await router.ask(0, Resolve(homed, record.commit_attempt))
        assert verdict.verdict.outcome != "void", verdict

    asyncio.run(drive())


async def _pending_beside_a_part_in_doubt(cluster: Cluster) -> tuple[str, str, str]:
    """A pending transfer homed beside the slot (its debit in the slot, on shard 1) and, on
    shard 0, a part of another attempt of its id waiting for a decision (attempt 99): the
    debit, the other attempt's debit account, and the pending id."""
    router = cluster.router
    debit = ids_in(SLOT, "m", 1)[0]
    credit = ids_on(router, 1, SLOT, "k", 1)[0]  # beside it, staying
    other = ids_on(router, 0, SLOT, "e", 1)[0]
    pending_id = ids_on(router, 1, SLOT, "p", 1)[0]
    await router.create_accounts([Account(a, "USD", 1, "o", 0, "")
                                  for a in (debit, credit, other)])
    assert await create(router, [transfer(pending_id, debit, credit, 4, PENDING)]) == ["ok"]
    reserved = await router.ask(0, Reserve(transfer(pending_id, other, credit, 4),
                                           Roles.debit, 99))
    assert reserved.result == "ok"
    return debit, other, pending_id


def test_a_part_of_the_same_transfer_in_doubt_on_the_new_shard_stops_the_move(
        cluster: Cluster) -> None:
    """Review: an imported held part was joined with another attempt's part in doubt (its
    router died: nobody decides it within the move's wait)."""

    async def drive() -> None:
        router = cluster.router
        debit, _, _ = await _pending_beside_a_part_in_doubt(cluster)
        with pytest.raises(SlotMoveRefused) as refused:
            await cluster.move(SLOT, 0)
        assert refused.value.code == "slot_busy"
        assert cluster.topology == round_robin(2, SLOTS)
        views = await router.ask_all(GetSlotMoves())
        assert all(view.frozen == {} for view in views)  # given up: shard 1 serves it again
        view = await router.ask(1, GetAccount(debit))
        assert view.account.debits_pending == 4

    asyncio.run(drive())


def test_a_part_in_doubt_on_the_new_shard_decided_meanwhile_does_not_stop_the_move(
        cluster: Cluster) -> None:
    """CI under load: a pending transfer's home had committed (its part on the old shard
    held) while its other part on the new shard still waited for that decision. The import
    was refused once and the move given up; it waits for the decision instead."""

    async def drive() -> None:
        router = cluster.router
        debit, other, pending_id = await _pending_beside_a_part_in_doubt(cluster)

        async def decide_soon() -> None:
            await asyncio.sleep(0.3)
            await router.ask(0, Finalize(pending_id, 99, "void", 1))

        decided = asyncio.create_task(decide_soon())
        moved = await cluster.move(SLOT, 0, busy_timeout_s=5.0)
        await decided
        assert moved.to_shard == 0 and cluster.topology.slot_table[SLOT] == 0
        view = await router.ask(0, GetAccount(debit))
        assert view.account.debits_pending == 4
        assert (await router.ask(0, GetAccount(other))).account.debits_pending == 0

    asyncio.run(drive())


def test_a_hot_account_gets_a_shard_of_its_own(cluster: Cluster) -> None:
    """`slots pin --alone`: every other slot (and pinned account) leaves the shard first."""
    hot = ids_in(SLOT, "h", 1)[0]
    others = ids_on(cluster.router, 0, SLOT, "o", 3) + ids_on(cluster.router, 1, SLOT, "k", 3)

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in [hot, *others]])
        assert await create(router, [transfer(f"x{n}", other, hot, 10 + n)
                                     for n, other in enumerate(others)]) == ["ok"] * 6
        before = await balances(router, [hot, *others])
        books_before = await books(router)
        pinned = await cluster.pin(hot, 0, alone=True)
        assert pinned.made_room == SLOTS // 2  # shard 0's slots, moved to shard 1
        assert 0 not in cluster.topology.slot_table and cluster.topology.pins == {hot: 0}
        assert list(cluster.hosts[0].ledger.accounts) == [hot]
        assert await balances(router, [hot, *others]) == before
        assert await books(router) == books_before
        assert await create(router, [transfer("y1", hot, others[0], 1)]) == ["ok"]

    asyncio.run(drive())


def test_a_slots_new_shard_sends_its_accounts_pinned_elsewhere_on(tmp_path: Path) -> None:
    """Review: the slot's new shard did not know of its account pinned to another shard, so
    a router that learned the slot's move but not the pin created the account again there."""
    cluster = Cluster(tmp_path, shards=3)
    slot = 3  # on shard 0 of three
    hot, mate = ids_in(slot, "w", 2)

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in (hot, mate)])
        assert await create(router, [transfer("w1", mate, hot, 9)]) == ["ok"]
        await cluster.pin(hot, 1)
        await cluster.move(slot, 2)

    async def stale() -> None:  # a router that heard of neither
        router = Router([LocalShard(i, host) for i, host in enumerate(cluster.hosts)],
                        Placement(round_robin(3, SLOTS)), 10_000, 8190)
        view = await router.ask(router.shard_of(mate), GetAccount(mate))
        assert view.account is not None and router.shard_of(mate) == 2  # learned the slot
        view = await router.ask(router.shard_of(hot), GetAccount(hot))
        assert view.account is not None and view.account.credits_posted == 9
        assert router.shard_of(hot) == 1
        again = await router.create_accounts([Account(hot, "USD", 1, "o", 0, "")])
        assert again[0][0] == "exists"  # type: ignore[index]

    try:
        asyncio.run(drive())
        asyncio.run(stale())
    finally:
        for host in cluster.hosts:
            host.close()


def test_a_shard_of_its_own_for_an_account_whose_slot_is_on_that_shard(
        cluster: Cluster) -> None:
    """Review: the account left with its slot, and pinning it back was refused."""
    slot = 4  # on shard 0
    hot, mate = ids_in(slot, "s", 2)

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in (hot, mate)])
        pinned = await cluster.pin(hot, 0, alone=True)
        assert pinned.to_shard == 0 and 0 not in cluster.topology.slot_table
        assert list(cluster.hosts[0].ledger.accounts) == [hot]
        assert router.shard_of(mate) == 1

    asyncio.run(drive())


def test_a_pin_alone_that_would_be_refused_moves_nothing_first(cluster: Cluster) -> None:
    """Review: `--alone` moved every slot off the shard, then its pin was refused."""
    hot = ids_in(SLOT, "h", 1)[0]
    shared = ids_in(SLOT, "z", 2)

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "")
                                      for a in (hot, *shared)])
        assert await create(router, [transfer(shared[0], shared[1], shared[0], 1)]) == ["ok"]
        await cluster.pin(hot, 0)
        table = list(cluster.topology.slot_table)
        for account, code in ((hot, "slot_already_there"), ("nobody", "account_not_found"),
                              (shared[0], "account_id_shared")):
            with pytest.raises(SlotMoveRefused) as refused:
                await cluster.pin(account, 0, alone=True)
            assert refused.value.code == code
            assert cluster.topology.slot_table == table

    asyncio.run(drive())


def test_a_slot_too_large_to_carry_is_not_moved(cluster: Cluster,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    """An import larger than a shard's data port takes would leave the slot frozen for good:
    the move is given up before it, and the old shard serves the slot again."""
    monkeypatch.setattr(slot_move_module, "IMPORT_BYTES_MAX", 10)
    account_id = ids_in(SLOT, "m", 1)[0]

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(account_id, "USD", 1, "o", 0, "")])
        with pytest.raises(SlotMoveRefused) as refused:
            await cluster.move(SLOT, 0)
        assert refused.value.code == "slot_too_large"
        assert cluster.topology == round_robin(2, SLOTS)
        views = await router.ask_all(GetSlotMoves())
        assert all(view.frozen == {} for view in views)
        view = await router.ask(1, GetAccount(account_id))
        assert view.account is not None

    asyncio.run(drive())


def test_a_moves_events_survive_the_wal_tools_json(cluster: Cluster) -> None:
    """`payswitch wal export` shows an import whole, and `settlement verify` reads it back."""
    moving = ids_in(SLOT, "m", 2)

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in moving])
        assert await create(router, [transfer("j1", moving[0], moving[1], 5),
                                     transfer("j2", moving[1], moving[0], 3, PENDING)]) == \
            ["ok"] * 2

    asyncio.run(drive())
    ledger = cluster.hosts[1].ledger
    state = slots_core.export(ledger, slots_core.in_unit(SLOT, SLOTS))
    assert len(state.accounts) == 2 and state.reservations and state.balances is not None
    for event in (SlotImported(SLOT, SLOTS, 1, 2, state), SlotMovedOut(SLOT, 0, 2, "", True, 3),
                  SlotFrozen(SLOT, SLOTS, 0, 2, "acct")):
        shown = orjson.loads(orjson.dumps(event_json(event)))
        assert event_from_json(shown) == event


def test_a_router_that_has_not_heard_of_a_move_writes_there_at_once(cluster: Cluster) -> None:
    """Another ingress process's router (stale: it started before the move) sends writes
    about the moved slot to its old shard, which answers `slot_moved`: the router learns and
    sends them on, so its callers get their answers, not a 503 for a retry to fix."""
    moving = ids_in(SLOT, "m", 6)
    elsewhere = ids_on(cluster.router, 0, SLOT, "e", 2)
    homed = ids_in(SLOT, "t", 3)
    late = ids_in(SLOT, "n", 1)

    async def drive() -> None:
        router = cluster.router
        created = await router.create_accounts([Account(a, "USD", 1, "o", 0, "")
                                                for a in moving + elsewhere])
        assert {o[0] for o in created} == {"ok"}  # type: ignore[index]
        await cluster.move(SLOT, 0)

    asyncio.run(drive())
    cluster.restart(stale_router=True)

    async def stale_accounts() -> None:
        router = cluster.router
        assert router.shard_of(moving[0]) == 1  # it has not heard
        (account,) = await router.create_accounts([Account(late[0], "USD", 1, "o", 0, "")])
        assert not isinstance(account, BaseException) and account[0] == "ok"
        assert router.shard_of(moving[0]) == 0

    asyncio.run(stale_accounts())
    cluster.restart(stale_router=True)

    async def stale() -> None:
        router = cluster.router
        assert router.shard_of(moving[0]) == 1
        outcomes = await router.create_transfers([
            transfer(homed[0], moving[0], moving[1], 7),  # homed in the slot, wholly there
            transfer("c1", moving[2], elsewhere[0], 5),  # one side there
            transfer(homed[1], elsewhere[1], moving[3], 3, PENDING),  # its home there
            transfer("l1", moving[4], elsewhere[0], 2, LINKED),  # a chain through it
            transfer(homed[2], elsewhere[1], moving[5], 1),
        ])
        assert [o if isinstance(o, BaseException) else o[0] for o in outcomes] == ["ok"] * 5
        assert router.shard_of(moving[0]) == 0
        assert await books(router) == [15, 15, 3, 3]

    asyncio.run(stale())


def _moved_before_a_stale_router(cluster: Cluster, pending: list[Transfer] | None = None
                                 ) -> None:
    """Accounts in slot 5 and on shard 0 (and `pending` made), slot 5 moved to shard 0, then
    a router that has not heard of it."""
    async def drive() -> None:
        router = cluster.router
        created = await router.create_accounts([Account(a, "USD", 1, "o", 0, "")
                                                for a in ids_in(SLOT, "m", 6)
                                                + ids_on(router, 0, SLOT, "e", 3)])
        assert {o[0] for o in created} == {"ok"}  # type: ignore[index]
        if pending:
            assert await create(router, pending) == ["ok"] * len(pending)
        await cluster.move(SLOT, 0)

    asyncio.run(drive())
    cluster.restart(stale_router=True)


@pytest.mark.parametrize("case", ["chain_coordinator", "post_home", "unstaged_home",
                                  "repeats"])
def test_a_refusal_for_a_moved_slot_at_the_deciding_shard_leaves_nothing_held(
        cluster: Cluster, case: str) -> None:
    """The shard that decides (a chain's coordinator, a post's or an unstaged transfer's
    home) says slot_moved: it applied nothing, so the attempt's parts and claims elsewhere
    are voided at once and the attempt sent on commits (was: left for redrive, the resend
    answering in_flight). Two copies of an id, the first refused so: the first is the one
    made, the second answered against it."""
    elsewhere = ids_on(cluster.router, 0, SLOT, "e", 3)
    moving = ids_in(SLOT, "m", 6)
    homed = ids_in(SLOT, "t", 1)[0]
    pending = [transfer("pp", elsewhere[0], elsewhere[1], 9, PENDING)] \
        if case == "post_home" else None
    _moved_before_a_stale_router(cluster, pending)
    batch = {
        "chain_coordinator": [transfer(homed, elsewhere[0], elsewhere[1], 2, LINKED),
                              transfer("cz", elsewhere[1], elsewhere[2], 1)],
        "post_home": [transfer(homed, "", "", 0, POST_PENDING, pending_id="pp")],
        "unstaged_home": [transfer(homed, elsewhere[0], moving[0], 3)],
        "repeats": [transfer(homed, elsewhere[0], elsewhere[1], 5),
                    transfer(homed, elsewhere[0], elsewhere[1], 7)],
    }[case]
    expected = ["ok", "exists_with_different_amount"] if case == "repeats" \
        else ["ok"] * len(batch)

    async def stale() -> list[int]:
        router = cluster.router
        router.staged_commit = case != "unstaged_home"
        outcomes = await router.create_transfers(batch)
        assert [o if isinstance(o, BaseException) else o[0] for o in outcomes] == expected
        totals = await books(router)
        assert totals[2] == totals[3] == 0  # nothing left pending
        return totals

    made = asyncio.run(stale())
    # From the logs again (the shards' recovery): the voided first attempts stay void, the
    # attempt sent on stays made, and nothing is in doubt.
    cluster.restart()
    assert asyncio.run(books(cluster.router)) == made
    assert not any(host.ledger.reservations for host in cluster.hosts)


def test_a_participants_quota_is_shared_by_the_slots_each_shard_holds(cluster: Cluster) -> None:
    """auth.accounts_per_participant_max (8 here) over shards holding 48 and 16 of the 64
    slots after moves: each shard is sent its share by the slots it holds (6 and 2), not
    half each (a participant's accounts would meet the fuller shard's half at about 5)."""
    async def drive() -> None:
        router = cluster.router
        router.accounts_per_participant_max = 8
        for slot in [s for s in range(SLOTS) if cluster.topology.slot_table[s] == 1][:16]:
            await cluster.move(slot, 0)
        assert cluster.topology.slot_table.count(0) == 48
        ids = [f"q{n}" for n in range(200)]
        outcomes = await router.create_accounts([Account(i, "USD", 1, "psp", 0, "")
                                                 for i in ids], participant_id="psp")
        made = [i for i, o in zip(ids, outcomes, strict=True)
                if not isinstance(o, BaseException) and o[0] == "ok"]
        assert sorted(router.shard_of(i) for i in made) == [0] * 6 + [1] * 2
        refused = {o[0] for o in outcomes if not isinstance(o, BaseException)} - {"ok"}
        assert refused == {"account_quota_exceeded"}
        operator = await router.create_accounts([Account("q-op", "USD", 1, "psp", 0, "")])
        assert operator[0][0] == "ok"  # type: ignore[index]  # the operator's: not bound

    asyncio.run(drive())


def test_the_committed_counter_does_not_move_with_a_slot(cluster: Cluster) -> None:
    """The dashboard's committed rate counts each shard's commits applied: a slot move
    carries `transfers` (homed_count) to the new shard at its import and off the old one
    only at its release, so a reading between them counted the slot's transfers twice."""
    moving = ids_in(SLOT, "m", 2)
    homed = ids_in(SLOT, "t", 30)
    seen: list[tuple[int, int]] = []
    save = cluster.save

    def saving(slot: int, shard: int, epoch: int, account: str) -> Topology:
        seen.append((sum(h.ledger.homed_count for h in cluster.hosts),
                     sum(h.ledger.commits_applied for h in cluster.hosts)))
        return save(slot, shard, epoch, account)

    async def drive() -> None:
        router = cluster.router
        await router.create_accounts([Account(a, "USD", 1, "o", 0, "") for a in moving])
        assert await create(router, [transfer(t, moving[0], moving[1], 1)
                                     for t in homed]) == ["ok"] * 30
        cluster.save = saving  # type: ignore[method-assign]
        await cluster.move(SLOT, 0)

    asyncio.run(drive())
    assert seen == [(60, 30)]  # between import and release: homed twice, committed once
    assert sum(h.ledger.homed_count for h in cluster.hosts) == 30


def test_a_participants_quota_follows_what_the_router_learns_and_the_shards_own(
        cluster: Cluster) -> None:
    """A router that has not heard of moves resends refused creations where the slots are
    now, with that shard's share as the table stands then (was: the share worked out before
    it learned, too small). A router told no bound (-1, not built from settings) leaves each
    shard its own start-up share (was: sent 0, no bound at all)."""
    moved = [s for s in range(SLOTS) if cluster.topology.slot_table[s] == 1][:16]

    async def move() -> None:
        for slot in moved:
            await cluster.move(slot, 0)

    asyncio.run(move())
    cluster.restart(stale_router=True)
    for host in cluster.hosts:
        host.ledger.accounts_per_participant_max = 2  # the shards' own start-up share

    async def stale() -> None:
        router = cluster.router
        assert router.accounts_per_participant_max == -1
        own = await router.create_accounts([Account(f"own{n}", "USD", 1, "psp", 0, "")
                                            for n in range(40)], participant_id="psp")
        made = [o for o in own if not isinstance(o, BaseException) and o[0] == "ok"]
        assert len(made) == 4  # 2 a shard: theirs, not unbounded

    asyncio.run(stale())
    cluster.restart(stale_router=True)  # again one that has heard of nothing

    async def learning() -> None:
        router = cluster.router
        router.accounts_per_participant_max = 8
        ids = [f"q{n}" for n in range(400) if slot_of(f"q{n}", SLOTS) in moved][:8] + [
            f"r{n}" for n in range(400) if cluster.topology.slot_table[slot_of(f"r{n}", SLOTS)]
            == 0 and slot_of(f"r{n}", SLOTS) not in moved][:8]
        outcomes = await router.create_accounts([Account(i, "USD", 1, "psp2", 0, "")
                                                 for i in ids], participant_id="psp2")
        made_here = [i for i, o in zip(ids, outcomes, strict=True)
                     if not isinstance(o, BaseException) and o[0] == "ok"]
        # Shard 0 holds 48 of 64 slots now: a share of 6 once the router has learned the
        # moves its answers told (4 from the table it started with).
        assert len(made_here) > 4, outcomes

    asyncio.run(learning())
