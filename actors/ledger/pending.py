"""Two-phase transfers: the rules for a pending transfer and for the post or void that
resolves it (pure, like the rest of the core; `Ledger` applies the events).

A pending transfer P is committed at its home like any transfer, but its amounts stay
pending: each account's shard holds a *held* reservation for P. A later transfer Q with
post_pending_transfer or void_pending_transfer and pending_id = P is decided in three steps,
as any cross-shard transfer: P's home *claims* P for Q (the pending_* checks; P is locked),
Q's home commits Q (the durable decision), then P's home records the resolution and each
shard holding a part of P settles it (posted, or released). Expiry is decided at P's home on
its own clock and recorded as an event; the held parts are then released the same way.
"""

from __future__ import annotations

import msgspec
from msgspec.structs import replace

from actors.ledger.codes import TransferResult
from actors.ledger.model import (
    AMOUNT_MAX,
    BALANCING,
    CLOSING,
    PENDING,
    POST_PENDING,
    RESOLVES_PENDING,
    TIMEOUT_MS_MAX,
    Transfer,
)

_R = TransferResult
UNSPECIFIED_CODE = -1  # a post or void that leaves `code` out: it is the pending transfer's

PENDING_STATUS = "pending"
POSTED = "posted"
VOIDED = "voided"
EXPIRED = "expired"


class Claim(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A post or void Q under way on a pending transfer P, at P's home: P is locked for it.

    For a Q in a linked chain, the chain (its key and Q's place in it) and Q as it will be
    stored (what it leaves out filled from P): the chain's coordinator decides it.
    """

    resolving_id: str
    attempt: int
    post: bool
    amount: int
    chain: str = ""
    member: int = 0
    resolving: Transfer | None = None


class PendingState(msgspec.Struct, array_like=True, gc=False):
    """At a pending transfer's home: where it stands, and who is resolving it. Open ones
    (status pending) live in memory and in snapshots; final ones in the ledger's store."""

    status: str
    expires_at_ns: int  # 0: never
    claim: Claim | None = None  # while a post or void is under way
    amount_posted: int = 0
    resolution: Transfer | None = None  # the transfer that posted or voided it, as stored


class PendingStatus(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What a reader is told about a pending transfer."""

    status: str
    amount_posted: int
    resolution: Transfer | None


def check_static(transfer: Transfer) -> TransferResult:
    """The checks that need no state, for every transfer."""
    flags = transfer.flags
    resolving = flags & RESOLVES_PENDING
    if resolving == RESOLVES_PENDING or (resolving and flags & (PENDING | BALANCING | CLOSING)):
        return _R.flags_are_mutually_exclusive
    if flags & CLOSING and not flags & PENDING:
        return _R.closing_transfer_must_be_pending
    if resolving:
        if not transfer.pending_id:
            return _R.pending_id_required
        if transfer.pending_id == transfer.id:
            return _R.pending_id_must_be_different
    elif transfer.pending_id:
        return _R.pending_id_must_be_empty
    if transfer.timeout_ms and not flags & PENDING:
        return _R.timeout_reserved_for_pending_transfer
    if not (isinstance(transfer.timeout_ms, int) and 0 <= transfer.timeout_ms <= TIMEOUT_MS_MAX):
        return _R.timeout_reserved_for_pending_transfer
    lowest = 0 if resolving else 1  # a post or void may leave the amount to the pending one
    if not (isinstance(transfer.amount, int) and lowest <= transfer.amount <= AMOUNT_MAX):
        return _R.amount_invalid
    if transfer.debit_account_id and transfer.debit_account_id == transfer.credit_account_id:
        return _R.accounts_must_be_different
    return _R.ok


def check_claim(
    pending: Transfer | None, state: PendingState | None, resolving: Transfer, now_ns: int
) -> tuple[TransferResult, int]:
    """May `resolving` (a post or void) take this pending transfer? Returns the result and the
    amount it would post (0 for a void)."""
    if pending is None:
        return _R.pending_transfer_not_found, 0
    if resolving.participant_id and pending.participant_id != resolving.participant_id:
        return _R.pending_transfer_not_found, 0  # another's: as if it did not exist
    if not pending.flags & PENDING or state is None:
        return _R.pending_transfer_not_pending, 0
    for field, code in (
        ("debit_account_id", _R.pending_transfer_has_different_debit_account_id),
        ("credit_account_id", _R.pending_transfer_has_different_credit_account_id),
        ("ledger", _R.pending_transfer_has_different_ledger),
    ):
        given = getattr(resolving, field)
        if given and given != getattr(pending, field):
            return code, 0
    if resolving.code != UNSPECIFIED_CODE and resolving.code != pending.code:
        return _R.pending_transfer_has_different_code, 0
    post = bool(resolving.flags & POST_PENDING)
    amount = resolving.amount or pending.amount
    if post and amount > pending.amount:
        return _R.exceeds_pending_transfer_amount, 0
    if not post and amount != pending.amount:
        return _R.pending_transfer_has_different_amount, 0
    if state.status == POSTED:
        return _R.pending_transfer_already_posted, 0
    if state.status == VOIDED:
        return _R.pending_transfer_already_voided, 0
    if state.status == EXPIRED or (state.expires_at_ns and now_ns >= state.expires_at_ns):
        return _R.pending_transfer_expired, 0
    if state.claim is not None:
        return _R.in_flight, 0
    return _R.ok, amount if post else 0


def filled(resolving: Transfer, pending: Transfer | None) -> Transfer:
    """A post or void with what it left out taken from the pending transfer: the form its
    home stores, so a repeat compares equal however the client spelled it."""
    if pending is None:
        return resolving
    post = resolving.flags & POST_PENDING
    return replace(
        resolving,
        debit_account_id=resolving.debit_account_id or pending.debit_account_id,
        credit_account_id=resolving.credit_account_id or pending.credit_account_id,
        amount=resolving.amount or pending.amount if post else pending.amount,
        ledger=resolving.ledger or pending.ledger,
        code=pending.code if resolving.code == UNSPECIFIED_CODE else resolving.code,
    )
