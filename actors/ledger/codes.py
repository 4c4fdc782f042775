"""Result codes, in the order the ledger checks them.

The position of a code in its enum is its rank: when several checks fail, the one listed
first wins. A cross-shard transfer is checked in parts on several shards; the router keeps
the lowest-ranked failure, which gives the same answer as checking everything in one place.
"""

from __future__ import annotations

from enum import StrEnum


class AccountResult(StrEnum):
    ok = "ok"
    flags_invalid = "flags_invalid"
    limits_invalid = "limits_invalid"  # limits given with the account, and not valid
    ledger_unknown = "ledger_unknown"
    forbidden = "forbidden"  # the id is another participant's account: nothing of it is told
    exists_with_different_ledger = "exists_with_different_ledger"
    exists_with_different_code = "exists_with_different_code"
    exists_with_different_owner = "exists_with_different_owner"
    exists_with_different_flags = "exists_with_different_flags"
    exists_with_different_user_data = "exists_with_different_user_data"
    exists = "exists"
    # A participant's key made as many accounts for it on this shard as it may
    # (auth.accounts_per_participant_max, shared out over the shards).
    account_quota_exceeded = "account_quota_exceeded"


class TransferResult(StrEnum):
    ok = "ok"
    # A linked chain fails as one: its first failing member answers why, the others this.
    linked_event_failed = "linked_event_failed"
    linked_event_chain_open = "linked_event_chain_open"  # the request ended inside a chain
    flags_are_mutually_exclusive = "flags_are_mutually_exclusive"
    closing_transfer_must_be_pending = "closing_transfer_must_be_pending"
    pending_id_required = "pending_id_required"
    pending_id_must_be_empty = "pending_id_must_be_empty"
    pending_id_must_be_different = "pending_id_must_be_different"
    timeout_reserved_for_pending_transfer = "timeout_reserved_for_pending_transfer"
    amount_invalid = "amount_invalid"
    accounts_must_be_different = "accounts_must_be_different"
    # The key may not do this: its participant does not own the debit account, or the id is
    # another participant's transfer (actors/ledger/registry.py).
    forbidden = "forbidden"
    exists_with_different_debit_account_id = "exists_with_different_debit_account_id"
    exists_with_different_credit_account_id = "exists_with_different_credit_account_id"
    exists_with_different_amount = "exists_with_different_amount"
    exists_with_different_ledger = "exists_with_different_ledger"
    exists_with_different_code = "exists_with_different_code"
    exists_with_different_user_data = "exists_with_different_user_data"
    exists_with_different_flags = "exists_with_different_flags"
    exists_with_different_pending_id = "exists_with_different_pending_id"
    exists_with_different_timeout_ms = "exists_with_different_timeout_ms"
    exists = "exists"
    pending_transfer_not_found = "pending_transfer_not_found"
    pending_transfer_not_pending = "pending_transfer_not_pending"
    pending_transfer_has_different_debit_account_id = (
        "pending_transfer_has_different_debit_account_id")
    pending_transfer_has_different_credit_account_id = (
        "pending_transfer_has_different_credit_account_id")
    pending_transfer_has_different_ledger = "pending_transfer_has_different_ledger"
    pending_transfer_has_different_code = "pending_transfer_has_different_code"
    exceeds_pending_transfer_amount = "exceeds_pending_transfer_amount"
    pending_transfer_has_different_amount = "pending_transfer_has_different_amount"
    pending_transfer_already_posted = "pending_transfer_already_posted"
    pending_transfer_already_voided = "pending_transfer_already_voided"
    pending_transfer_expired = "pending_transfer_expired"
    debit_account_not_found = "debit_account_not_found"
    debit_participant_disabled = "debit_participant_disabled"  # its owner is disabled
    credit_account_not_found = "credit_account_not_found"
    ledger_mismatch = "ledger_mismatch"
    debit_account_closed = "debit_account_closed"
    credit_account_closed = "credit_account_closed"
    overflows_debits = "overflows_debits"
    overflows_credits = "overflows_credits"
    exceeds_transfer_max = "exceeds_transfer_max"
    exceeds_credits = "exceeds_credits"
    exceeds_debits = "exceeds_debits"
    exceeds_velocity_limit = "exceeds_velocity_limit"
    # Transient: another attempt with this id holds a reservation that recovery has not yet
    # resolved. Nothing was applied; the client retries with the same id.
    in_flight = "in_flight"


class LimitsResult(StrEnum):
    ok = "ok"
    limits_invalid = "limits_invalid"
    account_not_found = "account_not_found"
    unchanged = "unchanged"  # the same limits again: nothing to record


TRANSFER_RANK: dict[str, int] = {code: rank for rank, code in enumerate(TransferResult)}
ACCOUNT_RANK: dict[AccountResult, int] = {code: rank for rank, code in enumerate(AccountResult)}

# Codes that mean "this id was already applied": the request is a repeat.
TRANSFER_EXISTS = frozenset(
    code for code in TransferResult if code.value.startswith("exists")
)
ACCOUNT_EXISTS = frozenset(code for code in AccountResult if code.value.startswith("exists"))


TRANSFER_RESULTS: dict[str, TransferResult] = {code.value: code for code in TransferResult}
_OK = TransferResult.ok


def first_failure(first: TransferResult, second: TransferResult) -> TransferResult:
    """The lower-ranked failure of two parts of one transfer (ok if both are ok)."""
    if first is _OK:
        return second
    if second is _OK or TRANSFER_RANK[first] <= TRANSFER_RANK[second]:
        return first
    return second
