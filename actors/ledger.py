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

from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from actors.codes import AccountResult, TransferResult, first_failure
from actors.model import (
    ACCOUNT_FLAGS_ALL,
    AMOUNT_MAX,
    BALANCE_MAX,
    CLOSED,
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    Account,
    Roles,
    Transfer,
)

Event = list[Any]

ACCOUNT_CREATED = "account_created"
TRANSFER_COMMITTED = "transfer_committed"
TRANSFER_RESERVED = "transfer_reserved"
RESERVATION_POSTED = "reservation_posted"
RESERVATION_VOIDED = "reservation_voided"

_DEBITS_LIMITED = DEBITS_MUST_NOT_EXCEED_CREDITS
_CREDITS_LIMITED = CREDITS_MUST_NOT_EXCEED_DEBITS
_CLOSED = CLOSED
_DEBIT = Roles.debit
_CREDIT = Roles.credit
_R = TransferResult
_OK = TransferResult.ok


@dataclass(slots=True)
class Reservation:
    """A remote role of a cross-shard transfer, held as pending until its home decides."""

    transfer: Transfer
    roles: int
    attempt: int


def check_transfer_static(transfer: Transfer) -> TransferResult:
    """The checks that need no state; the router runs them before routing anything."""
    if not (isinstance(transfer.amount, int) and 0 < transfer.amount <= AMOUNT_MAX):
        return _R.amount_invalid
    if transfer.debit_account_id == transfer.credit_account_id:
        return _R.accounts_must_be_different
    return _R.ok


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
        self._appliers: dict[str, Callable[[Event], None]] = {
            ACCOUNT_CREATED: self._apply_account_created,
            TRANSFER_COMMITTED: self._apply_transfer_committed,
            TRANSFER_RESERVED: self._apply_transfer_reserved,
            RESERVATION_POSTED: self._apply_reservation_posted,
            RESERVATION_VOIDED: self._apply_reservation_voided,
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
            return _account_exists(existing, account), []
        assert account.timestamp > 0
        return AccountResult.ok, [[ACCOUNT_CREATED, account.row()]]

    def commit_transfer(
        self, transfer: Transfer, roles: int, remote: TransferResult, attempt: int = 0
    ) -> tuple[TransferResult, list[Event], Transfer | None]:
        """Decide a transfer at its home: the id check, the local roles, the remote verdict.

        `attempt` names the cross-shard attempt whose reservations this decision settles (0 for
        a transfer wholly on this shard). Returns the stored transfer for `ok` and `exists*`.
        """
        static = check_transfer_static(transfer)
        if static is not _R.ok:
            return static, [], None
        existing = self.transfers.get(transfer.id)
        if existing is not None:
            return _transfer_exists(existing, transfer), [], existing
        result = first_failure(self._check_roles(transfer, roles), remote)
        if result is not _OK:
            return result, [], None
        assert transfer.timestamp > 0
        return _OK, [[TRANSFER_COMMITTED, transfer.row(), roles, attempt]], transfer

    def reserve_transfer(
        self, transfer: Transfer, roles: int, attempt: int
    ) -> tuple[TransferResult, list[Event]]:
        """Check and hold this shard's roles of a cross-shard transfer as pending."""
        if transfer.id in self.reservations:
            return _R.in_flight, []
        result = self._check_roles(transfer, roles)
        if result is not _OK:
            return result, []
        return _OK, [[TRANSFER_RESERVED, transfer.row(), roles, attempt]]

    def finalize_reservation(
        self, transfer_id: str, attempt: int, post: bool, timestamp: int
    ) -> list[Event]:
        """Post or void a reservation once its home has decided; a repeat changes nothing."""
        reservation = self.reservations.get(transfer_id)
        if reservation is None or reservation.attempt != attempt:
            return []
        if post:
            return [[RESERVATION_POSTED, transfer_id, timestamp]]
        return [[RESERVATION_VOIDED, transfer_id]]

    def resolve(self, transfer_id: str, attempt: int) -> int:
        """At the home: the commit timestamp if this attempt committed, else 0 (void it).

        The attempt, not the fields, decides: a retry with identical fields reserves too, is
        told `exists`, and its reservation must be voided, never posted a second time.
        """
        if self.commit_attempts.get(transfer_id) == attempt:
            return self.transfers[transfer_id].timestamp
        return 0

    def _check_roles(self, transfer: Transfer, roles: int) -> TransferResult:
        debit = self._check_debit(transfer) if roles & _DEBIT else _OK
        if roles & _CREDIT:
            return first_failure(debit, self._check_credit(transfer))
        return debit

    def _check_debit(self, transfer: Transfer) -> TransferResult:
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
        if account.flags & _DEBITS_LIMITED and debits > account.credits_posted:
            return _R.exceeds_credits
        return _R.ok

    def _check_credit(self, transfer: Transfer) -> TransferResult:
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
        if account.flags & _CREDITS_LIMITED and credits > account.debits_posted:
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
        assert transfer.id not in self.transfers, transfer.id
        self.transfers[transfer.id] = transfer
        self.homed_count += 1
        if event[3]:
            self.commit_attempts[transfer.id] = event[3]
        self._post(transfer, event[2])

    def _apply_transfer_reserved(self, event: Event) -> None:
        transfer = Transfer.from_row(event[1])
        roles, amount = event[2], transfer.amount
        assert transfer.id not in self.reservations, transfer.id
        if roles & _DEBIT:
            self.accounts[transfer.debit_account_id].debits_pending += amount
        if roles & _CREDIT:
            self.accounts[transfer.credit_account_id].credits_pending += amount
        self.reservations[transfer.id] = Reservation(transfer, roles, event[3])

    def _apply_reservation_posted(self, event: Event) -> None:
        reservation = self._release(event[1])
        transfer = reservation.transfer.stamped(event[2])
        assert transfer.id not in self.transfers, transfer.id
        self.transfers[transfer.id] = transfer
        self._post(transfer, reservation.roles)

    def _apply_reservation_voided(self, event: Event) -> None:
        self._release(event[1])

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


def _account_exists(existing: Account, account: Account) -> AccountResult:
    if existing.ledger != account.ledger:
        return AccountResult.exists_with_different_ledger
    if existing.code != account.code:
        return AccountResult.exists_with_different_code
    if existing.owner != account.owner:
        return AccountResult.exists_with_different_owner
    if existing.flags != account.flags:
        return AccountResult.exists_with_different_flags
    if existing.user_data != account.user_data:
        return AccountResult.exists_with_different_user_data
    return AccountResult.exists


def _transfer_exists(existing: Transfer, transfer: Transfer) -> TransferResult:
    if existing.debit_account_id != transfer.debit_account_id:
        return _R.exists_with_different_debit_account_id
    if existing.credit_account_id != transfer.credit_account_id:
        return _R.exists_with_different_credit_account_id
    if existing.amount != transfer.amount:
        return _R.exists_with_different_amount
    if existing.ledger != transfer.ledger:
        return _R.exists_with_different_ledger
    if existing.code != transfer.code:
        return _R.exists_with_different_code
    if existing.user_data != transfer.user_data:
        return _R.exists_with_different_user_data
    return _R.exists
