"""Which commands a shard refuses because of a slot move (actors/ledger/slots.py).

A command is about the ids it names: an account it changes or reads, a transfer whose id
this shard indexes as its home, a pending transfer claimed or settled here. While one of
them is in a slot being moved away, the command is refused with `slot_moving` (503: the
move takes a moment); once the slot has gone, with `slot_moved` and the shard it went to
(the router asks there, and remembers). A settle names the sides it expects here: one that
expects a side this shard gave away is refused (a router that has not heard of the move
would settle the other side only). The check costs nothing until a slot or account has
moved from or through this shard.
"""

from __future__ import annotations

from collections.abc import Iterator

from actors.ledger.chains import ChainPart
from actors.ledger.model import Roles, Transfer
from actors.ledger.slots import SlotMovesState
from actors.ledger.state import LedgerState
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
    Finalize,
    FinalizeClaim,
    GetAccount,
    GetPendingStatus,
    GetTransfer,
    ProbePart,
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


def refusal(command: Command, ledger: LedgerState) -> Failed | None:
    """Why this shard must not run the command now, or None."""
    moves = ledger.slot_moves
    pins = bool(moves.frozen_accounts or moves.moved_accounts or moves.adopted_accounts)
    for key in _keys(command, ledger):
        if pins:
            refused = _pin_refusal(key, moves)
            if refused is not None:
                return refused
            if moves.pinned_here(key):
                continue  # served here, whichever shard its slot is on
        slot = slot_of(key, moves.slots)
        leaving = moves.frozen.get(slot)
        if leaving is not None:
            return Failed(FAILED_SLOT_MOVING, f"slot {slot} is moving to shard {leaving[0]}: "
                          "retry in a moment", slot, leaving[0])
        gone = moves.moved.get(slot)
        if gone is not None:
            return Failed(FAILED_SLOT_MOVED, f"slot {slot} is on shard {gone}", slot, gone)
    return None


def _pin_refusal(key: str, moves: SlotMovesState) -> Failed | None:
    leaving = moves.frozen_accounts.get(key)
    if leaving is not None:
        return Failed(FAILED_SLOT_MOVING, f"{key} is moving to shard {leaving[0]}: retry in a "
                      "moment", slot_of(key, moves.slots), leaving[0], key)
    gone = moves.moved_accounts.get(key)
    if gone is not None:
        shard, pinned = gone
        return Failed(FAILED_SLOT_MOVED, f"{key} is on shard {shard}"
                      f"{' (pinned)' if pinned else ' (unpinned)'}", slot_of(key, moves.slots),
                      shard, key, pinned)
    return None


def _keys(command: Command, ledger: LedgerState) -> Iterator[str]:
    if isinstance(command, Settle | Finalize):  # the sides it expects, else those held here
        if isinstance(command, Settle) and command.accounts:
            yield from command.accounts
            return
        held = ledger.reservations.get(command.pending_id if isinstance(command, Settle)
                                       else command.transfer_id)
        if held is not None:
            yield from _sides(held.transfer, held.roles)
    elif isinstance(command, CreateAccount):
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
    elif isinstance(command, ProbePart):
        yield from command.accounts
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
