"""Which commands a shard refuses because of a slot move (actors/ledger/slots.py).

A command is about the ids it names: an account it changes or reads, a transfer whose id
this shard indexes as its home, a pending transfer claimed or settled here. While one of
them is in a slot being moved away, the command is refused with `slot_moving` (503: the
move takes a moment); once the slot has gone, with `slot_moved` and the shard it went to
(the router asks there, and remembers). A settle of a pending transfer whose side moved with
its account is refused unless it names the new holder among its places (then this shard
settles the side it kept): a router that has not heard of the move would settle one side.
The check costs nothing until a slot has moved from or through this shard.
"""

from __future__ import annotations

from collections.abc import Iterator

from actors.ledger.chains import ChainPart
from actors.ledger.model import Roles, Transfer
from actors.ledger.slots import SlotMovesState
from actors.messages import (
    FAILED_SLOT_MOVED,
    FAILED_SLOT_MOVING,
    AccountTransfers,
    BalanceHistory,
    ClaimPending,
    Command,
    Commit,
    CommitChain,
    CreateAccount,
    Failed,
    FinalizeClaim,
    GetAccount,
    GetPendingStatus,
    GetTransfer,
    Reserve,
    ReserveChain,
    Resolve,
    ResolveChain,
    SetLimits,
    Settle,
    SettleDone,
    Stage,
)
from actors.topology import slot_of


def refusal(command: Command, moves: SlotMovesState) -> Failed | None:
    """Why this shard must not run the command now, or None."""
    if isinstance(command, Settle):
        moved = moves.parts_moved.get(command.pending_id)
        if moved is not None and moved[1] not in command.places:
            slot, shard = moved
            return Failed(FAILED_SLOT_MOVED, f"a side of {command.pending_id} moved with slot "
                          f"{slot} to shard {shard}", slot, shard)
    for key in _keys(command):
        slot = slot_of(key, moves.slots)
        leaving = moves.frozen.get(slot)
        if leaving is not None:
            return Failed(FAILED_SLOT_MOVING, f"slot {slot} is moving to shard {leaving[0]}: "
                          "retry in a moment", slot, leaving[0])
        gone = moves.moved.get(slot)
        if gone is not None:
            return Failed(FAILED_SLOT_MOVED, f"slot {slot} is on shard {gone}", slot, gone)
    return None


def _keys(command: Command) -> Iterator[str]:
    if isinstance(command, CreateAccount):
        yield command.account.id
    elif isinstance(command, SetLimits | GetAccount | AccountTransfers | BalanceHistory):
        yield command.account_id
    elif isinstance(command, Commit | Stage):
        yield command.transfer.id
        yield from _sides(command.transfer, command.roles)
    elif isinstance(command, Reserve):
        yield from _sides(command.transfer, command.roles)
    elif isinstance(command, ReserveChain | CommitChain):
        if isinstance(command, CommitChain):
            yield command.chain
        for part in command.parts:
            yield from _part(part)
    elif isinstance(command, ResolveChain):
        yield command.chain
    elif isinstance(command, Resolve | GetTransfer):
        yield command.transfer_id
    elif isinstance(command, ClaimPending):
        yield command.resolving.pending_id
    elif isinstance(command, FinalizeClaim | GetPendingStatus):
        yield command.pending_id
    elif isinstance(command, SettleDone):
        yield from command.pending_ids


def _sides(transfer: Transfer, roles: int) -> Iterator[str]:
    if roles & Roles.debit:
        yield transfer.debit_account_id
    if roles & Roles.credit:
        yield transfer.credit_account_id


def _part(part: ChainPart) -> Iterator[str]:
    yield from _sides(part.transfer, part.roles)
    if part.roles & Roles.home:
        yield part.transfer.id
    if part.roles & Roles.claim:
        yield part.transfer.pending_id
