"""The pieces of a ledger's live state as values: what a snapshot stores, and what a slot
move carries from one shard to another (actors/ledger/slots.py)."""

from __future__ import annotations

import msgspec

from actors.ledger.limits import Limits, VelocityState
from actors.ledger.model import Account, Transfer
from actors.ledger.pending import PendingState, PendingStatus
from actors.ledger.store import Balances, ChainDecision, StoredTransfer


class Reservation(msgspec.Struct, array_like=True, gc=False):
    """A side of a transfer held as pending on this shard: a cross-shard part waiting for its
    home's decision (in doubt), or a part of a committed pending transfer (held)."""

    transfer: Transfer
    roles: int
    attempt: int
    held: bool = False
    chain: str = ""  # a linked chain's member: the chain's key (its first member's id)
    member: int = 0  # and its place in the chain


class PendingEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    pending_id: str
    state: PendingState


class LimitsEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    account_id: str
    limits: Limits


class VelocityEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    account_id: str
    window: VelocityState


class SettlingEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    pending_id: str
    since_ns: int


class FenceEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    key: str  # a transfer's id, or a chain's key
    attempts: list[int]
    chain: bool


class HistoryEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An account's posted transfers, oldest first."""

    account_id: str
    transfer_ids: list[str]


class ChainEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    key: str
    decision: ChainDecision


class PendingFinalEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    pending_id: str
    status: PendingStatus


class BalancesEntry(msgspec.Struct, array_like=True, frozen=True, gc=False):
    account_id: str
    points: list[Balances]


class SlotState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Everything one shard holds for one slot, as a move carries it to the next: the live
    state (its accounts, with limits and velocity windows; the held parts of pending
    transfers that touch them, with only their roles here; pending transfers, fences and
    settling work homed in the slot) and what the store keeps for them (transfers homed in
    the slot and those in its accounts' histories, chains' decisions, pending transfers'
    outcomes, balance histories)."""

    accounts: list[Account]
    limits: list[LimitsEntry]
    velocity: list[VelocityEntry]
    reservations: list[Reservation]
    pending: list[PendingEntry]
    settling: list[SettlingEntry]
    fences: list[FenceEntry]
    homed_count: int
    transfers: list[StoredTransfer]
    histories: list[HistoryEntry]
    chains: list[ChainEntry]
    pending_finals: list[PendingFinalEntry]
    balances: list[BalancesEntry]
    # The slot's accounts pinned to other shards: its new shard sends their commands there
    pinned_away: dict[str, int] = {}
