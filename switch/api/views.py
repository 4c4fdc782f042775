"""Rows from the shards as API objects, and API objects as core entities."""

from __future__ import annotations

from typing import Any

from actors.ledger.limits import Limits
from actors.ledger.model import TRANSFER_FLAG_BITS, Account, AccountFlags, Transfer
from actors.ledger.pending import UNSPECIFIED_CODE, PendingStatus
from switch.api.fast_parse import AccountWire, TransferWire
from switch.api.schemas import AccountIn, LimitsIn, TransferIn

_FLAG_NAMES = ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits", "closed",
               "history")


def account_from_request(item: AccountIn | AccountWire) -> Account:
    flags = item.flags
    bits = 0
    for name in _FLAG_NAMES:
        if getattr(flags, name):
            bits |= AccountFlags[name]
    return Account(item.id, item.ledger, item.code, item.owner, bits, item.user_data)


def transfer_from_request(item: TransferIn | TransferWire, key_id: str = "",
                          participant_id: str = "") -> Transfer:
    """`key_id` and `participant_id`: who sends it (participant "": the operator)."""
    flags = item.flags
    bits = 0
    for name, bit in TRANSFER_FLAG_BITS:
        if getattr(flags, name):
            bits |= bit
    return Transfer(item.id, item.debit_account_id or "", item.credit_account_id or "",
                    item.amount or 0, item.ledger or "",
                    UNSPECIFIED_CODE if item.code is None else item.code, item.user_data, bits,
                    item.pending_id or "", item.timeout_ms, 0, key_id, participant_id)


LIMIT_FIELDS = ("transfer_max", "overdraft", "velocity_max", "velocity_window_ms")


def limits_of(item: AccountIn | AccountWire | LimitsIn) -> Limits | None:
    limits = item if isinstance(item, LimitsIn) else item.limits
    return None if limits is None else Limits(*(getattr(limits, name) for name in LIMIT_FIELDS))


def account_json(account: Account, limits: Limits | None = None) -> dict[str, Any]:
    """An account as the API shows it (with its limits when they are given)."""
    shown = _account_fields(account)
    if limits is not None:
        shown["limits"] = {name: getattr(limits, name) for name in LIMIT_FIELDS}
    return shown


def _account_fields(account: Account) -> dict[str, Any]:
    return {
        "id": account.id,
        "ledger": account.ledger,
        "code": account.code,
        "owner": account.owner,
        "flags": {name: bool(account.flags & AccountFlags[name]) for name in _FLAG_NAMES},
        "user_data": account.user_data,
        "timestamp": account.timestamp,
        "debits_posted": account.debits_posted,
        "credits_posted": account.credits_posted,
        "debits_pending": account.debits_pending,
        "credits_pending": account.credits_pending,
    }


def transfer_json(transfer: Transfer, status: PendingStatus | None = None) -> dict[str, Any]:
    """A transfer as the API shows it; `status`, a pending transfer's at its home, when known."""
    shown = {
        "id": transfer.id, "debit_account_id": transfer.debit_account_id,
        "credit_account_id": transfer.credit_account_id, "amount": transfer.amount,
        "ledger": transfer.ledger, "code": transfer.code, "user_data": transfer.user_data,
        "flags": {name: bool(transfer.flags & bit) for name, bit in TRANSFER_FLAG_BITS},
        "pending_id": transfer.pending_id or None, "timeout_ms": transfer.timeout_ms,
        "timestamp": transfer.timestamp, "key_id": transfer.key_id,
        "participant_id": transfer.participant_id,
    }
    if status is not None:
        shown["status"], shown["amount_posted"] = status.status, status.amount_posted
    return shown
