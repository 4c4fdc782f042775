"""Slot moves in the ledger: what a shard holds for one slot, taken out whole on the shard it
leaves and put in whole on the shard it joins (docs/CLUSTER.md, "Slot moves").

A move goes in four durable steps, each an event applied by `LedgerState.apply` (so recovery,
followers and the WAL tool see the same state):
  1. `SlotFrozen` on the old shard: only when nothing about the slot is in doubt there (no
     cross-shard part waiting for its home's decision, no pending transfer claimed by a post
     or void under way); from then it refuses every command about the slot, and the reply
     to the command that froze it carries the slot's state (`export`);
  2. `SlotImported` on the new shard: that state, from then served there;
  3. the topology names the new shard for the slot (the mover saves it, under a new epoch);
  4. `SlotMovedOut` on the old shard: its live state for the slot is let go of (`drop`), and
     commands about the slot are answered with where it went (routers learn it from that).
At no moment do two shards accept commands about the slot: the old one refuses them from
step 1, the new one is sent none before step 3. Held parts of pending transfers move with
the accounts they hold (a part's roles split when its other side stays).
"""

from __future__ import annotations

import zlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import msgspec

from actors.ledger.limits import Velocity
from actors.ledger.model import Account, Roles
from actors.ledger.parts import (
    BalancesEntry,
    ChainEntry,
    FenceEntry,
    HistoryEntry,
    LimitsEntry,
    PendingEntry,
    PendingFinalEntry,
    Reservation,
    SettlingEntry,
    SlotState,
    VelocityEntry,
)
from actors.ledger.store import Balances
from actors.topology import slot_of

if TYPE_CHECKING:
    from actors.ledger.state import LedgerState

InSlot = Callable[[str], bool]
_PAGE = 1000
_TIME_MAX = 2**64 - 1


class SlotMovesState(msgspec.Struct, array_like=True, gc=False):
    """A shard's part in slot moves and pins, as a snapshot keeps it. A pin moves one
    account (everything keyed by its id) rather than a slot: the same steps."""

    slots: int = 0  # the topology's slot count (0: no move ever touched this shard)
    frozen: dict[int, tuple[int, int]] = msgspec.field(default_factory=dict)  # slot: (to, epoch)
    moved: dict[int, int] = msgspec.field(default_factory=dict)  # slot: the shard it went to
    adopted: dict[int, int] = msgspec.field(default_factory=dict)  # slot: the move's epoch
    # Unused since settles name the sides they expect (kept: 471fada's snapshots hold it).
    parts_moved: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
    frozen_accounts: dict[str, tuple[int, int]] = msgspec.field(default_factory=dict)
    # Accounts that left: the shard they went to, and whether they were pinned there (else
    # unpinned: back on their slot's shard).
    moved_accounts: dict[str, tuple[int, bool]] = msgspec.field(default_factory=dict)
    # Accounts that came here alone: (the move's epoch, whether pinned here; else unpinned,
    # this being their slot's shard).
    adopted_accounts: dict[str, tuple[int, bool]] = msgspec.field(default_factory=dict)

    def pinned_here(self, key: str) -> bool:
        adopted = self.adopted_accounts.get(key)
        return adopted is not None and adopted[1]

    def unit(self, slot: int, account: str, slots: int = 0) -> InSlot:
        """What a move carries from here: every key of the slot but accounts pinned here
        (they stay), or (a pin) the one account's id."""
        if account:
            return account.__eq__
        in_slot = in_unit(slot, slots or self.slots)
        if not self.adopted_accounts:
            return in_slot
        return lambda key: in_slot(key) and not self.pinned_here(key)

    @property
    def closed(self) -> bool:
        """Whether anything is refused here (the hot path checks nothing otherwise)."""
        return bool(self.frozen or self.moved or self.frozen_accounts or self.moved_accounts)

    def leaving(self, key: str) -> bool:
        """Whether the key is in a slot (or is an account) frozen here for a move."""
        if key in self.frozen_accounts:
            return True
        return bool(self.frozen) and slot_of(key, self.slots) in self.frozen and \
            not self.pinned_here(key)

    def running(self) -> list[tuple[int, str, int, int]]:
        """Moves under way from here: (slot, account or "", to shard, epoch)."""
        return [(slot, "", to, epoch) for slot, (to, epoch) in self.frozen.items()] + [
            (-1, account, to, epoch) for account, (to, epoch) in self.frozen_accounts.items()]


