"""Single transfers from concurrent requests run as one batch (switch/routing/coalesce.py):
each caller gets its own item's outcome, as soon as it is decided (not when a slow shard or
a waiting retry in the same batch is done), repeats of an id are answered as the id's home
would, a linked transfer runs alone, every request id reaches the shard; and through a real
switch, concurrent requests are answered each with its own transfer."""

from __future__ import annotations

import asyncio
import time

import httpx

from actors.ledger.model import DEBITS_MUST_NOT_EXCEED_CREDITS, LINKED, Account, Transfer
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, round_robin
from persistence.log import MemoryLog
from switch.observe.context import request_id_var
from switch.routing.coalesce import TransferCoalescer
from switch.routing.router import Router
from switch.routing.transport import LocalShard
from tests.conftest import RunningSwitch
from tests.switch.test_api import account, transfer


def _router() -> Router:
    logs = [MemoryLog() for _ in range(3)]
    hosts = [ShardHost(ShardConfig(i, ("USD",), 1000), lambda log=log: log)
             for i, log in enumerate(logs)]
    return Router([LocalShard(i, host) for i, host in enumerate(hosts)],
                  Placement(round_robin(3, 64)), 10_000, 8190)


def test_each_caller_gets_its_own_outcome_from_one_batch() -> None:
    async def scenario() -> None:
        router = _router()
        await router.create_accounts([Account("bank", "USD", 1, "o", 0, ""),
                                      Account("poor", "USD", 1, "o",
                                              DEBITS_MUST_NOT_EXCEED_CREDITS, ""),
                                      *[Account(f"a{n}", "USD", 1, "o", 0, "")
                                        for n in range(10)]])
        coalescer = TransferCoalescer(router, 8190)
        sent = [Transfer(f"t{n}", "bank", f"a{n % 10}", n + 1, "USD", 1) for n in range(40)]
        sent += [Transfer("t3", "bank", "a3", 4, "USD", 1),  # a repeat, the same fields
                 Transfer("t5", "bank", "a5", 99, "USD", 1),  # a repeat, another amount
                 Transfer("broke", "poor", "a1", 1, "USD", 1)]
        outcomes = await asyncio.gather(*(coalescer.create_transfer(t) for t in sent))
        assert coalescer.batches == 1 and coalescer.transfers == len(sent)
        for transfer_sent, outcome in zip(sent[:40], outcomes[:40], strict=True):
            assert isinstance(outcome, tuple) and outcome[0] == "ok"
            assert outcome[1].id == transfer_sent.id and outcome[1].amount == transfer_sent.amount
        assert [o[0] for o in outcomes[40:]] == [  # type: ignore[index]
            "exists", "exists_with_different_amount", "exceeds_credits"]
        linked = Transfer("chain-1", "bank", "a1", 1, "USD", 1, flags=LINKED)
        (alone,) = await asyncio.gather(coalescer.create_transfer(linked))
        assert alone[0] == "linked_event_chain_open" and coalescer.batches == 1  # type: ignore[index]

    asyncio.run(scenario())


def test_chains_of_one_turn_run_as_one_batch_each_whole() -> None:
    """The switch layer's payments: each caller's chain applied or refused whole, and
    answered with its own members' outcomes, in order; a failing chain spares the others."""
    async def scenario() -> None:
        router = _router()
        await router.create_accounts([Account("bank", "USD", 1, "o", 0, ""),
                                      Account("poor", "USD", 1, "o",
                                              DEBITS_MUST_NOT_EXCEED_CREDITS, ""),
                                      *[Account(f"a{n}", "USD", 1, "o", 0, "")
                                        for n in range(6)]])
        coalescer = TransferCoalescer(router, 8190)

        def chain(name: str, debit: str, length: int) -> list[Transfer]:
            return [Transfer(f"{name}-{i}", debit if i == 0 else f"a{i - 1}", f"a{i}", 5,
                             "USD", 1, flags=LINKED if i < length - 1 else 0)
                    for i in range(length)]

        chains = [chain(f"c{n}", "bank", 2 + n % 3) for n in range(8)] + [
            chain("doomed", "poor", 3)]
        single = Transfer("lone", "bank", "a5", 1, "USD", 1)
        answers = await asyncio.gather(*(coalescer.create_chain(c) for c in chains),
                                       coalescer.create_transfer(single))
        assert coalescer.batches == 1
        assert coalescer.transfers == sum(len(c) for c in chains) + 1
        for sent, got in zip(chains[:8], answers[:8], strict=True):
            assert [o[1].id for o in got] == [t.id for t in sent]  # type: ignore[index,union-attr]
            assert {o[0] for o in got} == {"ok"}  # type: ignore[index]
        assert [o[0] for o in answers[8]] == [  # type: ignore[index,union-attr]
            "exceeds_credits", "linked_event_failed", "linked_event_failed"]
        assert answers[9][0] == "ok"  # type: ignore[index]

    asyncio.run(scenario())


