"""The ledger rules: a pure, deterministic core.

Each decision method takes the command (already stamped with the switch's timestamp), reads
state without changing it, and returns a result code and the events to record. `apply` is
the only method that changes state; the shard host calls it for live events and recovery
calls it for events read back from the log, so both run the same code.

A shard holds part of the ledger. For a transfer it may hold the *home* role (the transfer
id's slot: the id index, the durable commit decision) and the debit and/or credit role (the
accounts). A transfer whose roles all live on one shard is committed in one event; otherwise
the remote roles are reserved first (pending), the home commits, and the reservations are
posted or voided (see docs/ARCHITECTURE.md, "Cross-shard transfers").
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import actors.ledger.pending as pending_rules
from actors.ledger.balancing import Rule, credit_rules, debit_rules, decide, most_allowed
from actors.ledger.chains import ChainFunds
from actors.ledger.codes import AccountResult, LimitsResult, TransferResult, first_failure
from actors.ledger.exists import account_exists, transfer_exists
from actors.ledger.limits import Limits, Velocity
from actors.ledger.model import (
    ACCOUNT_FLAGS_ALL,
    AMOUNT_MAX,
    BALANCE_MAX,
    BALANCING,
    CLOSED,
    CLOSING_CREDIT,
    CLOSING_DEBIT,
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    PENDING,
    POST_PENDING,
    RESOLVES_PENDING,
    Account,
    Roles,
    Transfer,
)
from actors.ledger.pending import EXPIRED, PENDING_STATUS, POSTED, VOIDED, PendingState

Event = list[Any]

ACCOUNT_CREATED = "account_created"
TRANSFER_COMMITTED = "transfer_committed"
TRANSFER_RESERVED = "transfer_reserved"
RESERVATION_POSTED = "reservation_posted"
RESERVATION_VOIDED = "reservation_voided"
RESERVATION_HELD = "reservation_held"  # a part of a pending transfer, now committed
PENDING_CLAIMED = "pending_claimed"
PENDING_CLAIM_RELEASED = "pending_claim_released"
PENDING_RESOLVED = "pending_resolved"
PENDING_EXPIRED = "pending_expired"
HELD_SETTLED = "held_settled"
LIMITS_CHANGED = "limits_changed"
CHAIN_COMMITTED = "chain_committed"  # at a linked chain's coordinator: the decision
PART_COMMITTED = "part_committed"  # a chain member's id part at its home, the chain committed

# What a reservation becomes once its transfer's home has decided.
POST, VOID, HOLD = "post", "void", "hold"

_DEBITS_LIMITED = DEBITS_MUST_NOT_EXCEED_CREDITS
_CREDITS_LIMITED = CREDITS_MUST_NOT_EXCEED_DEBITS
_CLOSED = CLOSED
_DEBIT = Roles.debit
_CREDIT = Roles.credit
_BOTH = Roles.both
_HOME = Roles.home
_R = TransferResult
_OK = TransferResult.ok


@dataclass(slots=True)
class Reservation:
    """A role of a transfer held as pending on this shard: a cross-shard part waiting for its
    home's decision (in doubt), or a part of a committed pending transfer (held)."""

    transfer: Transfer
    roles: int
    attempt: int
    held: bool = False
    chain: str = ""  # a linked chain's member: the chain's key (its first member's id)
    member: int = 0  # and its place in the chain


def check_transfer_static(transfer: Transfer) -> TransferResult:
    """The checks that need no state; the router runs them before routing anything."""
    return pending_rules.check_static(transfer)