def in_unit(slot: int, slots: int, account: str = "") -> InSlot:
    """What a move carries: every key of the slot, or (a pin) the one account's id."""
    if account:
        return account.__eq__
    crc32 = zlib.crc32  # slot_of, inlined: it runs over every account and stored key
    return lambda key: crc32(key.encode()) % slots == slot


def roles_in_slot(reservation: Reservation, in_slot: InSlot) -> int:
    transfer, roles, moved = reservation.transfer, reservation.roles, 0
    if roles & Roles.debit and in_slot(transfer.debit_account_id):
        moved |= Roles.debit
    if roles & Roles.credit and in_slot(transfer.credit_account_id):
        moved |= Roles.credit
    if roles & Roles.home and in_slot(transfer.id):
        moved |= Roles.home
    return moved


def in_doubt(state: LedgerState, in_slot: InSlot) -> int:
    """How many things about the slot wait for a decision here (a move waits for none)."""
    parts = sum(1 for r in state.reservations.values()
                if not r.held and (roles_in_slot(r, in_slot) or (r.chain and in_slot(r.chain))
                                   or in_slot(r.transfer.id)))
    claims = sum(1 for pending_id, s in state.pending.items()
                 if s.claim is not None and in_slot(pending_id))
    return parts + claims


def export(state: LedgerState, in_slot: InSlot) -> SlotState:
    """Everything this shard holds for the slot (nothing of it in doubt: see `in_doubt`)."""
    store = state.store
    table = state.accounts
    accounts = [msgspec.structs.replace(table[i]) for i in table if in_slot(i)]
    moved_ids = {a.id for a in accounts}
    histories = [HistoryEntry(a.id, _history_ids(state, a)) for a in accounts]
    homed, chains, finals = store.slot_entries(in_slot)
    transfers = {stored.transfer.id: stored for stored in homed}
    for history in histories:
        for transfer_id in history.transfer_ids:
            if transfer_id not in transfers:
                stored = store.transfer(transfer_id)
                if stored is None:
                    raise AssertionError(f"history names {transfer_id}, which is not indexed")
                transfers[transfer_id] = stored
    reservations = []
    for reservation in state.reservations.values():
        roles = roles_in_slot(reservation, in_slot)
        if roles:
            reservations.append(msgspec.structs.replace(reservation, roles=roles))
    return SlotState(
        accounts=accounts,
        limits=[LimitsEntry(i, limits) for i, limits in state.limits.items() if i in moved_ids],
        velocity=[VelocityEntry(i, v.state()) for i, v in state.velocity.items()
                  if i in moved_ids],
        reservations=reservations,
        pending=[PendingEntry(i, s) for i, s in state.pending.items() if in_slot(i)],
        settling=[SettlingEntry(i, since) for i, since in state.settling.items() if in_slot(i)],
        fences=[FenceEntry(key, sorted(attempts), chain)
                for chain, fenced in ((False, state.fenced_transfers),
                                      (True, state.fenced_chains))
                for key, attempts in fenced.items() if in_slot(key)],
        homed_count=len(homed),
        transfers=list(transfers.values()),
        histories=histories,
        chains=[ChainEntry(key, decision) for key, decision in chains],
        pending_finals=[PendingFinalEntry(i, status) for i, status in finals],
        balances=[BalancesEntry(a.id, _balance_points(state, a.id)) for a in accounts],
        pinned_away={account: shard for account, (shard, pinned)
                     in state.slot_moves.moved_accounts.items() if pinned and in_slot(account)},
    )


