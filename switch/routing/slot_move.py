"""Moving a slot to another shard, online: the steps of actors/ledger/slots.py, driven by
whichever ingress process the operator asked (`POST /v1/cluster/slot-moves`, or `payswitch
slots move`), through its router.

1. Freeze on the old shard: asked again (every 50 ms, up to `busy_timeout_s`) while something
   about the slot waits for a decision there; then the shard refuses every command about the
   slot, and answers with everything it holds for it.
2. Import on the new shard.
3. Save the topology: the slot on the new shard, under the next epoch (under the topology's
   lock, beside the replication controller's writes).
4. Release on the old shard: it lets go of the slot's state and tells routers that ask where
   it went (each ingress process's router learns it from its first command about the slot).
A mover that stops between steps leaves the slot frozen (503 `slot_moving` for its commands);
asking for the same move again finishes it from where it stopped. Nothing of a slot is ever
served by two shards: the old one refuses from step 1, the new one is asked after step 3.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from actors.messages import (
    FreezeSlot,
    GetSlotMoves,
    ImportSlot,
    ReleaseSlot,
    SlotMovesView,
    SlotReply,
    ThawSlot,
    expect,
)
from actors.topology import Topology
from switch.routing.router import Router

log = logging.getLogger("payswitch.slots")
BUSY_POLL_S = 0.05
LoadTopology = Callable[[], Topology]
SaveMove = Callable[[int, int, int], Topology]  # (slot, shard, epoch) -> the saved topology


class SlotMoveRefused(Exception):
    """The move was not made (nothing changed), or stopped where asking again finishes it."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status, self.code, self.message = status, code, message


@dataclass(frozen=True)
class SlotMoved:
    slot: int
    from_shard: int
    to_shard: int
    epoch: int
    accounts: int
    transfers: int
    seconds: float
    resumed: bool

    def json(self) -> dict[str, object]:
        return {"slot": self.slot, "from_shard": self.from_shard, "to_shard": self.to_shard,
                "epoch": self.epoch, "accounts": self.accounts, "transfers": self.transfers,
                "seconds": round(self.seconds, 3), "resumed": self.resumed}


async def move_slot(router: Router, load: LoadTopology, save: SaveMove, slot: int,
                    to_shard: int, busy_timeout_s: float = 10.0) -> SlotMoved:
    started = time.monotonic()
    topology = load()
    if not 0 <= slot < topology.slots:
        raise SlotMoveRefused(422, "slot_unknown", f"slot {slot} does not exist: this switch "
                              f"has slots 0 to {topology.slots - 1}")
    if not 0 <= to_shard < topology.shard_count:
        raise SlotMoveRefused(422, "shard_unknown", f"shard {to_shard} does not exist: this "
                              f"switch has shards 0 to {topology.shard_count - 1}")
    from_shard, epoch, resumed = await _start(router, topology, slot, to_shard)
    frozen = await _freeze(router, from_shard, FreezeSlot(slot, topology.slots, to_shard, epoch),
                           busy_timeout_s)
    assert frozen.state is not None
    imported = expect(await router.ask(to_shard, ImportSlot(
        slot, topology.slots, from_shard, epoch, frozen.state)), SlotReply)
    if imported.result != "ok":  # nothing was imported: the old shard serves the slot again
        await router.ask(from_shard, ThawSlot(slot))
        raise SlotMoveRefused(409, imported.result, f"shard {to_shard} refused slot {slot} "
                              f"({imported.result}); nothing moved")
    save(slot, to_shard, epoch)
    released = expect(await router.ask(from_shard, ReleaseSlot(slot, to_shard, epoch)),
                      SlotReply)
    if released.result != "ok":
        raise SlotMoveRefused(409, released.result, f"shard {from_shard} did not release slot "
                              f"{slot} ({released.result})")
    router.placement.move(slot, to_shard)
    moved = SlotMoved(slot, from_shard, to_shard, epoch, len(frozen.state.accounts),
                      len(frozen.state.transfers), time.monotonic() - started, resumed)
    log.warning("slot %d moved from shard %d to shard %d under epoch %d: %d accounts, %d "
                "transfers, %.3f s", slot, from_shard, to_shard, epoch, moved.accounts,
                moved.transfers, moved.seconds)
    return moved


async def _start(router: Router, topology: Topology, slot: int, to_shard: int
                 ) -> tuple[int, int, bool]:
    """The shard the slot leaves and the move's epoch: a new move's, or one that stopped half
    way (the same move is finished; any other is refused until it is)."""
    views = [expect(view, SlotMovesView) for view in await router.ask_all(GetSlotMoves())]
    running = [(shard, moving, to, epoch) for shard, view in enumerate(views)
               for moving, (to, epoch) in view.frozen.items()]
    for shard, moving, to, epoch in running:
        if (moving, to) != (slot, to_shard):
            raise SlotMoveRefused(409, "slot_move_running", f"slot {moving} is being moved from "
                                  f"shard {shard} to shard {to}: finish it first (ask for that "
                                  "move again)")
        return shard, epoch, True
    from_shard = topology.slot_table[slot]
    if from_shard == to_shard:
        raise SlotMoveRefused(409, "slot_already_there", f"slot {slot} is on shard {to_shard} "
                              "already; nothing moved")
    return from_shard, topology.epoch + 1, False


async def _freeze(router: Router, shard: int, freeze: FreezeSlot, busy_timeout_s: float
                  ) -> SlotReply:
    deadline = time.monotonic() + busy_timeout_s
    while True:
        reply = expect(await router.ask(shard, freeze), SlotReply)
        if reply.result == "ok":
            return reply
        if reply.result != "slot_busy":
            raise SlotMoveRefused(409, reply.result, f"shard {shard} refused to move slot "
                                  f"{freeze.slot}: {reply.result}")
        if time.monotonic() > deadline:
            raise SlotMoveRefused(409, "slot_busy", f"slot {freeze.slot} still has "
                                  f"{reply.in_doubt} transfers in doubt on shard {shard} after "
                                  f"{busy_timeout_s:g} s; nothing moved: try again")
        await asyncio.sleep(BUSY_POLL_S)


def moved_in(topology: Topology, slot: int, shard: int, epoch: int) -> Topology:
    """The topology with the slot on `shard`, at least at `epoch`."""
    table = list(topology.slot_table)
    table[slot] = shard
    return msgspec.structs.replace(topology, slot_table=table,
                                   epoch=max(topology.epoch, epoch)).check()
