"""Single transfers from concurrent requests run as one batch (switch/routing/coalesce.py):
each caller gets its own item's outcome, repeats of an id are answered as the id's home
would, a linked transfer runs alone; and through a real switch, concurrent requests are
answered each with its own transfer."""

from __future__ import annotations

import asyncio

import httpx

from actors.ledger.model import DEBITS_MUST_NOT_EXCEED_CREDITS, LINKED, Account, Transfer
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, round_robin
from persistence.log import MemoryLog
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