def _history_ids(state: LedgerState, account: Account) -> list[str]:
    newest_first: list[str] = []
    before: int | None = None
    while True:
        page, before = state.store.history(account.id, account.history_head, _PAGE, before)
        newest_first += [transfer.id for transfer in page]
        if before is None:
            return newest_first[::-1]


def _balance_points(state: LedgerState, account_id: str) -> list[Balances]:
    points: list[Balances] = []
    since = 0
    while True:
        page, following = state.store.balance_history(account_id, since, _TIME_MAX, _PAGE)
        points += page
        if following is None:
            return points
        since = following


def drop(state: LedgerState, slot: int, account: str, homed_count: int) -> None:
    """The slot (or pinned account) has left: its live state here goes (the store keeps
    what it wrote, unread: every command about it is refused here from now on)."""
    moves = state.slot_moves
    in_slot = moves.unit(slot, account)
    leaving = {account_id for account_id in state.accounts if in_slot(account_id)}
    state.count_balances([state.accounts[i] for i in leaving], -1)
    state.accounts = state.accounts.without(leaving)
    _forget(in_slot, state.limits, state.velocity)
    for transfer_id, reservation in list(state.reservations.items()):
        roles = roles_in_slot(reservation, in_slot)
        if roles:
            reservation.roles &= ~roles
            if not reservation.roles:
                del state.reservations[transfer_id]
    # Fences stay too (copied, not moved): one may guard a side that stays here.
    _forget(in_slot, state.pending, state.settling)
    state.homed_count -= homed_count  # counted on the new shard from now
    state.rebuild_expiries()


def _forget(in_slot: InSlot, *tables: dict[str, Any]) -> None:
    for table in tables:
        for key in [key for key in table if in_slot(key)]:
            del table[key]


def adopt(state: LedgerState, moved: SlotState, in_unit: InSlot) -> None:
    """The slot's state from its old shard, served here from now on. A transfer homed in it
    replaces a copy this shard kept as one of its parts' (the home's names the attempt that
    committed it: redrive's parts are answered by it); any other is kept as a copy."""
    store = state.store
    for stored in moved.transfers:
        if in_unit(stored.transfer.id):
            store.replace_transfer(stored)
        else:
            store.add_transfer(stored, if_absent=True)
    heads: dict[str, int] = {}
    for history in moved.histories:
        head = 0
        for transfer_id in history.transfer_ids:
            head = store.add_history(history.account_id, transfer_id, head)
        heads[history.account_id] = head
    for account in moved.accounts:
        state.accounts.add(msgspec.structs.replace(
            account, history_head=heads.get(account.id, 0)))
    for entry in moved.balances:
        store.add_balance_points(entry.account_id, entry.points)
    for chain in moved.chains:
        if store.chain(chain.key) is None:
            store.add_chain(chain.key, chain.decision)
    for final in moved.pending_finals:
        store.add_pending_final(final.pending_id, final.status)
    state.limits.update({entry.account_id: entry.limits for entry in moved.limits})
    state.velocity.update({entry.account_id: Velocity.from_state(entry.window)
                           for entry in moved.velocity})
    for reservation in moved.reservations:
        here = state.reservations.get(reservation.transfer.id)
        if here is None:
            state.reservations[reservation.transfer.id] = msgspec.structs.replace(reservation)
        else:  # the transfer's other side is held here already: one part, both roles
            here.roles |= reservation.roles
        state.slot_moves.parts_moved.pop(reservation.transfer.id, None)
    state.pending.update({entry.pending_id: entry.state for entry in moved.pending})
    state.settling.update({entry.pending_id: entry.since_ns for entry in moved.settling})
    for fence in moved.fences:
        fenced = state.fenced_chains if fence.chain else state.fenced_transfers
        fenced.setdefault(fence.key, set()).update(fence.attempts)
    state.homed_count += moved.homed_count
    state.rebuild_expiries()
    state.count_balances(moved.accounts, 1)
