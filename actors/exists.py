"""What a repeat of an id answers: `exists`, or the first field that differs."""

from __future__ import annotations

from actors.codes import AccountResult, TransferResult
from actors.model import Account, Transfer

_R = TransferResult


def account_exists(existing: Account, account: Account) -> AccountResult:
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


def transfer_exists(existing: Transfer, transfer: Transfer) -> TransferResult:
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
    if existing.flags != transfer.flags:
        return _R.exists_with_different_flags
    if existing.pending_id != transfer.pending_id:
        return _R.exists_with_different_pending_id
    if existing.timeout_ms != transfer.timeout_ms:
        return _R.exists_with_different_timeout_ms
    return _R.exists
