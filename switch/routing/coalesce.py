"""Single transfers from concurrent requests, run through the router as one batch.

Clients that send one transfer per request make the router do its per-batch work (units,
waves, rounds, a group per shard, tasks and futures) once per transfer. Here every single
transfer that reaches the switch during one turn of the event loop waits for the end of
that turn (`call_soon`), and they all go to `Router.create_transfers` together; each caller
gets its own item's outcome. There is no timer: under light load a batch holds one
transfer, under heavy load as many as arrived together. Batches are independent items, as
an array request's are: a repeat of an id in the batch is answered from its first copy as
the id's home would (`exists`, or the first field that differs), and a batch never holds a
linked transfer (a chain stays in its own request).
"""

from __future__ import annotations

import asyncio

from actors.ledger.model import LINKED, Transfer
from switch.routing.router import Outcome, Router


class TransferCoalescer:
    def __init__(self, router: Router, batch_items_max: int) -> None:
        self._router = router
        self._batch_items_max = batch_items_max
        self._waiting: list[tuple[Transfer, asyncio.Future[Outcome]]] = []
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0  # for tests and metrics: how many batches the router ran
        self.transfers = 0

    async def create_transfer(self, transfer: Transfer) -> Outcome:
        if transfer.flags & LINKED:  # a chain's first member alone: its own batch
            (outcome,) = await self._router.create_transfers([transfer])
            return outcome
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Outcome] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((transfer, future))
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        loop = asyncio.get_running_loop()
        for start in range(0, len(waiting), self._batch_items_max):
            task = loop.create_task(self._run(waiting[start : start + self._batch_items_max]))
            self._running.add(task)
            task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[tuple[Transfer, asyncio.Future[Outcome]]]) -> None:
        self.batches += 1
        self.transfers += len(batch)
        try:
            outcomes = await self._router.create_transfers([transfer for transfer, _ in batch])
        except Exception as error:  # the router answers per item; this would be a bug
            outcomes = [error] * len(batch)
        for (_, future), outcome in zip(batch, outcomes, strict=True):
            if not future.done():  # its request may have gone
                future.set_result(outcome)