class Ledger:
    def __init__(self, ledgers: Iterable[str]) -> None:
        self.ledgers = frozenset(ledgers)
        self.accounts: dict[str, Account] = {}
        # Every transfer applied here: committed at this home, or posted to an account held
        # here. Commits only ever reach an id's home, so at the home this is the id index.
        self.transfers: dict[str, Transfer] = {}
        self.homed_count = 0  # transfers committed with this shard as their home
        self.reservations: dict[str, Reservation] = {}
        # For transfers that crossed shards: which attempt committed (see `resolve`).
        self.commit_attempts: dict[str, int] = {}
        # Posted transfers per account, in order (a defaultdict: no empty list built per post).
        self.history: defaultdict[str, list[Transfer]] = defaultdict(list)
        self.pending: dict[str, PendingState] = {}  # pending transfers homed here
        # Linked chains coordinated here that committed: key -> [attempt, member timestamps].
        self.chains: dict[str, list[Any]] = {}
        self.limits: dict[str, Limits] = {}  # accounts with limits
        self.velocity: dict[str, Velocity] = {}  # their recent debits, for velocity limits
        self._expiries: list[tuple[int, str]] = []  # heap of (expires_at_ns, pending id)
        self._appliers: dict[str, Callable[[Event], None]] = {
            ACCOUNT_CREATED: self._apply_account_created,
            TRANSFER_COMMITTED: self._apply_transfer_committed,
            TRANSFER_RESERVED: self._apply_transfer_reserved,
            RESERVATION_POSTED: self._apply_reservation_posted,
            RESERVATION_VOIDED: self._apply_reservation_voided,
            RESERVATION_HELD: self._apply_reservation_held,
            PENDING_CLAIMED: self._apply_pending_claimed,
            PENDING_CLAIM_RELEASED: self._apply_pending_claim_released,
            PENDING_RESOLVED: self._apply_pending_resolved,
            PENDING_EXPIRED: self._apply_pending_expired,
            HELD_SETTLED: self._apply_held_settled,
            LIMITS_CHANGED: self._apply_limits_changed,
            CHAIN_COMMITTED: self._apply_chain_committed,
            PART_COMMITTED: self._apply_part_committed,
        }

    # ---- decisions (read-only) ----

    def create_account(self, account: Account) -> tuple[AccountResult, list[Event]]:
        flags = account.flags
        if flags & ~ACCOUNT_FLAGS_ALL or (flags & _DEBITS_LIMITED and flags & _CREDITS_LIMITED):
            return AccountResult.flags_invalid, []
        if account.ledger not in self.ledgers:
            return AccountResult.ledger_unknown, []
        existing = self.accounts.get(account.id)
        if existing is not None:
            return account_exists(existing, account), []
        assert account.timestamp > 0
        return AccountResult.ok, [[ACCOUNT_CREATED, account.row()]]

    def set_limits(self, account_id: str, limits: Limits, timestamp: int
                   ) -> tuple[LimitsResult, list[Event]]:
        if account_id not in self.accounts:
            return LimitsResult.account_not_found, []
        if not limits.valid():
            return LimitsResult.limits_invalid, []
        if self.limits.get(account_id, Limits()) == limits:
            return LimitsResult.unchanged, []
        return LimitsResult.ok, [[LIMITS_CHANGED, account_id, limits.row(), timestamp]]

    def commit_transfer(
        self, transfer: Transfer, roles: int, remote: TransferResult, attempt: int = 0,
        remote_rules: list[Rule] | None = None, pending: Transfer | None = None,
    ) -> tuple[TransferResult, list[Event], Transfer | None]:
        """Decide a transfer at its home: the id check, the local roles, the remote verdict.

        `attempt` names the cross-shard attempt whose reservations this decision settles (0 for
        a transfer wholly on this shard); `remote_rules`, for a balancing transfer, those of
        its remote parts; `pending`, for a post or void, its pending transfer as claimed (what
        the post or void leaves out is filled from it). Returns the stored transfer for `ok`
        and `exists*`.
        """
        static = check_transfer_static(transfer)
        if static is not _R.ok:
            return static, [], None
        existing = self.transfers.get(transfer.id)
        if existing is not None:
            return _repeat(existing, transfer), [], existing
        if transfer.id in self.reservations:  # a linked chain's member, not yet decided
            return _R.in_flight, [], None
        if transfer.flags & RESOLVES_PENDING:
            transfer = pending_rules.filled(transfer, pending)
        if transfer.flags & BALANCING:
            rules = self.balancing_rules(transfer, roles) + (remote_rules or [])
            result, amount = decide(transfer.amount, rules)
            if result is _OK and amount < transfer.amount:
                transfer = transfer.resized(amount)
        else:
            result = self._check_roles(transfer, roles)
        result = first_failure(result, remote)
        if result is not _OK:
            return result, [], None
        assert transfer.timestamp > 0
        return _OK, [[TRANSFER_COMMITTED, transfer.row(), roles, attempt]], transfer

    def reserve_transfer(
        self, transfer: Transfer, roles: int, attempt: int, chain: str = "", member: int = 0,
        funds: ChainFunds | None = None,
    ) -> tuple[TransferResult, list[Event], Transfer | None]:
        """Check and hold this shard's roles of a cross-shard transfer (or of a linked chain's
        member: `roles` may include its home, `funds` what earlier members hold) as pending.
        Returns the stored transfer when the home part finds the id taken."""
        if roles & _HOME:
            existing = self.transfers.get(transfer.id)
            if existing is not None:
                return _repeat(existing, transfer), [], existing
        if transfer.id in self.reservations:
            return _R.in_flight, [], None
        result, transfer = self._checked(transfer, roles, funds)
        if result is not _OK:
            return result, [], None
        return _OK, [[TRANSFER_RESERVED, transfer.row(), roles, attempt, chain, member]], None

    def decide_chain(self, chain: str, attempt: int, timestamps: list[int], amounts: list[int],
                     resolving: list[list[Any] | None]) -> list[Event]:
        """At the coordinator, every member ok: the chain commits (each member at its time,
        with its amount: less than asked for a balancing member; a post or void as stored,
        with what it left out filled from its pending transfer)."""
        assert chain not in self.chains, chain
        return [[CHAIN_COMMITTED, chain, attempt, timestamps, amounts, resolving]]

    def resolve_chain(self, chain: str, attempt: int) -> list[Any] | None:
        """[timestamps, amounts, posts' and voids' fields] of the members if this attempt of
        the chain committed, else None (void)."""
        decision = self.chains.get(chain)
        return decision[1:] if decision is not None and decision[0] == attempt else None


    def finalize_reservation(
        self, transfer_id: str, attempt: int, outcome: str, timestamp: int, amount: int = 0,
        fields: list[Any] | None = None,
    ) -> list[Event]:
        """Post, void or hold (a pending transfer) a part once its home has decided; a repeat
        changes nothing. `amount`: what the transfer moves, if less than held (balancing);
        `fields`: a chain's post or void as stored (filled from its pending transfer)."""
        reservation = self.reservations.get(transfer_id)
        if reservation is None or reservation.attempt != attempt or reservation.held:
            return []
        if outcome == VOID:
            return [[RESERVATION_VOIDED, transfer_id]]
        if reservation.roles & _HOME:  # a chain member's home: commit it here
            if fields is not None:
                return [[PART_COMMITTED, transfer_id, timestamp, amount, fields]]
            return [[PART_COMMITTED, transfer_id, timestamp, amount]]
        if outcome == POST:
            return [[RESERVATION_POSTED, transfer_id, timestamp, amount]]
        return [[RESERVATION_HELD, transfer_id, amount]]

    def resolve(self, transfer_id: str, attempt: int) -> list[Any]:
        """At the home: what becomes of this attempt's parts: [post|hold|void, ts, row].

        The attempt, not the fields, decides: a retry with identical fields reserves too, is
        told `exists`, and its reservation must be voided, never posted a second time.
        """
        if self.commit_attempts.get(transfer_id) == attempt:
            committed = self.transfers[transfer_id]
            outcome = HOLD if committed.flags & PENDING else POST
            return [outcome, committed.timestamp, committed.row()]
        return [VOID, 0, None]

    # ---- two-phase: at the pending transfer's home, and at its parts ----

    def claim_pending(
        self, resolving: Transfer, attempt: int, chain: str = "", member: int = 0
    ) -> tuple[TransferResult, list[Event], Transfer | None]:
        """May this post or void take its pending transfer? On ok the pending transfer is
        locked for it (durably) until its home decides (its linked chain's coordinator, for
        a chain's member: the claim then keeps the post or void as it will be stored)."""
        pending = self.transfers.get(resolving.pending_id)
        state = self.pending.get(resolving.pending_id)
        result, amount = pending_rules.check_claim(pending, state, resolving,
                                                   resolving.timestamp)
        if result is not _OK:
            return result, [], pending
        post = bool(resolving.flags & POST_PENDING)
        claimed = [PENDING_CLAIMED, resolving.pending_id, resolving.id, attempt, post, amount]
        if chain:
            claimed += [chain, member, pending_rules.filled(resolving, pending).fields()]
        return _OK, [claimed], pending

    def finalize_claim(
        self, pending_id: str, resolving_id: str, attempt: int, resolving_row: list[Any] | None
    ) -> list[Event]:
        """The post or void was committed (its row given) or not (None): record it at the
        pending transfer's home. A repeat, or another attempt's, changes nothing."""
        state = self.pending.get(pending_id)
        if state is None or state.claim is None or state.claim[:2] != [resolving_id, attempt]:
            return []
        if resolving_row is None:
            return [[PENDING_CLAIM_RELEASED, pending_id]]
        status = POSTED if state.claim[2] else VOIDED
        return [[PENDING_RESOLVED, pending_id, status, state.claim[3], resolving_row]]

    def settle_held(
        self, pending_id: str, post: bool, amount: int, resolving_row: list[Any] | None
    ) -> list[Event]:
        """Post (the amount given) or release this shard's held part of a pending transfer."""
        reservation = self.reservations.get(pending_id)
        if reservation is None or not reservation.held:
            return []
        return [[HELD_SETTLED, pending_id, post, amount, resolving_row]]

    def expire_due(self, now_ns: int) -> list[Event]:
        """Pending transfers whose timeout has passed, and that nobody is resolving: expire."""
        events, expiring = [], set()
        while self._expiries and self._expiries[0][0] <= now_ns:
            _, pending_id = heapq.heappop(self._expiries)
            state = self.pending[pending_id]
            # The heap may hold a transfer twice (pushed again when a claim was released);
            # these events are not applied yet, so the state alone cannot tell: expire once.
            if state.status == PENDING_STATUS and state.claim is None and \
                    pending_id not in expiring:
                expiring.add(pending_id)
                events.append([PENDING_EXPIRED, pending_id])
        return events

    def pending_status(self, pending_id: str) -> list[Any] | None:
        state = self.pending.get(pending_id)
        if state is None:
            return None
        return [state.status, state.amount_posted, state.resolution]

    def rebuild_expiries(self) -> None:
        """After loading a snapshot: the heap of pending transfers that can still expire."""
        self._expiries = [(s.expires_at_ns, pending_id) for pending_id, s in self.pending.items()
                          if s.expires_at_ns and s.status == PENDING_STATUS]
        heapq.heapify(self._expiries)

    def _checked(self, transfer: Transfer, roles: int, funds: ChainFunds | None = None
                 ) -> tuple[TransferResult, Transfer]:
        """The checks of this shard's roles, and the transfer as this shard would hold it: a
        balancing transfer with no more than its rules here let through (its answer, and the
        amount that moves, are decided where all its rules meet; see actors/balancing.py)."""
        if not transfer.flags & BALANCING:
            return self._check_roles(transfer, roles, funds), transfer
        rules = self.balancing_rules(transfer, roles, funds)
        held = most_allowed(transfer.amount, rules)
        if held < 1:
            return decide(transfer.amount, rules)[0], transfer
        return _OK, transfer.resized(held) if held < transfer.amount else transfer

    def balancing_rules(self, transfer: Transfer, roles: int, funds: ChainFunds | None = None
                        ) -> list[Rule]:
        """This shard's sides of a balancing transfer as rules (actors/balancing.py), in the
        order of `_check_debit` and `_check_credit`."""
        rules: list[Rule] = []
        if roles & _DEBIT:
            account_id = transfer.debit_account_id
            rules += debit_rules(transfer, self.accounts.get(account_id),
                                 self.limits.get(account_id), self.velocity.get(account_id),
                                 funds.credits.get(account_id, 0) if funds else 0)
        if roles & _CREDIT:
            account_id = transfer.credit_account_id
            rules += credit_rules(transfer, self.accounts.get(account_id),
                                  funds.debits.get(account_id, 0) if funds else 0)
        return rules

    def _check_roles(self, transfer: Transfer, roles: int, funds: ChainFunds | None = None
                     ) -> TransferResult:
        if funds is None:
            debit = self._check_debit(transfer) if roles & _DEBIT else _OK
            if roles & _CREDIT:
                return first_failure(debit, self._check_credit(transfer))
            return debit
        debit = self._check_debit(transfer, funds.credits.get(transfer.debit_account_id, 0)) \
            if roles & _DEBIT else _OK
        if roles & _CREDIT:
            return first_failure(debit, self._check_credit(
                transfer, funds.debits.get(transfer.credit_account_id, 0)))
        return debit

    def _check_debit(self, transfer: Transfer, chain_credits: int = 0) -> TransferResult:
        account = self.accounts.get(transfer.debit_account_id)
        if account is None:
            return _R.debit_account_not_found
        if account.ledger != transfer.ledger:
            return _R.ledger_mismatch
        if account.flags & _CLOSED:
            return _R.debit_account_closed
        debits = account.debits_posted + account.debits_pending + transfer.amount
        if debits > BALANCE_MAX:
            return _R.overflows_debits
        limits = self.limits.get(account.id)
        credits = account.credits_posted + chain_credits
        if limits is None:
            if account.flags & _DEBITS_LIMITED and debits > credits:
                return _R.exceeds_credits
            return _R.ok
        if limits.transfer_max and transfer.amount > limits.transfer_max:
            return _R.exceeds_transfer_max
        if account.flags & _DEBITS_LIMITED and debits > credits + limits.overdraft:
            return _R.exceeds_credits
        if limits.velocity_max:
            horizon = transfer.timestamp - limits.velocity_window_ms * 1_000_000
            recent = self.velocity[account.id].sum_since(horizon)
            if recent + transfer.amount > limits.velocity_max:
                return _R.exceeds_velocity_limit
        return _R.ok

    def _check_credit(self, transfer: Transfer, chain_debits: int = 0) -> TransferResult:
        account = self.accounts.get(transfer.credit_account_id)
        if account is None:
            return _R.credit_account_not_found
        if account.ledger != transfer.ledger:
            return _R.ledger_mismatch
        if account.flags & _CLOSED:
            return _R.credit_account_closed
        credits = account.credits_posted + account.credits_pending + transfer.amount
        if credits > BALANCE_MAX:
            return _R.overflows_credits
        if account.flags & _CREDITS_LIMITED and credits > account.debits_posted + chain_debits:
            return _R.exceeds_debits
        return _R.ok

    # ---- application (the only mutation) ----

    def apply(self, event: Event) -> None:
        self._appliers[event[0]](event)

    def _apply_account_created(self, event: Event) -> None:
        account = Account.from_row(event[1])
        assert account.id not in self.accounts, account.id
        self.accounts[account.id] = account

    def _apply_transfer_committed(self, event: Event) -> None:
        transfer = Transfer.from_row(event[1])
        if event[2] & _DEBIT:
            self._count_debit(transfer.debit_account_id, transfer.timestamp, transfer.amount)
        self._commit(transfer, event[2], event[3])

    def _apply_part_committed(self, event: Event) -> None:
        """A chain member at its home: its id reservation becomes the commit (its debit was
        counted for velocity when it was reserved)."""
        reservation = self._release(event[1])
        if len(event) > 4:  # a post or void, filled from its pending transfer
            # Settling a held part of its pending transfer on this shard may have stored it
            # already (its chain decided, this part finalized later): one object, one count.
            resolving = Transfer.from_row([*event[4], event[2]])
            self.transfers.setdefault(resolving.id, resolving)
            self.homed_count += 1
            return
        transfer = reservation.transfer.stamped(event[2])
        if event[3]:
            transfer = transfer.resized(event[3])
            self._recount_debit(reservation, event[3])
        self._commit(transfer, reservation.roles & _BOTH, 0)

    def _apply_chain_committed(self, event: Event) -> None:
        self.chains[event[1]] = event[2:]

    def _commit(self, transfer: Transfer, roles: int, attempt: int) -> None:
        """At the transfer's home: index it, and post (or hold, if pending) its local roles."""
        assert transfer.id not in self.transfers, transfer.id
        self.transfers[transfer.id] = transfer
        self.homed_count += 1
        if attempt:
            self.commit_attempts[transfer.id] = attempt
        if not transfer.flags & PENDING:
            self._post(transfer, roles)
            return
        expires_at_ns = transfer.timestamp + transfer.timeout_ms * 1_000_000 \
            if transfer.timeout_ms else 0
        self.pending[transfer.id] = PendingState(PENDING_STATUS, expires_at_ns)
        if expires_at_ns:
            heapq.heappush(self._expiries, (expires_at_ns, transfer.id))
        if roles:  # the home's own accounts: held at once
            self._hold(transfer, roles, attempt)

    def _apply_transfer_reserved(self, event: Event) -> None:
        transfer = Transfer.from_row(event[1])
        if event[2] & _DEBIT:
            self._count_debit(transfer.debit_account_id, transfer.timestamp, transfer.amount)
        self._hold(transfer, event[2], event[3], held=False)  # in doubt
        if len(event) > 4 and event[4]:
            reservation = self.reservations[transfer.id]
            reservation.chain, reservation.member = event[4], event[5]

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

    def _apply_limits_changed(self, event: Event) -> None:
        _, account_id, row, timestamp = event
        limits = Limits(*row)
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

    def _hold(self, transfer: Transfer, roles: int, attempt: int, held: bool = True) -> None:
        """Add a part to pending; a closing transfer closes its account from here on."""
        amount = transfer.amount
        assert transfer.id not in self.reservations, transfer.id
        if roles & _DEBIT:
            account = self.accounts[transfer.debit_account_id]
            account.debits_pending += amount
            if transfer.flags & CLOSING_DEBIT:
                account.flags |= _CLOSED
        if roles & _CREDIT:
            account = self.accounts[transfer.credit_account_id]
            account.credits_pending += amount
            if transfer.flags & CLOSING_CREDIT:
                account.flags |= _CLOSED
        self.reservations[transfer.id] = Reservation(transfer, roles, attempt, held)

    def _reopen(self, reservation: Reservation) -> None:
        """A closing transfer voided (or expired, or never committed): its account reopens."""
        transfer, roles = reservation.transfer, reservation.roles
        if roles & _DEBIT and transfer.flags & CLOSING_DEBIT:
            self.accounts[transfer.debit_account_id].flags &= ~_CLOSED
        if roles & _CREDIT and transfer.flags & CLOSING_CREDIT:
            self.accounts[transfer.credit_account_id].flags &= ~_CLOSED

    def _apply_reservation_held(self, event: Event) -> None:
        reservation = self.reservations[event[1]]
        amount = event[2] if len(event) > 2 else 0
        if amount and amount < reservation.transfer.amount:  # a balancing transfer: hold less
            self._recount_debit(reservation, amount)
            self._release(event[1])
            self._hold(reservation.transfer.resized(amount), reservation.roles,
                       reservation.attempt)
            return
        reservation.held = True

    def _apply_pending_claimed(self, event: Event) -> None:
        state = self.pending[event[1]]
        assert state.claim is None and state.status == PENDING_STATUS
        state.claim = event[2:]

    def _apply_pending_claim_released(self, event: Event) -> None:
        state = self.pending[event[1]]
        state.claim = None
        if state.expires_at_ns:  # it may have come due meanwhile
            heapq.heappush(self._expiries, (state.expires_at_ns, event[1]))

    def _apply_pending_resolved(self, event: Event) -> None:
        state = self.pending[event[1]]
        state.status, state.amount_posted, state.resolution = event[2], event[3], event[4]
        state.claim = None

    def _apply_pending_expired(self, event: Event) -> None:
        state = self.pending[event[1]]
        assert state.status == PENDING_STATUS
        state.status = EXPIRED

    def _apply_held_settled(self, event: Event) -> None:
        _, pending_id, post, amount, resolving_row = event
        reservation = self._release(pending_id)
        if not post:
            self._reopen(reservation)
        if post and amount:
            resolving = Transfer.from_row(resolving_row)
            assert resolving.amount == amount
            # One object per transfer: histories and the index share it (snapshots rely on it).
            resolving = self.transfers.setdefault(resolving.id, resolving)
            self._post(resolving, reservation.roles)

    def _apply_reservation_posted(self, event: Event) -> None:
        reservation = self._release(event[1])
        transfer = reservation.transfer.stamped(event[2])
        if len(event) > 3 and event[3]:
            transfer = transfer.resized(event[3])
            self._recount_debit(reservation, event[3])
        assert transfer.id not in self.transfers, transfer.id
        self.transfers[transfer.id] = transfer
        self._post(transfer, reservation.roles)

    def _apply_reservation_voided(self, event: Event) -> None:
        reservation = self._release(event[1])
        self._recount_debit(reservation, 0)
        self._reopen(reservation)

    def _release(self, transfer_id: str) -> Reservation:
        reservation = self.reservations.pop(transfer_id)
        transfer, roles = reservation.transfer, reservation.roles
        if roles & _DEBIT:
            account = self.accounts[transfer.debit_account_id]
            account.debits_pending -= transfer.amount
            assert account.debits_pending >= 0
        if roles & _CREDIT:
            account = self.accounts[transfer.credit_account_id]
            account.credits_pending -= transfer.amount
            assert account.credits_pending >= 0
        return reservation

    def _post(self, transfer: Transfer, roles: int) -> None:
        amount = transfer.amount
        assert 0 < amount <= AMOUNT_MAX
        if roles & _DEBIT:
            debit = self.accounts[transfer.debit_account_id]
            debit.debits_posted += amount
            assert debit.debits_posted <= BALANCE_MAX
            self.history[debit.id].append(transfer)
        if roles & _CREDIT:
            credit = self.accounts[transfer.credit_account_id]
            credit.credits_posted += amount
            assert credit.credits_posted <= BALANCE_MAX
            self.history[credit.id].append(transfer)


def _repeat(existing: Transfer, transfer: Transfer) -> TransferResult:
    """A transfer sent again: `exists` or its first difference. A post or void compares as
    stored, what it leaves out being the stored one's (a repeat that names another pending
    transfer answers exists_with_different_pending_id)."""
    if transfer.flags & RESOLVES_PENDING:
        transfer = pending_rules.filled(transfer, existing)
    return transfer_exists(existing, transfer)

