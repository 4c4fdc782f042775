"""A shard's ledger state, and `apply`: the only code that changes it.

The host applies the events a decision returned; recovery applies the events it reads back
from the log; the WAL tool's audit does the same. So live state and recovered state come
from one piece of code. Memory holds what is live (accounts, parts held here, open pending
transfers, limits, per-ledger totals); what only grows goes to the `LedgerStore`.
"""

from __future__ import annotations

import heapq
from collections.abc import Callable, Iterable
from typing import Any

from actors.ledger.accounts import AccountTable
from actors.ledger.events import (
    AccountCreated,
    AlarmThresholdSet,
    AttemptFenced,
    ChainCommitted,
    Event,
    HeldSettled,
    KeyCreated,
    KeyRevoked,
    LimitsChanged,
    NdcAlarm,
    PartCommitted,
    ParticipantCreated,
    ParticipantStatusChanged,
    PendingClaimed,
    PendingClaimReleased,
    PendingExpired,
    PendingResolved,
    PendingSettled,
    ReservationHeld,
    ReservationPosted,
    ReservationVoided,
    SlotFrozen,
    SlotImported,
    SlotMovedOut,
    SlotThawed,
    TransferCommitted,
    TransferReserved,
)
from actors.ledger.limits import Limits, Velocity
from actors.ledger.model import (
    AMOUNT_MAX,
    BALANCE_MAX,
    CLOSED,
    CLOSING_CREDIT,
    CLOSING_DEBIT,
    HISTORY,
    PENDING,
    Account,
    Roles,
    Transfer,
)
from actors.ledger.parts import Reservation as Reservation  # its home since slot moves
from actors.ledger.pending import EXPIRED, PENDING_STATUS, PendingState, PendingStatus
from actors.ledger.registry import Registry
from actors.ledger.slots import SlotMovesState, adopt, drop, in_unit
from actors.ledger.store import ChainDecision, LedgerStore, MemoryStore, StoredTransfer

_DEBIT = Roles.debit
_CREDIT = Roles.credit
_BOTH = Roles.both
_HOME = Roles.home


class Totals:
    """Per ledger, the sums of the four balances over this shard's accounts, kept as they
    change (Python ints: exact at any size), so that nothing scans every account."""

    def __init__(self) -> None:
        self.by_ledger: dict[str, list[int]] = {}

    def add(self, ledger: str, field: int, amount: int) -> None:
        sums = self.by_ledger.get(ledger)
        if sums is None:
            sums = self.by_ledger[ledger] = [0, 0, 0, 0]
        sums[field] += amount

    @classmethod
    def of(cls, accounts: Iterable[Account]) -> Totals:
        totals = cls()
        for account in accounts:
            if account.ledger not in totals.by_ledger:  # every ledger, balances zero or not
                totals.add(account.ledger, DEBITS_POSTED, 0)
            for field, value in enumerate((account.debits_posted, account.credits_posted,
                                           account.debits_pending, account.credits_pending)):
                if value:
                    totals.add(account.ledger, field, value)
        return totals


DEBITS_POSTED, CREDITS_POSTED, DEBITS_PENDING, CREDITS_PENDING = range(4)


