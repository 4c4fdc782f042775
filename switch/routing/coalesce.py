"""Single transfers from concurrent requests, run through the router as one batch.

Clients that send one transfer per request make the router do its per-batch work (units,
waves, rounds, a group per shard, tasks and futures) once per transfer. Here every single
transfer that reaches the switch during one turn of the event loop waits for the end of
that turn (`call_soon`), and they all go to `Router.create_transfers` together. There is no
timer: under light load a batch holds one transfer, under heavy load as many as arrived
together.

- Each caller is answered as soon as its own item is decided (`on_outcome`), not when the
  batch ends: a transfer on one shard does not wait for another's cross-shard round or for
  a slow shard, nor for a retried id that waits for its earlier attempt.
- Batches are independent items, as an array request's are: a repeat of an id in the batch
  is answered from its first copy as the id's home would (`exists`, or the first field that
  differs). A linked chain travels whole (`create_chain`: the switch layer's payments) and
  is never split across batches; a linked transfer sent alone stays in its own batch.
- Every request id of the batch reaches the shards' logs (comma-separated: request ids
  cannot hold commas).
- A shard's queue admits or refuses the batch's commands for it as one group: near a full
  queue, all of the turn's transfers for that shard get 429 (nothing applied, Retry-After),
  where separate requests would have split between accepted and refused.
"""

from __future__ import annotations

import asyncio

from actors.ledger.model import LINKED, Transfer
from switch.observe.context import request_id_var
from switch.routing.router import Outcome, Router

# A unit: one transfer, or a whole chain; its answers; its request id.
_Waiting = tuple[list[Transfer], "asyncio.Future[list[Outcome]]", str]


class TransferCoalescer:
    def __init__(self, router: Router, batch_items_max: int) -> None:
        self._router = router
        self._batch_items_max = batch_items_max
        self._waiting: list[_Waiting] = []
        self._running: set[asyncio.Task[None]] = set()
        self.batches = 0  # for tests and metrics: how many batches the router ran
        self.transfers = 0

    async def create_transfer(self, transfer: Transfer) -> Outcome:
        if transfer.flags & LINKED:  # a chain's first member alone: its own batch
            (outcome,) = await self._router.create_transfers([transfer])
            return outcome
        (outcome,) = await self.create_chain([transfer])
        return outcome

    async def create_chain(self, chain: list[Transfer]) -> list[Outcome]:
        """A whole linked chain (or one transfer), with the other units of this turn."""
        if len(chain) > self._batch_items_max:
            return await self._router.create_transfers(chain)
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Outcome]] = loop.create_future()
        if not self._waiting:
            loop.call_soon(self._flush)
        self._waiting.append((chain, future, request_id_var.get()))
        return await future

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        loop = asyncio.get_running_loop()
        batch: list[_Waiting] = []
        size = 0
        for unit in waiting:  # whole units, at most batch_items_max items a batch
            if batch and size + len(unit[0]) > self._batch_items_max:
                self._start(loop, batch)
                batch, size = [], 0
            batch.append(unit)
            size += len(unit[0])
        if batch:
            self._start(loop, batch)

    def _start(self, loop: asyncio.AbstractEventLoop, batch: list[_Waiting]) -> None:
        task = loop.create_task(self._run(batch))
        self._running.add(task)
        task.add_done_callback(self._running.discard)

    async def _run(self, batch: list[_Waiting]) -> None:
        items = [t for chain, _, _ in batch for t in chain]
        self.batches += 1
        self.transfers += len(items)
        request_id_var.set(",".join(dict.fromkeys(r for _, _, r in batch if r)))
        owner: list[int] = []  # the unit of each item
        starts: list[int] = []  # the index of each unit's first item
        for unit, (chain, _, _) in enumerate(batch):
            starts.append(len(owner))
            owner += [unit] * len(chain)
        answers: list[list[Outcome | None]] = [[None] * len(chain) for chain, _, _ in batch]

        def answer(index: int, outcome: Outcome) -> None:
            unit = owner[index]
            answers[unit][index - starts[unit]] = outcome
            future = batch[unit][1]
            if not future.done() and all(a is not None for a in answers[unit]):
                future.set_result(answers[unit])  # type: ignore[arg-type]

        try:
            await self._router.create_transfers(items, answer)
        except Exception as error:  # the router answers per item; this is each one's answer
            for index in range(len(items)):
                answer(index, error)
        finally:  # a cancel at shutdown, a bug: nobody is left waiting for ever
            for _, future, _ in batch:
                if not future.done():
                    future.set_exception(RuntimeError("the batch ended without this item"))
