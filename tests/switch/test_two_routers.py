"""Two routers over the same shards, as two ingress processes (`--workers 2`) are: what one
acknowledged, a read through the other sees whole.

One router answers a cross-shard transfer once its home's commit is durable and the
finalize of its other half is queued: a later read through that router queues behind the
finalize and sees the half posted. A read through another router does not queue behind it,
so a router that is one of several answers only once the finalize is done (found by
bench.workers: the books read through the other worker showed the far halves pending).
"""

from __future__ import annotations

import asyncio

import pytest

from actors.codec import decode_commands
from actors.ledger.model import Account, Transfer
from actors.messages import AccountView, Commit, Finalize, GetAccount, Stage, expect
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, round_robin
from persistence.log import MemoryLog
from switch.routing.redrive import Redriver
from switch.routing.router import Router
from switch.routing.transport import LocalShard

PLACEMENT = Placement(round_robin(2, 64))


class HeldLink(LocalShard):
    """Holds any batch that carries a `held` command until `release` is set."""

    def __init__(self, index: int, host: ShardHost, held: type | tuple[type, ...]) -> None:
        super().__init__(index, host)
        self.held = held
        self.reached = asyncio.Event()
        self.release = asyncio.Event()

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        if any(isinstance(command, self.held) for command in decode_commands(blob)):
            self.reached.set()
            await self.release.wait()
        return await super().call(blob, request_ids)


def _ids_on_two_shards() -> tuple[str, str]:
    ids = [f"acct-{n}" for n in range(20)]
    first = ids[0]
    other = next(i for i in ids if PLACEMENT.shard_of(i) != PLACEMENT.shard_of(first))
    return first, other


async def _scenario(answer_after_finalize: bool) -> tuple[bool, Account]:
    """(whether the answer waited for the held finalize, the far account read through the
    other router right after the answer)."""
    hosts = [ShardHost(ShardConfig(i, ("USD",), 1_000_000), lambda: MemoryLog())
             for i in range(2)]
    held = [HeldLink(i, host, Finalize) for i, host in enumerate(hosts)]
    acting = Router(held, PLACEMENT, answer_after_finalize=answer_after_finalize)
    reading = Router([LocalShard(i, host) for i, host in enumerate(hosts)], PLACEMENT)
    debit, credit = _ids_on_two_shards()
    await reading.create_accounts([Account(debit, "USD", 1, "o", 0, ""),
                                   Account(credit, "USD", 1, "o", 0, "")])
    told: list[int] = []  # the fast path answers each item when it is told (on_outcome)
    answer = asyncio.ensure_future(acting.create_transfers(
        [Transfer("t1", debit, credit, 100, "USD", 1, "")],
        on_outcome=lambda index, outcome: told.append(index)))
    await asyncio.wait_for(asyncio.gather(*(link.reached.wait() for link in held
                                            if link.index != PLACEMENT.shard_of("t1"))), 5)
    await asyncio.sleep(0.05)  # the answer, if it does not wait for the finalize, is out
    waited = not answer.done() and not told
    if waited:
        for link in held:
            link.release.set()
    (outcome,) = await asyncio.wait_for(answer, 5)
    assert not isinstance(outcome, BaseException) and outcome[0] == "ok", outcome
    assert told == [0]
    far = credit if PLACEMENT.shard_of("t1") == PLACEMENT.shard_of(debit) else debit
    view = expect(await reading.ask(PLACEMENT.shard_of(far), GetAccount(far)), AccountView)
    for link in held:
        link.release.set()
    assert view.account is not None
    return waited, view.account


def test_one_of_several_routers_answers_after_the_finalize_so_others_read_it_whole() -> None:
    waited, far = asyncio.run(_scenario(answer_after_finalize=True))
    assert waited
    assert far.debits_pending == far.credits_pending == 0
    assert far.debits_posted + far.credits_posted == 100


@pytest.mark.parametrize("answer_after_finalize", [False])
def test_a_lone_router_answers_before_the_finalize(answer_after_finalize: bool) -> None:
    """(Its own later reads queue behind the finalize: tests/switch/test_cross_shard.py.)"""
    waited, far = asyncio.run(_scenario(answer_after_finalize))
    assert not waited
    assert far.debits_pending + far.credits_pending == 100  # another router sees it pending


async def _redrive_during_another_routers_wave(foreign_min_age_ms: int, staged_commit: bool
                                               ) -> tuple[str, int]:
    """Router A's transfer is reserved and its home's commit (or its staging, in one round)
    held; router B's redrive runs meanwhile (periodic, min age 0 as at a worker's start).
    Returns A's answer and how much B's redrive settled."""
    hosts = [ShardHost(ShardConfig(i, ("USD",), 1_000_000), lambda: MemoryLog())
             for i in range(2)]
    held = [HeldLink(i, host, (Commit, Stage)) for i, host in enumerate(hosts)]
    acting = Router(held, PLACEMENT, answer_after_finalize=True, staged_commit=staged_commit)
    other = Router([LocalShard(i, host) for i, host in enumerate(hosts)], PLACEMENT,
                   answer_after_finalize=True)
    debit, credit = _ids_on_two_shards()
    await other.create_accounts([Account(debit, "USD", 1, "o", 0, ""),
                                 Account(credit, "USD", 1, "o", 0, "")])
    answer = asyncio.ensure_future(acting.create_transfers(
        [Transfer("t2", debit, credit, 100, "USD", 1, "")]))
    home = held[PLACEMENT.shard_of("t2")]
    await asyncio.wait_for(home.reached.wait(), 5)  # reserved; the home's commit held
    settled = await Redriver(other, foreign_min_age_ms=foreign_min_age_ms).run_once()
    home.release.set()
    (outcome,) = await asyncio.wait_for(answer, 5)
    assert not isinstance(outcome, BaseException)
    return outcome[0], settled


@pytest.mark.parametrize("staged_commit", [True, False])
def test_a_redrive_leaves_another_routers_fresh_parts_alone(staged_commit: bool) -> None:
    result, settled = asyncio.run(_redrive_during_another_routers_wave(10_000, staged_commit))
    assert (result, settled) == ("ok", 0)


@pytest.mark.parametrize("staged_commit", [True, False])
def test_without_the_age_for_others_parts_a_redrive_fences_a_live_transfer(
        staged_commit: bool) -> None:
    """What the age prevents: the home fences the live attempt, its commit (its staging)
    answers in_flight (money stays right either way: tests/actors/test_fences.py)."""
    result, settled = asyncio.run(_redrive_during_another_routers_wave(0, staged_commit))
    assert result == "in_flight" and settled > 0