class LedgerState:
    def __init__(self, ledgers: Iterable[str], store: LedgerStore | None = None) -> None:
        self.ledgers = frozenset(ledgers)
        self.store: LedgerStore = store if store is not None else MemoryStore()
        self.accounts = AccountTable()
        # How many accounts a participant's key may make for it on this shard (0: no bound):
        # a rule of creation only (accounts made before stay; replay never checks it).
        self.accounts_per_participant_max = 0
        self.homed_count = 0  # transfers committed with this shard as their home
        # Commits applied by this process, at their home (recovery's replay included): a
        # rate's counter, which slot moves leave alone (homed_count moves with the slot)
        self.commits_applied = 0
        self.reservations: dict[str, Reservation] = {}
        self.pending: dict[str, PendingState] = {}  # open pending transfers homed here
        # Pending transfers homed here, final, whose held parts may not all be settled yet:
        # id -> when it became final (redrive settles them; the work follows this, not the
        # number of parts held anywhere).
        self.settling: dict[str, int] = {}
        self.limits: dict[str, Limits] = {}  # accounts with limits
        self.velocity: dict[str, Velocity] = {}  # their recent debits, for velocity limits
        self.totals = Totals()
        self.registry = Registry()
        # Attempts this home told redrive were void, or this part told recovery were absent
        # (AttemptFenced): id or chain key -> the attempts that never commit (are never
        # reserved) here. Kept until the id or chain commits or posts here (a late commit or
        # reservation then finds it taken, or is voided by its home); only crash and redrive
        # windows make them, so they stay few.
        self.fenced_transfers: dict[str, set[int]] = {}
        self.fenced_chains: dict[str, set[int]] = {}
        self.slot_moves = SlotMovesState()  # slots leaving or gone (actors/ledger/slots.py)
        self._expiries: list[tuple[int, str]] = []  # heap of (expires_at_ns, pending id)
        self._history_touched: list[Account] = []  # by the event being applied
        self._appliers: dict[type, Callable[[Any], None]] = {
            AccountCreated: self._apply_account_created,
            TransferCommitted: self._apply_transfer_committed,
            TransferReserved: self._apply_transfer_reserved,
            ReservationPosted: self._apply_reservation_posted,
            ReservationVoided: self._apply_reservation_voided,
            ReservationHeld: self._apply_reservation_held,
            PendingClaimed: self._apply_pending_claimed,
            PendingClaimReleased: self._apply_pending_claim_released,
            PendingResolved: self._apply_pending_resolved,
            PendingExpired: self._apply_pending_expired,
            HeldSettled: self._apply_held_settled,
            LimitsChanged: self._apply_limits_changed,
            ChainCommitted: self._apply_chain_committed,
            PartCommitted: self._apply_part_committed,
            PendingSettled: self._apply_pending_settled,
            ParticipantCreated: lambda e: self.registry.add_participant(e.participant),
            ParticipantStatusChanged: lambda e: self.registry.set_status(e.participant_id,
                                                                         e.status),
            KeyCreated: lambda e: self.registry.add_key(e.key),
            KeyRevoked: lambda e: self.registry.revoke(e.revoked_key_id, e.timestamp),
            AlarmThresholdSet: lambda e: self.registry.set_alarm_percent(
                e.participant_id, e.ledger, e.percent),
            NdcAlarm: lambda e: None,  # a record of what was seen: it changes no state
            AttemptFenced: self._apply_attempt_fenced,
            SlotFrozen: self._apply_slot_frozen,
            SlotThawed: self._apply_slot_thawed,
            SlotImported: self._apply_slot_imported,
            SlotMovedOut: self._apply_slot_moved_out,
        }

    # ---- reads the decisions share ----

    def stored(self, transfer_id: str) -> Transfer | None:
        found = self.store.transfer(transfer_id)
        return None if found is None else found.transfer

    def pending_status(self, pending_id: str) -> PendingStatus | None:
        state = self.pending.get(pending_id)
        if state is not None:
            return PendingStatus(state.status, state.amount_posted, state.resolution)
        return self.store.pending_final(pending_id)

    def rebuild_expiries(self) -> None:
        """After loading a snapshot: the heap of pending transfers that can still expire."""
        self._expiries = [(s.expires_at_ns, pending_id) for pending_id, s in self.pending.items()
                          if s.expires_at_ns and s.status == PENDING_STATUS]
        heapq.heapify(self._expiries)

    def count_balances(self, accounts: Iterable[Account], sign: int) -> None:
        """Accounts come (sign 1) or go (sign -1) with a slot move: the totals follow."""
        totals = self.totals
        for account in accounts:
            if account.ledger not in totals.by_ledger:
                totals.add(account.ledger, DEBITS_POSTED, 0)
            for field, value in enumerate((account.debits_posted, account.credits_posted,
                                           account.debits_pending, account.credits_pending)):
                if value:
                    totals.add(account.ledger, field, sign * value)

    # ---- application (the only mutation) ----

    def apply(self, event: Event) -> None:
        self._appliers[type(event)](event)
        if self._history_touched:
            self._note_history()

    def _note_history(self) -> None:
        for account in self._history_touched:
            self.store.add_balances(account.id, (
                account.debits_posted, account.credits_posted, account.debits_pending,
                account.credits_pending))
        self._history_touched.clear()

    def _apply_account_created(self, event: AccountCreated) -> None:
        if event.account.id in self.accounts:
            raise AssertionError(f"account {event.account.id} created twice")
        account = self.accounts.add(event.account)  # a row: the event stays as logged
        self.totals.add(account.ledger, DEBITS_POSTED, 0)  # the ledger shows from the start
        if account.flags & HISTORY:
            self._history_touched.append(account)

    def _apply_transfer_committed(self, event: TransferCommitted) -> None:
        transfer = event.transfer
        if event.attempt and self.staged(transfer.id, event.attempt) is not None:
            self._release(transfer.id)  # staged here: its debit was counted then
        elif event.roles & _DEBIT:
            self._count_debit(transfer.debit_account_id, transfer.timestamp, transfer.amount)
        self._commit(transfer, event.roles, event.attempt)

    def staged(self, transfer_id: str, attempt: int) -> Reservation | None:
        """This attempt of a cross-shard transfer staged here, at its home, undecided."""
        reservation = self.reservations.get(transfer_id)
        if reservation is None or reservation.attempt != attempt or not self.is_staged(
                transfer_id):
            return None
        return reservation

    def is_staged(self, transfer_id: str) -> bool:
        """Some attempt of this transfer is staged here, at its home, undecided."""
        reservation = self.reservations.get(transfer_id)
        return reservation is not None and not reservation.held and not reservation.chain \
            and bool(reservation.roles & _HOME)

    def _apply_part_committed(self, event: PartCommitted) -> None:
        """A chain member at its home: its id reservation becomes the commit (its debit was
        counted for velocity when it was reserved)."""
        reservation = self._release(event.transfer_id)
        self.fenced_transfers.pop(event.transfer_id, None)  # its id is taken now
        if event.resolving is not None:  # a post or void, filled from its pending transfer
            # Settling a held part of its pending transfer on this shard may have indexed it
            # already (its chain decided, this part finalized later): index it once.
            self.store.add_transfer(StoredTransfer(event.resolving.stamped(event.timestamp)),
                                    if_absent=True)
            self.homed_count += 1
            self.commits_applied += 1
            return
        transfer = reservation.transfer.stamped(event.timestamp)
        if event.amount:
            transfer = transfer.resized(event.amount)
            self._recount_debit(reservation, event.amount)
        self._commit(transfer, reservation.roles & _BOTH, 0)

    def _apply_chain_committed(self, event: ChainCommitted) -> None:
        self.store.add_chain(event.chain, ChainDecision(event.attempt, event.timestamps,
                                                        event.amounts, event.resolving))
        self.fenced_chains.pop(event.chain, None)

    # Slot moves: a slot's entries keyed by its number; a pin's by its account's id.

    def _apply_slot_frozen(self, event: SlotFrozen) -> None:
        moves = self.slot_moves
        moves.slots = event.slots
        if event.account:
            moves.frozen_accounts[event.account] = (event.to_shard, event.epoch)
        else:
            moves.frozen[event.slot] = (event.to_shard, event.epoch)

    def _apply_slot_thawed(self, event: SlotThawed) -> None:
        moves = self.slot_moves
        if event.account:
            del moves.frozen_accounts[event.account]
        else:
            del moves.frozen[event.slot]
        self.rebuild_expiries()  # its pending transfers' expiries were passed over meanwhile

    def _apply_slot_imported(self, event: SlotImported) -> None:
        moves = self.slot_moves
        moves.slots = event.slots
        adopt(self, event.state, in_unit(event.slot, event.slots, event.account))
        for account in event.state.accounts:  # here again (left before, pinned or unpinned)
            moves.moved_accounts.pop(account.id, None)
        moves.moved_accounts.update({account: (shard, True) for account, shard  # elsewhere
                                     in event.state.pinned_away.items()
                                     if not moves.pinned_here(account)})
        if event.account:
            moves.adopted_accounts[event.account] = (event.epoch, event.pinned)
        else:
            moves.moved.pop(event.slot, None)
            moves.adopted[event.slot] = event.epoch

    def _apply_slot_moved_out(self, event: SlotMovedOut) -> None:
        moves = self.slot_moves
        frozen = moves.frozen_accounts.pop(event.account) if event.account else \
            moves.frozen.pop(event.slot)
        if frozen[0] != event.to_shard:
            raise AssertionError(f"slot {event.slot} {event.account} moved out to another "
                                 "shard than frozen for")
        drop(self, event.slot, event.account, event.homed_count)
        if event.account:
            moves.moved_accounts[event.account] = (event.to_shard, event.pinned)
            moves.adopted_accounts.pop(event.account, None)
        else:
            moves.moved[event.slot] = event.to_shard
            moves.adopted.pop(event.slot, None)
            in_slot = in_unit(event.slot, moves.slots)
            for account in [a for a, (_, pinned) in moves.adopted_accounts.items()
                            if not pinned and in_slot(a)]:  # unpinned here: left with it
                del moves.adopted_accounts[account]

    def _apply_attempt_fenced(self, event: AttemptFenced) -> None:
        fenced = self.fenced_chains if event.chain else self.fenced_transfers
        fenced.setdefault(event.key, set()).add(event.attempt)

    def is_fenced(self, key: str, attempt: int, chain: bool = False) -> bool:
        fenced = self.fenced_chains if chain else self.fenced_transfers
        return attempt in fenced.get(key, ())

    def _commit(self, transfer: Transfer, roles: int, attempt: int) -> None:
        """At the transfer's home: index it, and post (or hold, if pending) its local roles."""
        self.store.add_transfer(StoredTransfer(transfer, attempt))
        self.fenced_transfers.pop(transfer.id, None)
        self.homed_count += 1
        self.commits_applied += 1
        if not transfer.flags & PENDING:
            self._post(transfer, roles, indexed=True)
            return
        expires_at_ns = transfer.timestamp + transfer.timeout_ms * 1_000_000 \
            if transfer.timeout_ms else 0
        self.pending[transfer.id] = PendingState(PENDING_STATUS, expires_at_ns)
        if expires_at_ns:
            heapq.heappush(self._expiries, (expires_at_ns, transfer.id))
        if roles:  # the home's own accounts: held at once
            self._hold(transfer, roles, attempt)

    def _apply_transfer_reserved(self, event: TransferReserved) -> None:
        transfer = event.transfer
        if event.roles & _DEBIT:
            self._count_debit(transfer.debit_account_id, transfer.timestamp, transfer.amount)
        self._hold(transfer, event.roles, event.attempt, held=False, chain=event.chain,
                   member=event.member)  # in doubt

    def _count_debit(self, account_id: str, timestamp: int, amount: int) -> None:
        velocity = self.velocity.get(account_id)
        if velocity is not None:
            velocity.record(timestamp, amount)

    def _recount_debit(self, reservation: Reservation, amount: int) -> None:
        """A reserved (in doubt) debit decided: it counts for velocity with what it moved, so
        a retry answered `exists` or a transfer failed elsewhere uses no velocity budget."""
        transfer = reservation.transfer
        if reservation.roles & _DEBIT and not reservation.held and amount != transfer.amount:
            velocity = self.velocity.get(transfer.debit_account_id)
            if velocity is not None:
                velocity.resize(transfer.timestamp, transfer.amount, amount)

    def _apply_limits_changed(self, event: LimitsChanged) -> None:
        account_id, limits, timestamp = event.account_id, event.limits, event.timestamp
        self.limits[account_id] = limits
        if not limits.velocity_max:
            self.velocity.pop(account_id, None)
            return
        window_ns = limits.velocity_window_ms * 1_000_000
        velocity = self.velocity.get(account_id)
        if velocity is None or velocity.window_ns != window_ns:
            # A new window starts from what the old one held at the change (no more is known).
            kept = [] if velocity is None else [
                debit for debit in velocity.debits if debit[0] > timestamp - velocity.window_ns]
            velocity = self.velocity[account_id] = Velocity(window_ns)
            for debit_timestamp, amount in kept:
                velocity.record(debit_timestamp, amount)

    def _hold(self, transfer: Transfer, roles: int, attempt: int, held: bool = True,
              chain: str = "", member: int = 0) -> None:
        """Add a part to pending; a closing transfer closes its account from here on."""
        amount = transfer.amount
        if transfer.id in self.reservations:
            raise AssertionError(f"transfer {transfer.id} held twice")
        if roles & _DEBIT:
            account = self.accounts[transfer.debit_account_id]
            account.debits_pending += amount
            self._changed(account, DEBITS_PENDING, amount)
            if transfer.flags & CLOSING_DEBIT:
                account.flags |= CLOSED
        if roles & _CREDIT:
            account = self.accounts[transfer.credit_account_id]
            account.credits_pending += amount
            self._changed(account, CREDITS_PENDING, amount)
            if transfer.flags & CLOSING_CREDIT:
                account.flags |= CLOSED
        self.reservations[transfer.id] = Reservation(transfer, roles, attempt, held, chain,
                                                     member)

    def _changed(self, account: Account, field: int, amount: int) -> None:
        # Every account's ledger has its sums from the account's creation on: index directly.
        self.totals.by_ledger[account.ledger][field] += amount
        if account.flags & HISTORY:
            self._history_touched.append(account)

    def _reopen(self, reservation: Reservation) -> None:
        """A closing transfer voided (or expired, or never committed): its account reopens."""
        transfer, roles = reservation.transfer, reservation.roles
        if roles & _DEBIT and transfer.flags & CLOSING_DEBIT:
            self.accounts[transfer.debit_account_id].flags &= ~CLOSED
        if roles & _CREDIT and transfer.flags & CLOSING_CREDIT:
            self.accounts[transfer.credit_account_id].flags &= ~CLOSED

    def _apply_reservation_held(self, event: ReservationHeld) -> None:
        reservation = self.reservations[event.transfer_id]
        self.fenced_transfers.pop(event.transfer_id, None)  # committed: its id is taken
        amount = event.amount
        if amount and amount < reservation.transfer.amount:  # a balancing transfer: hold less
            self._recount_debit(reservation, amount)
            self._release(event.transfer_id)
            self._hold(reservation.transfer.resized(amount), reservation.roles,
                       reservation.attempt)
            return
        reservation.held = True

    def _apply_pending_claimed(self, event: PendingClaimed) -> None:
        state = self.pending[event.pending_id]
        if state.claim is not None or state.status != PENDING_STATUS:
            raise AssertionError(f"pending transfer {event.pending_id} claimed twice")
        state.claim = event.claim

    def _apply_pending_claim_released(self, event: PendingClaimReleased) -> None:
        state = self.pending[event.pending_id]
        state.claim = None
        if state.expires_at_ns:  # it may have come due meanwhile
            heapq.heappush(self._expiries, (state.expires_at_ns, event.pending_id))

    def _apply_pending_resolved(self, event: PendingResolved) -> None:
        self.pending.pop(event.pending_id)  # final: from memory to the store
        self.store.add_pending_final(event.pending_id, PendingStatus(
            event.status, event.amount_posted, event.resolution))
        self.settling[event.pending_id] = event.resolution.timestamp

    def _apply_pending_expired(self, event: PendingExpired) -> None:
        state = self.pending.pop(event.pending_id)
        if state.status != PENDING_STATUS:
            raise AssertionError(f"pending transfer {event.pending_id} expired twice")
        self.store.add_pending_final(event.pending_id, PendingStatus(EXPIRED, 0, None))
        self.settling[event.pending_id] = state.expires_at_ns

    def _apply_pending_settled(self, event: PendingSettled) -> None:
        for pending_id in event.pending_ids:
            self.settling.pop(pending_id, None)

    def _apply_held_settled(self, event: HeldSettled) -> None:
        reservation = self._release(event.pending_id)
        if not event.post:
            self._reopen(reservation)
        if event.post and event.amount:
            resolving = event.resolution
            if resolving is None or resolving.amount != event.amount:
                raise AssertionError(f"held part of {event.pending_id} posted without its post")
            self.store.add_transfer(StoredTransfer(resolving), if_absent=True)
            self._post(resolving, reservation.roles, indexed=True)

    def _apply_reservation_posted(self, event: ReservationPosted) -> None:
        reservation = self._release(event.transfer_id)
        self.fenced_transfers.pop(event.transfer_id, None)  # committed: its id is taken
        transfer = reservation.transfer.stamped(event.timestamp)
        if event.amount:
            transfer = transfer.resized(event.amount)
            self._recount_debit(reservation, event.amount)
        self.store.add_transfer(StoredTransfer(transfer))
        self._post(transfer, reservation.roles, indexed=True)

    def _apply_reservation_voided(self, event: ReservationVoided) -> None:
        reservation = self._release(event.transfer_id)
        self._recount_debit(reservation, 0)
        self._reopen(reservation)

    def _release(self, transfer_id: str) -> Reservation:
        reservation = self.reservations.pop(transfer_id)
        transfer, roles, amount = reservation.transfer, reservation.roles, \
            reservation.transfer.amount
        if roles & _DEBIT:
            account = self.accounts[transfer.debit_account_id]
            account.debits_pending -= amount
            if account.debits_pending < 0:
                raise AssertionError(f"{account.id}: debits_pending below zero")
            self._changed(account, DEBITS_PENDING, -amount)
        if roles & _CREDIT:
            account = self.accounts[transfer.credit_account_id]
            account.credits_pending -= amount
            if account.credits_pending < 0:
                raise AssertionError(f"{account.id}: credits_pending below zero")
            self._changed(account, CREDITS_PENDING, -amount)
        return reservation

    def _post(self, transfer: Transfer, roles: int, indexed: bool) -> None:
        amount = transfer.amount
        if not 0 < amount <= AMOUNT_MAX:
            raise AssertionError(f"transfer {transfer.id} posts {amount}")
        store = self.store
        if roles & _DEBIT:
            debit = self.accounts[transfer.debit_account_id]
            debit.debits_posted += amount
            if debit.debits_posted > BALANCE_MAX:
                raise AssertionError(f"{debit.id}: debits_posted beyond {BALANCE_MAX}")
            self._changed(debit, DEBITS_POSTED, amount)
            debit.history_head = store.add_history(debit.id, transfer.id, debit.history_head)
        if roles & _CREDIT:
            credit = self.accounts[transfer.credit_account_id]
            credit.credits_posted += amount
            if credit.credits_posted > BALANCE_MAX:
                raise AssertionError(f"{credit.id}: credits_posted beyond {BALANCE_MAX}")
            self._changed(credit, CREDITS_POSTED, amount)
            credit.history_head = store.add_history(credit.id, transfer.id,
                                                    credit.history_head)
