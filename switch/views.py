"""Rows from the shards as API objects, and API objects as core entities."""

from __future__ import annotations

from typing import Any

from actors.model import Account, AccountFlags, Transfer
from switch.schemas import AccountIn, TransferIn

_FLAG_NAMES = ("debits_must_not_exceed_credits", "credits_must_not_exceed_debits", "closed")


def account_from_request(item: AccountIn) -> Account:
    flags = item.flags
    bits = 0
    for name in _FLAG_NAMES:
        if getattr(flags, name):
            bits |= AccountFlags[name]
    return Account(item.id, item.ledger, item.code, item.owner, bits, item.user_data)


def transfer_from_request(item: TransferIn) -> Transfer:
    return Transfer(item.id, item.debit_account_id, item.credit_account_id, item.amount,
                    item.ledger, item.code, item.user_data)


def account_json(row: list[Any]) -> dict[str, Any]:
    account = Account.from_row(row)
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


TRANSFER_FIELDS = ("id", "debit_account_id", "credit_account_id", "amount", "ledger", "code",
                   "user_data", "timestamp")


def transfer_json(row: list[Any]) -> dict[str, Any]:
    return dict(zip(TRANSFER_FIELDS, row, strict=True))
