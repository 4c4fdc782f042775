"""The client's batcher on its own (a fake sender): callers that arrive together are spread
over the requests it may have in flight, chains stay whole, each caller gets its own result.
(Against a real switch: tests/switch/test_client.py.)"""

from __future__ import annotations

import asyncio
from typing import Any

from switch.client.batcher import Batcher


class _Sender:
    def __init__(self) -> None:
        self.arrays: list[list[dict[str, Any]]] = []
        self.in_flight = 0
        self.in_flight_max = 0
        self.release = asyncio.Event()

    async def __call__(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        self.arrays.append(items)
        self.in_flight += 1
        self.in_flight_max = max(self.in_flight_max, self.in_flight)
        await self.release.wait()
        self.in_flight -= 1
        return [{"id": item["id"], "result": "ok"} for item in items]


async def _together(batcher: Batcher, units: list[list[dict[str, Any]]], sender: _Sender
                    ) -> list[list[dict[str, Any]]]:
    calls = [asyncio.ensure_future(batcher.submit(unit)) for unit in units]
    await asyncio.sleep(0.01)
    sender.release.set()
    return list(await asyncio.gather(*calls))


def test_callers_that_arrive_together_ride_parallel_requests_each_gets_its_own() -> None:
    sender = _Sender()
    batcher = Batcher(sender, batch_items_max=8190, requests_in_flight_max=2)
    units = [[{"id": f"t{n}"}] for n in range(1000)]
    results = asyncio.run(_together(batcher, units, sender))
    assert sorted(len(a) for a in sender.arrays) == [500, 500]
    assert sender.in_flight_max == 2
    assert [r[0]["id"] for r in results] == [f"t{n}" for n in range(1000)]


def test_a_share_never_splits_a_chain_nor_passes_the_array_limit() -> None:
    sender = _Sender()
    batcher = Batcher(sender, batch_items_max=100, requests_in_flight_max=2)
    chain = [{"id": f"c{n}"} for n in range(90)]
    units = [chain] + [[{"id": f"t{n}"}] for n in range(150)]
    results = asyncio.run(_together(batcher, units, sender))
    assert all(len(a) <= 100 for a in sender.arrays)
    assert sum(len(a) for a in sender.arrays) == 240
    assert any(a[:90] == chain for a in sender.arrays)  # whole, in one array
    assert [r["id"] for r in results[0]] == [item["id"] for item in chain]


def test_one_caller_alone_is_sent_at_once() -> None:
    sender = _Sender()
    batcher = Batcher(sender, requests_in_flight_max=2)
    sender.release.set()
    (result,) = asyncio.run(batcher.submit([{"id": "alone"}]))
    assert result["id"] == "alone" and [len(a) for a in sender.arrays] == [1]


def test_a_retry_sends_again_only_what_has_no_final_answer() -> None:
    """An item already refused is not sent again beside one still in flight: sent again, it
    could be made after its caller was told it was refused (found by review). A chain is
    sent again whole, and its answers are taken from one response."""
    import httpx
    import orjson

    from switch.client import AsyncClient, RetryPolicy, Transfer

    sent: list[list[str]] = []

    def answer(request: httpx.Request) -> httpx.Response:
        items = orjson.loads(request.content)
        sent.append([item["id"] for item in items])
        first = len(sent) == 1
        codes = {"refused": "exceeds_credits", "slow": "in_flight" if first else "ok",
                 "c1": "linked_event_failed" if first else "ok",
                 "c2": "in_flight" if first else "ok"}
        return httpx.Response(200, json={"results": [
            {"index": index, "id": item["id"], "result": codes[item["id"]]}
            for index, item in enumerate(items)]})

    async def scenario() -> list[Any]:
        async with AsyncClient("http://switch.test", "key", requests_in_flight_max=1,
                               transport=httpx.MockTransport(answer),
                               retry=RetryPolicy(backoff_first_ms=1)) as client:
            def transfer(transfer_id: str) -> Transfer:
                return Transfer(transfer_id, "a", "b", 1, "USD", 1)
            return list(await asyncio.gather(
                client.create_transfer(transfer("refused")),
                client.create_transfer(transfer("slow")),
                client.create_transfer_chain([transfer("c1"), transfer("c2")])))

    refused, slow, chain = asyncio.run(scenario())
    assert sent == [["refused", "slow", "c1", "c2"], ["slow", "c1", "c2"]]
    assert (refused.result, slow.result) == ("exceeds_credits", "ok")
    assert [member.result for member in chain] == ["ok", "ok"]


def test_callers_answered_ride_the_next_array_with_those_that_waited() -> None:
    """Two arrays in flight and a group waiting: when one array comes back, its callers'
    next calls go in one array with the group that waited, not after it (else the callers
    split into ever more groups, each waiting a whole round trip for a free request)."""
    gates: list[asyncio.Event] = []
    arrays: list[int] = []

    async def send(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        arrays.append(len(items))
        gate = asyncio.Event()
        gates.append(gate)
        await gate.wait()
        return [{"id": item["id"], "result": "ok"} for item in items]

    batcher = Batcher(send, requests_in_flight_max=2)

    async def caller(n: int, calls: int) -> None:
        for call in range(calls):
            await batcher.submit([{"id": f"c{n}-{call}"}])

    async def scenario() -> None:
        looping = [asyncio.ensure_future(caller(n, 2)) for n in range(100)]
        await asyncio.sleep(0.01)
        assert arrays == [50, 50]  # both requests in flight
        waiting = [asyncio.ensure_future(caller(100 + n, 1)) for n in range(30)]
        await asyncio.sleep(0.01)
        gates[0].set()  # the first array's 50 callers call again
        await asyncio.sleep(0.01)
        assert arrays[2] == 80, arrays
        while not all(task.done() for task in looping + waiting):
            for gate in gates:
                gate.set()
            await asyncio.sleep(0.001)
        await asyncio.gather(*looping, *waiting)

    asyncio.run(scenario())
