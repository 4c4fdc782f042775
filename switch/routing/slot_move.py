"""Moving a slot to another shard, online: the steps of actors/ledger/slots.py, driven by
whichever ingress process the operator asked (`POST /v1/cluster/slot-moves`, or `payswitch
slots move`), through its router.

1. Freeze on the old shard: asked again (every 50 ms, up to `busy_timeout_s`) while something
   about the slot waits for a decision there; then the shard refuses every command about the
   slot, and answers with everything it holds for it.
2. Import on the new shard: asked again the same way while a part there of one of the slot's
   transfers waits for its decision (made already: the home committed, the word is on its way).
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
import dataclasses
import logging
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass

import msgspec

from actors.codec import encode_commands
from actors.messages import (
    AccountView,
    FreezeSlot,
    GetAccount,
    GetSlotMoves,
    GetTransfer,
    ImportSlot,
    ReleaseSlot,
    SlotMovesView,
    SlotReply,
    ThawSlot,
    TransferView,
    expect,
)
from actors.shard.data_port import FRAME_BYTES_MAX
from actors.topology import PINNED_FORMAT_VERSION, Placement, Topology, slot_of
from switch.routing.router import Router

log = logging.getLogger("payswitch.slots")
BUSY_POLL_S = 0.05
# What one import may carry: one batch on a shard's data port (actors/shard/data_port.py
# refuses larger), and one log record shipped to its follower.
IMPORT_BYTES_MAX = FRAME_BYTES_MAX // 2
LoadTopology = Callable[[], Topology]
SaveMove = Callable[[int, int, int, str], Topology]  # (slot, shard, epoch, account) -> saved


async def follow_saved(placement: Placement, changed: Callable[[bool], Topology | None],
                       interval_s: float) -> None:
    """Forever: take the saved topology into this router's placement when it changed, so
    a move or failover another ingress process made is known here within `interval_s`
    (before that, a shard's `slot_moved` answer teaches it, command by command)."""
    while True:
        try:
            # A move learned from a shard's answer since the last adopted (it carries no
            # epoch: a late answer may name an older shard): the file, saved before any
            # shard let a slot go, is read again whether or not it changed, and wins.
            saved = changed(placement.learned)
        except OSError as error:  # looked at again next time
            log.warning("the saved topology could not be read: %s", error)
            saved = None
        if saved is not None and placement.adopt(saved):
            log.debug("topology under epoch %d taken as saved", saved.epoch)
        await asyncio.sleep(interval_s)


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
    account: str = ""  # a pin's
    made_room: int = 0  # a pin `alone`: the slots and pins moved off its shard first

    def json(self) -> dict[str, object]:
        return {"slot": self.slot, "from_shard": self.from_shard, "to_shard": self.to_shard,
                "epoch": self.epoch, "accounts": self.accounts, "transfers": self.transfers,
                "seconds": round(self.seconds, 3), "resumed": self.resumed,
                **({"account_id": self.account, "made_room": self.made_room}
                   if self.account else {})}


@dataclass(frozen=True)
class Unit:
    """What moves: a slot, or (a pin) one account, which is in `slot`."""

    slot: int
    account: str = ""

    def __str__(self) -> str:
        return f"account {self.account}" if self.account else f"slot {self.slot}"


async def move_slot(router: Router, load: LoadTopology, save: SaveMove, slot: int,
                    to_shard: int, busy_timeout_s: float = 10.0) -> SlotMoved:
    topology = load()
    if not 0 <= slot < topology.slots:
        raise SlotMoveRefused(422, "slot_unknown", f"slot {slot} does not exist: this switch "
                              f"has slots 0 to {topology.slots - 1}")
    return await _move(router, load, save, topology, Unit(slot), to_shard, busy_timeout_s)


async def pin_account(router: Router, load: LoadTopology, save: SaveMove, account: str,
                      to_shard: int, busy_timeout_s: float = 10.0, alone: bool = False
                      ) -> SlotMoved:
    """The account alone to `to_shard` (pinned there); to its slot's shard: unpinned.
    `alone`: first every other slot and pinned account leaves that shard, so that the
    account has it to itself (each moved as `slots move` would, one at a time)."""
    started = time.monotonic()
    topology = load()
    if not 0 <= to_shard < topology.shard_count:  # before anything moves
        raise SlotMoveRefused(422, "shard_unknown", f"shard {to_shard} does not exist: this "
                              f"switch has shards 0 to {topology.shard_count - 1}")
    made_room = 0
    if alone:  # what the pin itself would refuse, refused before anything moves
        await _pinnable(router, topology, account, to_shard)
        made_room = await _make_room(router, load, save, to_shard, account, busy_timeout_s)
    topology = load()
    pinned = await _move(router, load, save, topology, Unit(
        slot_of(account, topology.slots), account), to_shard, busy_timeout_s)
    return dataclasses.replace(pinned, made_room=made_room,
                               seconds=time.monotonic() - started)


async def _pinnable(router: Router, topology: Topology, account: str, to_shard: int) -> None:
    if topology.pins.get(account) == to_shard:
        raise SlotMoveRefused(409, "slot_already_there", f"account {account} is on shard "
                              f"{to_shard} already; nothing moved")
    shard = router.shard_of(account)
    view = expect(await router.ask(shard, GetAccount(account)), AccountView)
    if view.account is None:
        raise SlotMoveRefused(404, "account_not_found", f"no account {account}; nothing moved")
    if account not in topology.pins and expect(await router.ask(
            shard, GetTransfer(account)), TransferView).transfer is not None:
        raise SlotMoveRefused(409, "account_id_shared", f"{account} is also a transfer's id: "
                              "it cannot be pinned; nothing moved")


async def _make_room(router: Router, load: LoadTopology, save: SaveMove, shard: int,
                     account: str, busy_timeout_s: float) -> int:
    """Move every slot off `shard` (each to the other shard with the fewest slots) and
    unpin every other account pinned there; returns how many moved."""
    topology = load()
    if topology.shard_count < 2:
        raise SlotMoveRefused(409, "no_other_shard", "a switch of one shard cannot give an "
                              "account a shard of its own")
    moved = 0
    for other in [pinned for pinned, on in topology.pins.items() if on == shard and
                  pinned != account]:
        home = topology.slot_table[slot_of(other, topology.slots)]
        target = home if home != shard else _least_loaded(topology, shard)
        await _move(router, load, save, load(), Unit(slot_of(other, topology.slots), other),
                    target, busy_timeout_s)
        moved += 1
    for slot in [slot for slot, on in enumerate(topology.slot_table) if on == shard]:
        now = load()
        await _move(router, load, save, now, Unit(slot), _least_loaded(now, shard),
                    busy_timeout_s)
        moved += 1
    return moved


def _least_loaded(topology: Topology, leaving: int) -> int:
    counts = Counter(topology.slot_table)
    return min((shard for shard in range(topology.shard_count) if shard != leaving),
               key=lambda shard: (counts[shard], shard))


async def _move(router: Router, load: LoadTopology, save: SaveMove, topology: Topology,
                unit: Unit, to_shard: int, busy_timeout_s: float) -> SlotMoved:
    started = time.monotonic()
    if not 0 <= to_shard < topology.shard_count:
        raise SlotMoveRefused(422, "shard_unknown", f"shard {to_shard} does not exist: this "
                              f"switch has shards 0 to {topology.shard_count - 1}")
    from_shard, epoch, resumed = await _start(router, topology, unit, to_shard)
    slot, slots, account = unit.slot, topology.slots, unit.account
    pinned = bool(account) and topology.slot_table[slot] != to_shard  # else unpinned
    frozen = await _freeze(router, from_shard, FreezeSlot(slot, slots, to_shard, epoch,
                                                          account), busy_timeout_s)
    assert frozen.state is not None
    importing = ImportSlot(slot, slots, from_shard, epoch, frozen.state, account, pinned)
    size = len(encode_commands([importing]))
    if size > IMPORT_BYTES_MAX:  # a shard's data port takes no larger batch: nothing moves
        await router.ask(from_shard, ThawSlot(slot, account))
        raise SlotMoveRefused(409, "slot_too_large", f"{unit} holds {size:,} bytes, more than "
                              f"a move carries ({IMPORT_BYTES_MAX:,}); nothing moved")
    # A part of one of its transfers may still wait there for a decision made already (the
    # home committed, the part's word is on its way): the slot stays frozen meanwhile.
    imported = await _ask_while_busy(router, to_shard, importing, busy_timeout_s)
    if imported.result != "ok":  # nothing was imported: the old shard serves it again
        await router.ask(from_shard, ThawSlot(slot, account))
        raise SlotMoveRefused(409, imported.result, f"shard {to_shard} refused {unit} "
                              f"({imported.result}); nothing moved")
    save(slot, to_shard, epoch, account)
    released = expect(await router.ask(from_shard, ReleaseSlot(
        slot, to_shard, epoch, account, pinned, frozen.state.homed_count)), SlotReply)
    if released.result != "ok":
        raise SlotMoveRefused(409, released.result, f"shard {from_shard} did not release "
                              f"{unit} ({released.result})")
    router.placement.move(slot, to_shard, account, pinned, epoch)
    moved = SlotMoved(slot, from_shard, to_shard, epoch, len(frozen.state.accounts),
                      len(frozen.state.transfers), time.monotonic() - started, resumed, account)
    log.warning("%s moved from shard %d to shard %d under epoch %d: %d accounts, %d "
                "transfers, %.3f s", unit, from_shard, to_shard, epoch, moved.accounts,
                moved.transfers, moved.seconds)
    return moved


async def _start(router: Router, topology: Topology, unit: Unit, to_shard: int
                 ) -> tuple[int, int, bool]:
    """The shard it leaves and the move's epoch: a new move's, or one that stopped half way
    (the same move is finished; any other is refused until it is)."""
    views = [expect(view, SlotMovesView) for view in await router.ask_all(GetSlotMoves())]
    running = [(shard, Unit(moving), to, epoch) for shard, view in enumerate(views)
               for moving, (to, epoch) in view.frozen.items()] + [
        (shard, Unit(slot_of(account, topology.slots), account), to, epoch)
        for shard, view in enumerate(views)
        for account, (to, epoch) in view.frozen_accounts.items()]
    for shard, moving, to, epoch in running:
        if (moving, to) != (unit, to_shard):
            raise SlotMoveRefused(409, "slot_move_running", f"{moving} is being moved from "
                                  f"shard {shard} to shard {to}: finish it first (ask for that "
                                  "move again)")
        return shard, epoch, True
    from_shard = topology.pins.get(unit.account, topology.slot_table[unit.slot]) \
        if unit.account else topology.slot_table[unit.slot]
    if from_shard == to_shard:
        raise SlotMoveRefused(409, "slot_already_there", f"{unit} is on shard {to_shard} "
                              "already; nothing moved")
    return from_shard, topology.epoch + 1, False


async def _freeze(router: Router, shard: int, freeze: FreezeSlot, busy_timeout_s: float
                  ) -> SlotReply:
    reply = await _ask_while_busy(router, shard, freeze, busy_timeout_s)
    if reply.result == "ok":
        return reply
    unit = Unit(freeze.slot, freeze.account)
    if reply.result == "slot_busy":
        raise SlotMoveRefused(409, "slot_busy", f"{unit} still has {reply.in_doubt} "
                              f"transfers in doubt on shard {shard} after "
                              f"{busy_timeout_s:g} s; nothing moved: try again")
    status = 404 if reply.result == "account_not_found" else 409
    raise SlotMoveRefused(status, reply.result, f"shard {shard} refused to move {unit}: "
                          f"{reply.result}; nothing moved")


async def _ask_while_busy(router: Router, shard: int, command: FreezeSlot | ImportSlot,
                          busy_timeout_s: float) -> SlotReply:
    """Asked again every 50 ms while the shard answers `slot_busy` (something about the
    slot waits there for a decision), up to `busy_timeout_s`: the last answer."""
    deadline = time.monotonic() + busy_timeout_s
    while True:
        reply = expect(await router.ask(shard, command), SlotReply)
        if reply.result != "slot_busy" or time.monotonic() > deadline:
            return reply
        await asyncio.sleep(BUSY_POLL_S)


def moved_in(topology: Topology, slot: int, shard: int, epoch: int, account: str = ""
             ) -> Topology:
    """The topology with the slot on `shard` (or the account pinned there, or unpinned if
    that is its slot's shard), at least at `epoch`."""
    table, pins = list(topology.slot_table), dict(topology.pins)
    if not account:
        table[slot] = shard
    elif table[slot_of(account, topology.slots)] == shard:
        pins.pop(account, None)
    else:
        pins[account] = shard
    version = max(topology.format_version, PINNED_FORMAT_VERSION) if pins else \
        topology.format_version
    return msgspec.structs.replace(topology, slot_table=table, pins=pins, format_version=version,
                                   epoch=max(topology.epoch, epoch)).check()
