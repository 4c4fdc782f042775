"""Accounts and transfers: the ledger's two entities, and the limits on their fields.

Both are msgspec Structs: the same type is the core's object, the row in a message, an event
and a snapshot, and the codec (actors/codec.py) encodes and validates it by its declaration.
"""

from __future__ import annotations

import re
from enum import IntFlag

import msgspec
from msgspec.structs import replace

AMOUNT_MAX = 2**63 - 1  # amounts are 0 < amount <= AMOUNT_MAX, in minor units
BALANCE_MAX = 2**64 - 1  # no balance field may exceed this (u64 on the wire and in the log)
CODE_MAX = 2**32 - 1
ID_LENGTH_MAX = 64
ID_PATTERN = r"^[A-Za-z0-9._:-]{1,64}$"
USER_DATA_LENGTH_MAX = 128
ID_RE = re.compile(ID_PATTERN)  # use fullmatch: Python's $ also matches before a final \n


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
# (name, bit) pairs as plain ints: an IntFlag operation costs microseconds per call.
TRANSFER_FLAG_BITS = tuple((flag.name or "", int(flag)) for flag in TransferFlags)
TIMEOUT_MS_MAX = 2**32 - 1


class Roles:
    """Which sides of a transfer a shard holds: the debit account, the credit account, both."""

    debit = 1
    credit = 2
    both = 3
    home = 4  # a linked chain's member at its id's home: the id index (see actors/chains.py)
    claim = 8  # a chain's post or void at its pending transfer's home: the claim on it


class Account(msgspec.Struct, array_like=True, gc=False):
    """An account: who and what it is, and its four balances (each within 0 .. BALANCE_MAX).

    Accounts stay in memory (one object each): array_like and no GC tracking keep it small
    (about 100 bytes besides its id and balances) and quick to encode.
    """

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
    # Where its newest posted transfer is in the store's history (0: none, or written before
    # history was chained): each entry there names the one before it, so the store appends
    # history in log order instead of inserting into a table keyed by account.
    history_head: int = 0


class Transfer(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A transfer as the client chose it and the switch stamped it. Never changed once built.

    Before its home commits it, `timestamp` is 0: that form crosses the router as "the
    transfer's fields".
    """

    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    ledger: str
    code: int
    user_data: str = ""
    flags: int = 0
    pending_id: str = ""  # for post_pending_transfer / void_pending_transfer
    timeout_ms: int = 0  # for pending: 0 never expires
    timestamp: int = 0
    # Who sent it, stamped by the ingress (never compared for `exists`): the key, and the
    # participant it acted for ("": the operator, who may debit any account).
    key_id: str = ""
    participant_id: str = ""

    def same_fields(self, other: Transfer) -> bool:
        """Equal in every client-chosen field (the timestamp is the switch's)."""
        return self.unstamped() == other.unstamped()

    def unstamped(self) -> Transfer:
        return self if not self.timestamp else replace(self, timestamp=0)

    def resized(self, amount: int) -> Transfer:
        """The same transfer moving another amount (a balancing transfer, once decided)."""
        return replace(self, amount=amount)

    def stamped(self, timestamp: int) -> Transfer:
        return replace(self, timestamp=timestamp)
