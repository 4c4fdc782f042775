"""Accounts and transfers: the ledger's two entities, and the limits on their fields.

Rows (plain lists of str and int) are how entities cross process and disk boundaries: they
encode with orjson as they are and decode without a schema walk.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from enum import IntFlag
from typing import Any

AMOUNT_MAX = 2**63 - 1  # amounts are 0 < amount <= AMOUNT_MAX, in minor units
BALANCE_MAX = 2**64 - 1  # no balance field may exceed this (u64 on the wire and in the log)
CODE_MAX = 2**32 - 1
ID_LENGTH_MAX = 64
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
USER_DATA_LENGTH_MAX = 128
ID_RE = re.compile(ID_PATTERN)


class AccountFlags(IntFlag):
    debits_must_not_exceed_credits = 1
    credits_must_not_exceed_debits = 2
    closed = 4
    history = 8  # keep the balances after every transfer (GET /v1/accounts/{id}/balances)


ACCOUNT_FLAGS_ALL = int(
    AccountFlags.debits_must_not_exceed_credits
    | AccountFlags.credits_must_not_exceed_debits
    | AccountFlags.closed
    | AccountFlags.history
)
HISTORY = int(AccountFlags.history)


# Plain ints on the hot path: an IntFlag operation costs about 40 times an int one.
DEBITS_MUST_NOT_EXCEED_CREDITS = int(AccountFlags.debits_must_not_exceed_credits)
CREDITS_MUST_NOT_EXCEED_DEBITS = int(AccountFlags.credits_must_not_exceed_debits)
CLOSED = int(AccountFlags.closed)


class TransferFlags(IntFlag):
    """The bits are TigerBeetle's, so that its users find what they know."""

    linked = 1
    pending = 2
    post_pending_transfer = 4
    void_pending_transfer = 8
    balancing_debit = 16
    balancing_credit = 32
    closing_debit = 64
    closing_credit = 128


LINKED = int(TransferFlags.linked)
PENDING = int(TransferFlags.pending)
POST_PENDING = int(TransferFlags.post_pending_transfer)
VOID_PENDING = int(TransferFlags.void_pending_transfer)
RESOLVES_PENDING = POST_PENDING | VOID_PENDING
BALANCING_DEBIT = int(TransferFlags.balancing_debit)
BALANCING_CREDIT = int(TransferFlags.balancing_credit)
CLOSING_DEBIT = int(TransferFlags.closing_debit)
CLOSING_CREDIT = int(TransferFlags.closing_credit)
BALANCING = BALANCING_DEBIT | BALANCING_CREDIT
CLOSING = CLOSING_DEBIT | CLOSING_CREDIT
TRANSFER_FLAGS_ALL = int(sum(TransferFlags))
TRANSFER_FLAG_NAMES = tuple(flag.name or "" for flag in TransferFlags)
TIMEOUT_MS_MAX = 2**32 - 1


class Roles:
    """Which sides of a transfer a shard holds: the debit account, the credit account, both."""

    debit = 1
    credit = 2
    both = 3
    home = 4  # a linked chain's member at its id's home: the id index (see actors/chains.py)
    claim = 8  # a chain's post or void at its pending transfer's home: the claim on it


@dataclass(slots=True)
class Account:
    id: str
    ledger: str
    code: int
    owner: str
    flags: int
    user_data: str
    timestamp: int = 0
    debits_posted: int = 0
    credits_posted: int = 0
    debits_pending: int = 0
    credits_pending: int = 0

    def row(self) -> list[Any]:
        return [
            self.id, self.ledger, self.code, self.owner, self.flags, self.user_data,
            self.timestamp, self.debits_posted, self.credits_posted,
            self.debits_pending, self.credits_pending,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Account:
        return cls(*row)


@dataclass(slots=True)
class Transfer:
    """Never changed once built (not frozen only because frozen construction is slower)."""

    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    ledger: str
    code: int
    user_data: str
    flags: int = 0
    pending_id: str = ""  # for post_pending_transfer / void_pending_transfer
    timeout_ms: int = 0  # for pending: 0 never expires
    timestamp: int = 0

    def row(self) -> list[Any]:
        return [
            self.id, self.debit_account_id, self.credit_account_id, self.amount,
            self.ledger, self.code, self.user_data, self.flags, self.pending_id,
            self.timeout_ms, self.timestamp,
        ]

    @classmethod
    def from_row(cls, row: list[Any]) -> Transfer:
        return cls(*row)

    def fields(self) -> list[Any]:
        """The client-chosen fields: a row without the timestamp."""
        return [self.id, self.debit_account_id, self.credit_account_id, self.amount,
                self.ledger, self.code, self.user_data, self.flags, self.pending_id,
                self.timeout_ms]

    def same_fields(self, other: Transfer) -> bool:
        """Equal in every client-chosen field (the timestamp is the switch's)."""
        return self.fields() == other.fields()

    def resized(self, amount: int) -> Transfer:
        """The same transfer moving another amount (a balancing transfer, once decided)."""
        return Transfer(
            self.id, self.debit_account_id, self.credit_account_id, amount,
            self.ledger, self.code, self.user_data, self.flags, self.pending_id,
            self.timeout_ms, self.timestamp,
        )

    def stamped(self, timestamp: int) -> Transfer:
        return Transfer(
            self.id, self.debit_account_id, self.credit_account_id, self.amount,
            self.ledger, self.code, self.user_data, self.flags, self.pending_id,
            self.timeout_ms, timestamp,
        )
