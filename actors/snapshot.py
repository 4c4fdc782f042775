"""A ledger's whole state as plain data, and back: what a snapshot stores.

Transfers appear once (in `transfers`) and per-account histories refer to them by id, so a
snapshot neither repeats a transfer nor loads it as several objects.
"""

from __future__ import annotations

from dataclasses import fields
from itertools import starmap
from operator import attrgetter
from typing import Any

from actors.ledger import Ledger, Reservation
from actors.model import Account, Transfer

# A snapshot blocks its shard while it is taken: attrgetter builds each row in C.
_ACCOUNT_ROW = attrgetter(*(f.name for f in fields(Account)))
_TRANSFER_ROW = attrgetter(*(f.name for f in fields(Transfer)))
_ID = attrgetter("id")


def dump(ledger: Ledger) -> dict[str, Any]:
    return {
        "accounts": list(map(_ACCOUNT_ROW, ledger.accounts.values())),
        "transfers": list(map(_TRANSFER_ROW, ledger.transfers.values())),
        "homed_count": ledger.homed_count,
        "commit_attempts": list(ledger.commit_attempts.items()),
        "history": {
            account_id: list(map(_ID, entries)) for account_id, entries in ledger.history.items()
        },
        "reservations": [
            [r.transfer.row(), r.roles, r.attempt] for r in ledger.reservations.values()
        ],
    }


def load(ledger: Ledger, data: dict[str, Any]) -> None:
    assert not ledger.accounts and not ledger.transfers, "load into an empty ledger only"
    accounts = starmap(Account, data["accounts"])
    ledger.accounts = {account.id: account for account in accounts}
    transfers = ledger.transfers = {t.id: t for t in starmap(Transfer, data["transfers"])}
    ledger.homed_count = data["homed_count"]
    ledger.commit_attempts = dict(data["commit_attempts"])
    ledger.history = {
        account_id: [transfers[transfer_id] for transfer_id in ids]
        for account_id, ids in data["history"].items()
    }
    ledger.reservations = {
        row[0]: Reservation(Transfer.from_row(row), roles, attempt)
        for row, roles, attempt in data["reservations"]
    }
