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
