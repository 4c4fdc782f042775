"""The API's JSON, to and from the core's own types (actors/ledger/model.py, codes.py): the
client and the server share one definition of an account, a transfer and each result code.
Imports nothing of the server (no Ray, no pydantic)."""

from __future__ import annotations

from typing import Any

from actors.ledger.model import (
    TRANSFER_FLAG_BITS,
    Account,
    AccountFlags,
    Transfer,
    TransferFlags,
)

ACCOUNT_FLAG_NAMES = tuple(flag.name or "" for flag in AccountFlags)
UNSPECIFIED_CODE = -1  # a post or void that leaves `code` out (actors/ledger/pending.py)


def transfer_body(transfer: Transfer) -> dict[str, Any]:
    """A transfer as POST /v1/transfers takes it: what the client chose (a post or void may
    leave the pending transfer's fields out: empty strings, amount 0, code -1)."""
    body: dict[str, Any] = {"id": transfer.id}
    if transfer.debit_account_id:  # (attributes one by one: one dict a call, kept cheap)
        body["debit_account_id"] = transfer.debit_account_id
    if transfer.credit_account_id:
        body["credit_account_id"] = transfer.credit_account_id
    if transfer.ledger:
        body["ledger"] = transfer.ledger
    if transfer.pending_id:
        body["pending_id"] = transfer.pending_id
    if transfer.amount:
        body["amount"] = transfer.amount
    if transfer.code != UNSPECIFIED_CODE:
        body["code"] = transfer.code
    if transfer.user_data:
        body["user_data"] = transfer.user_data
    if transfer.timeout_ms:
        body["timeout_ms"] = transfer.timeout_ms
    if transfer.flags:
        body["flags"] = {name: True for name, bit in TRANSFER_FLAG_BITS if transfer.flags & bit}
    return body


def account_body(account: Account) -> dict[str, Any]:
    body: dict[str, Any] = {"id": account.id, "ledger": account.ledger, "code": account.code,
                            "owner": account.owner}
    if account.user_data:
        body["user_data"] = account.user_data
    flags = {name: True for name in ACCOUNT_FLAG_NAMES if account.flags & AccountFlags[name]}
    if flags:
        body["flags"] = flags
    return body


def transfer_of(shown: dict[str, Any]) -> Transfer:
    """A transfer as the API shows it."""
    flags = sum(int(TransferFlags[name]) for name, on in shown["flags"].items() if on)
    return Transfer(shown["id"], shown["debit_account_id"], shown["credit_account_id"],
                    shown["amount"], shown["ledger"], shown["code"], shown["user_data"], flags,
                    shown["pending_id"] or "", shown["timeout_ms"], shown["timestamp"],
                    shown.get("key_id", ""), shown.get("participant_id", ""))


def account_of(shown: dict[str, Any]) -> Account:
    """An account as the API shows it (balances as they were when read)."""
    flags = sum(int(AccountFlags[name]) for name, on in shown["flags"].items() if on)
    return Account(shown["id"], shown["ledger"], shown["code"], shown["owner"], flags,
                   shown["user_data"], shown["timestamp"], shown["debits_posted"],
                   shown["credits_posted"], shown["debits_pending"], shown["credits_pending"])
