"""The router when an array repeats one id, when a home's answer is lost after its commit,
and how much work redrive does with many pending transfers held (the real router over
in-process shard hosts: the transport's twin)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from actors.codec import decode_commands
from actors.ledger.model import PENDING, POST_PENDING, Account, Transfer
from actors.ledger.pending import UNSPECIFIED_CODE
from actors.messages import Commit, Stage
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, round_robin
from persistence.log import MemoryLog
from switch.routing.redrive import Redriver
from switch.routing.router import Router
from switch.routing.transport import LocalShard
from tests.actors.ledger_helpers import local_router
from tests.conftest import shard_ids


def hosts(count: int = 3) -> list[ShardHost]:
    found = []
    for index in range(count):
        log = MemoryLog()
        found.append(ShardHost(ShardConfig(index, ("USD",), 1_000_000), lambda log=log: log))
    return found


def commands_sent(router: Router) -> int:
    return sum(channel.commands_sent for channel in router.channels)


async def open_accounts(router: Router, names: list[str]) -> None:
    outcomes = await router.create_accounts([Account(n, "USD", 1, "o", 0, "") for n in names])
    assert all(outcome[0] == "ok" for outcome in outcomes), outcomes  # type: ignore[index]


def test_an_array_of_one_transfer_repeated_costs_one_attempt() -> None:
    router = local_router(hosts())

    async def drive() -> list[Any]:
        await open_accounts(router, ["bank", "shop"])
        before = commands_sent(router)
        copies = [Transfer("same", "bank", "shop", 5, "USD", 1)] * 8190
        outcomes = await router.create_transfers(copies)
        assert commands_sent(router) - before <= 4  # one attempt's rounds, not 8,190
        return outcomes

    outcomes = asyncio.run(drive())
    assert [o[0] for o in outcomes] == ["ok"] + ["exists"] * 8189  # type: ignore[index]
    differing = asyncio.run(_repeat_with_another_amount())
    assert differing == ["ok", "exists_with_different_amount", "exists"]


async def _repeat_with_another_amount() -> list[str]:
    router = local_router(hosts())
    await open_accounts(router, ["bank", "shop"])
    first = Transfer("t", "bank", "shop", 5, "USD", 1)
    outcomes = await router.create_transfers([first, first.resized(6), first])
    return [o[0] for o in outcomes]  # type: ignore[index]


def test_copies_of_a_refused_transfer_are_each_attempted() -> None:
    router = local_router(hosts())

    async def drive() -> list[str]:
        await open_accounts(router, ["shop"])
        refused = Transfer("r", "nobody", "shop", 5, "USD", 1)
        return [o[0] for o in await router.create_transfers([refused] * 3)]  # type: ignore[index]

    assert asyncio.run(drive()) == ["debit_account_not_found"] * 3


class LosesTheHomesAnswer(LocalShard):
    """A home that commits (or stages), then its answer is lost (as a link that drops the
    reply)."""

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        reply = await super().call(blob, request_ids)
        if any(isinstance(c, Commit | Stage) and c.attempt for c in decode_commands(blob)):
            raise ConnectionError("the answer was lost")
        return reply


@pytest.mark.parametrize("staged_commit", [False, True])
def test_a_lost_answer_from_the_home_never_voids_what_it_may_have_committed(
        staged_commit: bool) -> None:
    """Three rounds: the home committed, redrive posts the parts. One round: the router
    voids the staging at the home, whose answer is then the decision; the parts wait for it
    (recovery may have committed it meanwhile) and redrive voids them."""
    shard_hosts = hosts()
    links = [LosesTheHomesAnswer(0, shard_hosts[0])] + [
        LocalShard(i, h) for i, h in enumerate(shard_hosts) if i]
    router = Router(links, Placement(round_robin(3, 64)), 10_000, 8190,
                    staged_commit=staged_commit)
    payer, payee = shard_ids(router, 1, "payer", 1)[0], shard_ids(router, 2, "payee", 1)[0]
    transfer_id = shard_ids(router, 0, "t", 1)[0]

    async def drive() -> None:
        await open_accounts(router, [payer, payee])
        (outcome,) = await router.create_transfers(
            [Transfer(transfer_id, payer, payee, 9, "USD", 1)])
        await asyncio.sleep(0)
        assert isinstance(outcome, BaseException)  # the client is told nothing definite
        # The parts must not have been voided by the router; redrive settles them.
        assert shard_hosts[1].ledger.accounts[payer].debits_pending == 9
        await Redriver(router).run_once()

    asyncio.run(drive())
    moved = 0 if staged_commit else 9
    assert shard_hosts[1].ledger.accounts[payer].debits_posted == moved
    assert shard_hosts[2].ledger.accounts[payee].credits_posted == moved
    assert shard_hosts[1].ledger.accounts[payer].debits_pending == 0
    assert shard_hosts[2].ledger.accounts[payee].credits_pending == 0


def test_redrive_work_follows_what_is_in_doubt_not_what_is_held() -> None:
    shard_hosts = hosts()
    router = local_router(shard_hosts)

    async def drive() -> tuple[int, int]:
        await open_accounts(router, ["bank", "a", "b"])
        holds = [Transfer(f"hold-{n}", "bank", "a" if n % 2 else "b", 1, "USD", 1, "",
                          PENDING) for n in range(600)]
        outcomes = await router.create_transfers(holds)
        assert all(o[0] == "ok" for o in outcomes)  # type: ignore[index]
        redriver = Redriver(router)
        before = commands_sent(router)
        settled = await redriver.run_once()
        return settled, commands_sent(router) - before

    settled, sent = asyncio.run(drive())
    assert settled == 0
    assert sent <= 3 * 3  # one listing per shard and pass: nothing per hold


def test_resolved_holds_are_settled_once_and_never_rescanned() -> None:
    shard_hosts = hosts()
    router = local_router(shard_hosts)

    async def drive() -> tuple[int, int]:
        await open_accounts(router, ["bank", "a", "b"])
        holds = [Transfer(f"hold-{n}", "bank", "a" if n % 2 else "b", 1, "USD", 1, "",
                          PENDING) for n in range(300)]
        assert all(o[0] == "ok" for o in await router.create_transfers(holds))  # type: ignore[index]
        posts = [Transfer(f"post-{n}", "", "", 0, "", UNSPECIFIED_CODE, "", POST_PENDING,
                          f"hold-{n}")
                 for n in range(300)]
        assert all(o[0] == "ok" for o in await router.create_transfers(posts))  # type: ignore[index]
        redriver = Redriver(router)
        await redriver.run_once()  # whatever the posts left settling is settled now
        before = commands_sent(router)
        await redriver.run_once()
        return commands_sent(router) - before, sum(len(h.ledger.settling) for h in shard_hosts)

    sent, settling = asyncio.run(drive())
    assert settling == 0  # the outbox is empty: final holds are not kept to be looked at
    assert sent <= 3 * 3  # a later pass lists each shard's queues, and finds nothing