def test_concurrent_requests_through_a_switch_get_their_own_answers(
        switch: RunningSwitch) -> None:
    created = switch.post("/v1/accounts", [account("bank"), *[account(f"c{n}")
                                                              for n in range(8)]])
    assert {r["result"] for r in created.json()["results"]} == {"ok"}

    async def send() -> list[httpx.Response]:
        async with httpx.AsyncClient(base_url=switch.url, headers=switch.client.headers,
                                     timeout=30) as client:
            bodies = [transfer(f"co-{n}", "bank", f"c{n % 8}", n + 1) for n in range(200)]
            bodies.append(transfer("co-7", "bank", "c7", 999))  # a repeat, another amount
            return list(await asyncio.gather(*(client.post("/v1/transfers", json=b)
                                               for b in bodies)))

    responses = asyncio.run(send())
    for n, response in enumerate(responses[:200]):
        assert response.status_code == 201, response.text
        body = response.json()
        assert body["transfer"]["id"] == f"co-{n}" and body["transfer"]["amount"] == n + 1
    assert responses[200].status_code == 409
    assert responses[200].json()["result"] == "exists_with_different_amount"
    balances = switch.get("/v1/accounts/c7").json()
    assert balances["credits_posted"] == sum(n + 1 for n in range(200) if n % 8 == 7)


class Spy(LocalShard):
    delay = 0.0
    seen: list[list[str]]

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        self.seen.append(list(request_ids))
        if self.delay:
            await asyncio.sleep(self.delay)
        return await super().call(blob, request_ids)


def _spied_router(queue_max: int = 10_000, call_max: int = 8190) -> tuple[Router, list[Spy]]:
    links = []
    for i in range(2):
        log = MemoryLog()
        link = Spy(i, ShardHost(ShardConfig(i, ("USD",), 1000), lambda log=log: log))
        link.seen = []
        links.append(link)
    return Router(links, Placement(round_robin(2, 64)), queue_max, call_max), links


def _local_ids(router: Router, shard: int, n: int, prefix: str) -> list[str]:
    out, k = [], 0
    while len(out) < n:
        k += 1
        if router.shard_of(f"{prefix}{k}") == shard:
            out.append(f"{prefix}{k}")
    return out


async def _setup(router: Router) -> tuple[str, str]:
    (a0, b0) = _local_ids(router, 0, 2, "acc0-")
    (a1, b1) = _local_ids(router, 1, 2, "acc1-")
    await router.create_accounts([Account(x, "USD", 1, "o", 0, "") for x in (a0, b0, a1, b1)])
    return (a0, b0), (a1, b1)  # type: ignore[return-value]


def test_a_slow_shard_delays_requests_that_never_touch_it() -> None:
    async def scenario() -> float:
        router, links = _spied_router()
        (a0, b0), (a1, b1) = await _setup(router)
        links[1].delay = 0.5  # shard 1 stalls (fsync, GC, a slow node)
        c = TransferCoalescer(router, 8190)
        fast_id = _local_ids(router, 0, 1, "t0-")[0]
        slow_id = _local_ids(router, 1, 1, "t1-")[0]

        async def timed(t: Transfer) -> float:
            started = time.monotonic()
            await c.create_transfer(t)
            return time.monotonic() - started

        fast, _ = await asyncio.gather(timed(Transfer(fast_id, a0, b0, 1, "USD", 1)),
                                       timed(Transfer(slow_id, a1, b1, 1, "USD", 1)))
        return fast

    fast = asyncio.run(scenario())
    assert fast < 0.2, f"a shard-0-only transfer took {fast:.2f}s: it waited for shard 1"


def test_each_request_id_reaches_the_shard() -> None:
    async def scenario() -> list[list[str]]:
        router, links = _spied_router()
        (a0, b0), _ = await _setup(router)
        for link in links:
            link.seen.clear()
        c = TransferCoalescer(router, 8190)
        ids = _local_ids(router, 0, 3, "r-")

        async def request(n: int) -> None:
            request_id_var.set(f"req-{n}")  # as RequestContext does, per request task
            await c.create_transfer(Transfer(ids[n], a0, b0, 1, "USD", 1))

        await asyncio.gather(*(request(n) for n in range(3)))
        return links[0].seen

    seen = asyncio.run(scenario())
    assert sorted(i for call in seen for i in call) == ["req-0", "req-1", "req-2"], seen


def test_a_retried_id_in_flight_stalls_unrelated_requests_of_its_turn() -> None:
    async def scenario() -> float:
        router, links = _spied_router()
        (a0, b0), (a1, b1) = await _setup(router)
        links[1].delay = 0.5
        c = TransferCoalescer(router, 8190)
        x = _local_ids(router, 1, 1, "x-")[0]
        y = _local_ids(router, 0, 1, "y-")[0]
        first = asyncio.ensure_future(c.create_transfer(Transfer(x, a1, b1, 1, "USD", 1)))
        await asyncio.sleep(0.01)  # x is under way (live) at its slow home
        started = time.monotonic()
        retry = asyncio.ensure_future(c.create_transfer(Transfer(x, a1, b1, 1, "USD", 1)))
        await c.create_transfer(Transfer(y, a0, b0, 1, "USD", 1))  # shard 0 only, new id
        took = time.monotonic() - started
        await asyncio.gather(first, retry)
        return took

    took = asyncio.run(scenario())
    assert took < 0.2, f"y waited {took:.2f}s behind a retry of another request's id"
