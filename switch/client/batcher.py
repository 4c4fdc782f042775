"""Calls made one at a time, sent together: the client's side of the server's micro-batching.

Each call queues its item (or a linked chain: its items, kept whole) with a future. A sender
takes whatever waits, up to `batch_items_max`, as one array, and while that request is in
flight the next calls queue: no fixed wait, so one caller alone is sent at once and a
thousand concurrent callers share a few requests. Each item's result goes back to its own
future, by its index in the array.

What waits is shared among the senders about to send (up to `requests_in_flight_max`): a
thousand callers that arrive together ride two requests of 500 at once rather than one of
1,000, so half of them are answered sooner, come back while the other half is in flight,
and the requests overlap instead of taking turns (bench/RESULTS.md, the client's batching).
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

# Sends one array; returns each item's result entry ({"index", "id", "result", ...}).
SendArray = Callable[[list[dict[str, Any]]], Awaitable[list[dict[str, Any]]]]


@dataclass(slots=True)
class _Unit:
    items: list[dict[str, Any]]
    future: asyncio.Future[list[dict[str, Any]]]


@dataclass
class Batcher:
    send: SendArray
    batch_items_max: int = 8190
    requests_in_flight_max: int = 2
    on_batch: Callable[[int], None] | None = None  # the size of each array sent
    _waiting: deque[_Unit] = field(default_factory=deque)
    _waiting_items: int = 0
    _senders: int = 0  # drain tasks running, and of those, how many have a request out
    _sending: int = 0

    async def submit(self, items: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """One unit (an item, or a chain's items): its results, in order, once sent."""
        if len(items) > self.batch_items_max:
            raise ValueError(f"a chain holds at most {self.batch_items_max} transfers")
        future: asyncio.Future[list[dict[str, Any]]] = \
            asyncio.get_running_loop().create_future()
        self._waiting.append(_Unit(items, future))
        self._waiting_items += len(items)
        if self._senders < self.requests_in_flight_max:
            self._senders += 1
            asyncio.get_running_loop().create_task(self._drain())
        return await future

    def _next_array(self) -> list[_Unit]:
        """Whole units, oldest first: this sender's share of what waits (at least one unit),
        at most `batch_items_max` items."""
        idle = max(1, self._senders - self._sending)
        share = min(self.batch_items_max, -(-self._waiting_items // idle))
        units: list[_Unit] = []
        size = 0
        while self._waiting and (not units or size + len(self._waiting[0].items) <= share):
            unit = self._waiting.popleft()
            units.append(unit)
            size += len(unit.items)
        self._waiting_items -= size
        return units

    async def _drain(self) -> None:
        try:
            while self._waiting:
                units = self._next_array()
                self._sending += 1
                try:
                    await self._send(units)
                finally:
                    self._sending -= 1
                # One turn of the loop (no fixed wait): the callers just answered call again
                # and ride the next array with what waited. Sent at once, what waited would
                # go alone and those callers after it: the callers split into ever more
                # groups (arrays of 250 at 1,000 callers), each waiting a round trip for a
                # free request before its own.
                await asyncio.sleep(0)
        finally:
            self._senders -= 1

    async def _send(self, units: list[_Unit]) -> None:
        items = [item for unit in units for item in unit.items]
        if self.on_batch is not None:
            self.on_batch(len(items))
        try:
            results = await self.send(items)
        except BaseException as error:  # every caller of this array gets the error
            for unit in units:
                if not unit.future.done():
                    unit.future.set_exception(error)
            if not isinstance(error, Exception):
                raise
            return
        start = 0
        for unit in units:
            end = start + len(unit.items)
            if not unit.future.done():
                unit.future.set_result(results[start:end])
            start = end
