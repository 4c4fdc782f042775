"""A cross-shard transfer answered after one durable round, through the router and redrive
(in-process shards): its answer leaves once its home's staging and its parts are durable;
the decision that follows may be lost, and redrive then decides from the parts alone."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from actors.codec import decode_commands
from actors.ledger.model import Account, Transfer
from actors.messages import Command, Commit, Finalize, Reserve, Stage
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, round_robin
from persistence.log import MemoryLog
from switch.routing.redrive import Redriver
from switch.routing.router import Router
from switch.routing.transport import LocalShard

PLACEMENT = Placement(round_robin(2, 64))


class DroppingLink(LocalShard):
    """Loses every batch holding a command `drop` picks, before the shard sees it; keeps a
    copy to deliver later (a dropped connection's request that the shard runs late)."""

    def __init__(self, index: int, host: ShardHost, drop: Callable[[Command], bool]) -> None:
        super().__init__(index, host)
        self.drop = drop
        self.late: list[bytes] = []
        self.seen: list[type] = []

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        commands = decode_commands(blob)
        self.seen.extend(type(command) for command in commands)
        if any(self.drop(command) for command in commands):
            self.late.append(blob)
            raise ConnectionError("dropped")
        return await super().call(blob, request_ids)

    def deliver_late(self) -> None:
        for blob in self.late:
            self._live().handle(blob, [])
        self.late = []


def _placed(prefix: str, shard: int) -> str:
    return next(f"{prefix}{n}" for n in range(100) if PLACEMENT.shard_of(f"{prefix}{n}") == shard)


def _world(drop: Callable[[int, Command], bool]) -> tuple[list[ShardHost], list[DroppingLink],
                                                          Router]:
    hosts = [ShardHost(ShardConfig(i, ("USD",), 1_000_000), lambda: MemoryLog())
             for i in range(2)]
    links = [DroppingLink(i, host, lambda command, i=i: drop(i, command))
             for i, host in enumerate(hosts)]
    return hosts, links, Router(links, PLACEMENT)


def _books(hosts: list[ShardHost]) -> tuple[int, int, int, int]:
    """Debits and credits posted, debits and credits pending, over both shards."""
    sums = [0, 0, 0, 0]
    for host in hosts:
        for found in host.ledger.accounts.values():
            for place, value in enumerate((found.debits_posted, found.credits_posted,
                                           found.debits_pending, found.credits_pending)):
                sums[place] += value
    return sums[0], sums[1], sums[2], sums[3]


async def _send(router: Router, transfer: Transfer) -> object:
    await router.create_accounts([Account(transfer.debit_account_id, "USD", 1, "o", 0, ""),
                                  Account(transfer.credit_account_id, "USD", 1, "o", 0, "")])
    (outcome,) = await router.create_transfers([transfer])
    return outcome


def test_one_round_before_the_answer_and_no_commit_round() -> None:
    """Home on shard 0 with the debit, the credit on shard 1: Stage and Reserve go out
    together, the answer needs no Commit, and the decision posts both sides."""
    hosts, links, router = _world(lambda shard, command: False)
    transfer = Transfer(_placed("t", 0), _placed("a", 0), _placed("b", 1), 40, "USD", 1, "")
    outcome = asyncio.run(_send(router, transfer))
    assert isinstance(outcome, tuple) and outcome[0] == "ok"
    assert Stage in links[0].seen and Reserve in links[1].seen
    assert Commit not in links[0].seen + links[1].seen
    assert _books(hosts) == (40, 40, 0, 0)
    assert hosts[0].ledger.stored(transfer.id) == outcome[1]


def test_an_acknowledged_transfer_whose_decision_was_lost_is_committed_by_redrive() -> None:
    drop_decisions = True
    hosts, _links, router = _world(lambda shard, command: drop_decisions
                                  and isinstance(command, Finalize))
    transfer = Transfer(_placed("t", 0), _placed("a", 0), _placed("b", 1), 40, "USD", 1, "")

    async def scenario() -> None:
        nonlocal drop_decisions
        outcome = await _send(router, transfer)
        assert isinstance(outcome, tuple) and outcome[0] == "ok"  # acknowledged: committed
        assert hosts[0].ledger.stored(transfer.id) is None  # its decision never arrived
        assert _books(hosts) == (0, 0, 40, 40)
        drop_decisions = False
        settled = await Redriver(router).run_once()
        assert settled >= 2  # the decision at the home, then the far part
        assert hosts[0].ledger.stored(transfer.id) == outcome[1]
        assert _books(hosts) == (40, 40, 0, 0)

    asyncio.run(scenario())


def test_a_part_lost_on_the_way_voids_the_staged_transfer_and_stays_out_for_good() -> None:
    """The far part's Reserve never reached its shard (it will, late); the answer is an
    error, and the router's own void of the home was lost too. Redrive finds the home staged,
    the part absent (fenced): void. The late Reserve is refused: nothing moves."""
    dropping = True
    hosts, links, router = _world(lambda shard, command: dropping and (
        (shard == 1 and isinstance(command, Reserve))
        or (shard == 0 and isinstance(command, Finalize))))
    transfer = Transfer(_placed("t", 0), _placed("a", 0), _placed("b", 1), 40, "USD", 1, "")

    async def scenario() -> None:
        nonlocal dropping
        outcome = await _send(router, transfer)
        assert isinstance(outcome, BaseException)  # not known: the client retries the id
        assert _books(hosts) == (0, 0, 40, 0)  # the home's debit side is held
        dropping = False
        await Redriver(router).run_once()
        assert _books(hosts) == (0, 0, 0, 0)
        links[1].deliver_late()
        assert _books(hosts) == (0, 0, 0, 0), "a late part must not be reserved once voided"
        assert await Redriver(router).run_once() == 0
        (retried,) = await router.create_transfers([transfer])
        assert isinstance(retried, tuple) and retried[0] == "ok"
        assert _books(hosts) == (40, 40, 0, 0)

    asyncio.run(scenario())


def test_a_refused_part_answers_its_code_and_voids_the_staging() -> None:
    """The credit account's shard refuses (no such account): the home's staging is voided
    by the decision, the id stays free."""
    hosts, _links, router = _world(lambda shard, command: False)
    debit = _placed("a", 0)

    async def scenario() -> object:
        await router.create_accounts([Account(debit, "USD", 1, "o", 0, "")])
        (outcome,) = await router.create_transfers([
            Transfer(_placed("t", 0), debit, _placed("missing", 1), 40, "USD", 1, "")])
        return outcome

    outcome = asyncio.run(scenario())
    assert isinstance(outcome, tuple) and outcome[0] == "credit_account_not_found"
    assert _books(hosts) == (0, 0, 0, 0)
    assert not hosts[0].ledger.reservations


def test_the_barrier_waits_for_the_decisions_queued_before_it() -> None:
    """The read model reads the shards' logs: a query must not pass a staged transfer whose
    answer left but whose decision is still on its way to the home."""
    hosts = [ShardHost(ShardConfig(i, ("USD",), 1_000_000), lambda: MemoryLog())
             for i in range(2)]
    release = asyncio.Event()

    class HoldsDecisions(LocalShard):
        async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
            if any(isinstance(command, Finalize) for command in decode_commands(blob)):
                await release.wait()
            return await super().call(blob, request_ids)

    router = Router([HoldsDecisions(i, host) for i, host in enumerate(hosts)], PLACEMENT)
    transfer = Transfer(_placed("t", 0), _placed("a", 0), _placed("b", 1), 40, "USD", 1, "")

    async def scenario() -> None:
        outcome = await _send(router, transfer)
        assert isinstance(outcome, tuple) and outcome[0] == "ok"
        assert hosts[0].ledger.stored(transfer.id) is None  # its decision is held
        barrier = asyncio.ensure_future(router.barrier())
        await asyncio.sleep(0.05)
        assert not barrier.done()
        release.set()
        await asyncio.wait_for(barrier, 5)
        assert hosts[0].ledger.stored(transfer.id) == outcome[1]

    asyncio.run(scenario())


def test_a_refusal_beside_a_lost_reply_still_voids_the_parts_at_once() -> None:
    """The home refuses (no debit account) and the far part's answer is lost after it
    reserved: the transfer can never commit, so its part is voided now, not left holding
    the credit account's pending amount until redrive."""
    hosts = [ShardHost(ShardConfig(i, ("USD",), 1_000_000), lambda: MemoryLog())
             for i in range(2)]

    class LosesReserveAnswers(LocalShard):
        async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
            reply = await super().call(blob, request_ids)
            if any(isinstance(command, Reserve) for command in decode_commands(blob)):
                raise ConnectionError("the answer was lost")
            return reply

    router = Router([LocalShard(0, hosts[0]), LosesReserveAnswers(1, hosts[1])], PLACEMENT)
    credit = _placed("b", 1)

    async def scenario() -> None:
        await router.create_accounts([Account(credit, "USD", 1, "o", 0, "")])
        (outcome,) = await router.create_transfers([
            Transfer(_placed("t", 0), _placed("missing", 0), credit, 40, "USD", 1, "")])
        assert isinstance(outcome, BaseException)  # a reply was lost: 503, as before
        async with asyncio.timeout(5):  # the finalize runs after the answer
            while router.live:  # the id is released once its finalize is answered
                await asyncio.sleep(0.001)
        assert hosts[1].ledger.accounts[credit].credits_pending == 0

    asyncio.run(scenario())
