"""A ledger's whole state as plain data, and back: what a snapshot stores.

Transfers appear once (in `transfers`), and the id index and per-account histories refer to
them by id, so a snapshot neither repeats a transfer nor loads it as several objects.
"""

from __future__ import annotations

from typing import Any

from actors.ledger import Ledger, Reservation
from actors.model import Account, Transfer


def dump(ledger: Ledger) -> dict[str, Any]:
    known: dict[str, Transfer] = dict(ledger.transfers)
    for entries in ledger.history.values():
        for transfer in entries:
            known.setdefault(transfer.id, transfer)
    return {
        "accounts": [account.row() for account in ledger.accounts.values()],
        "transfers": [transfer.row() for transfer in known.values()],
        "homed": list(ledger.transfers),
        "commit_attempts": list(ledger.commit_attempts.items()),
        "history": {
            account_id: [transfer.id for transfer in entries]
            for account_id, entries in ledger.history.items()
        },
        "reservations": [
            [r.transfer.row(), r.roles, r.attempt] for r in ledger.reservations.values()
        ],
    }


def load(ledger: Ledger, data: dict[str, Any]) -> None:
    assert not ledger.accounts and not ledger.transfers, "load into an empty ledger only"
    ledger.accounts = {row[0]: Account.from_row(row) for row in data["accounts"]}
    known = {row[0]: Transfer.from_row(row) for row in data["transfers"]}
    ledger.transfers = {transfer_id: known[transfer_id] for transfer_id in data["homed"]}
    ledger.commit_attempts = dict(data["commit_attempts"])
    ledger.history = {
        account_id: [known[transfer_id] for transfer_id in ids]
        for account_id, ids in data["history"].items()
    }
    ledger.reservations = {
        row[0]: Reservation(Transfer.from_row(row), roles, attempt)
        for row, roles, attempt in data["reservations"]
    }
