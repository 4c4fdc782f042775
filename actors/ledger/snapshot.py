"""A ledger's whole state as plain data, and back: what a snapshot stores.

Transfers appear once (in `transfers`) and per-account histories refer to them by position,
so a snapshot neither repeats a transfer nor loads it as several objects.
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, fields
from itertools import starmap
from operator import attrgetter
from typing import Any

from actors.ledger.ledger import Ledger, Reservation
from actors.ledger.limits import Limits, Velocity
from actors.ledger.model import Account, Transfer
from actors.ledger.pending import PendingState

# A snapshot blocks its shard while it is taken: attrgetter builds each row in C.
_ACCOUNT_ROW = attrgetter(*(f.name for f in fields(Account)))
_TRANSFER_ROW = attrgetter(*(f.name for f in fields(Transfer)))


@dataclass(frozen=True, slots=True)
class Cut:
    """A consistent view of a ledger, cheap to take: mutable parts copied, the rest shared.

    Accounts change, so their rows are copied. Transfers never change once applied, so the
    cut shares them; histories only grow, so the cut keeps each list with its length then.
    """

    accounts: list[tuple[Any, ...]]
    transfers: list[Transfer]
    homed_count: int
    commit_attempts: list[tuple[str, int]]
    chains: list[tuple[str, list[Any]]]
    history: list[tuple[str, list[Transfer]]]
    history_lengths: list[int]
    reservations: list[list[Any]]
    pending: list[list[Any]]
    limits: list[list[Any]]
    velocity: list[list[Any]]


def cut(ledger: Ledger) -> Cut:
    """Runs on the shard's own thread, between batches: C-level copies only."""
    return Cut(
        accounts=list(map(_ACCOUNT_ROW, ledger.accounts.values())),
        transfers=list(ledger.transfers.values()),
        homed_count=ledger.homed_count,
        commit_attempts=list(ledger.commit_attempts.items()),
        chains=list(ledger.chains.items()),
        history=list(ledger.history.items()),
        history_lengths=list(map(len, ledger.history.values())),
        reservations=[[r.transfer.row(), r.roles, r.attempt, r.held, r.chain, r.member]
                      for r in ledger.reservations.values()],
        pending=[[pending_id, *state.row()] for pending_id, state in ledger.pending.items()],
        limits=[[account_id, limits.row()] for account_id, limits in ledger.limits.items()],
        velocity=[[account_id, v.row()] for account_id, v in ledger.velocity.items()],
    )


def finish(view: Cut) -> dict[str, Any]:
    """The heavy part, safe on another thread while the shard goes on: reads only the cut.

    Histories refer to transfers by their position in `transfers`: loading then indexes a
    list instead of hashing an id string per entry (the bulk of a snapshot's load time).
    """
    position = {id(transfer): index for index, transfer in enumerate(view.transfers)}
    where = position.__getitem__
    return {
        "accounts": view.accounts,
        "transfers": list(map(_TRANSFER_ROW, view.transfers)),
        "homed_count": view.homed_count,
        "commit_attempts": view.commit_attempts,
        "chains": view.chains,
        "history": {
            account_id: list(map(where, map(id, entries[:length])))
            for (account_id, entries), length in zip(view.history, view.history_lengths,
                                                     strict=True)
        },
        "reservations": view.reservations,
        "pending": view.pending,
        "limits": view.limits,
        "velocity": view.velocity,
    }


def dump(ledger: Ledger) -> dict[str, Any]:
    return finish(cut(ledger))


def load(ledger: Ledger, data: dict[str, Any]) -> None:
    assert not ledger.accounts and not ledger.transfers, "load into an empty ledger only"
    accounts = starmap(Account, data["accounts"])
    ledger.accounts = {account.id: account for account in accounts}
    rows = list(starmap(Transfer, data["transfers"]))
    ledger.transfers = {transfer.id: transfer for transfer in rows}
    ledger.homed_count = data["homed_count"]
    ledger.commit_attempts = dict(data["commit_attempts"])
    ledger.chains = dict(data["chains"])
    at = rows.__getitem__
    ledger.history = defaultdict(list, {
        account_id: list(map(at, positions)) for account_id, positions in data["history"].items()
    })
    ledger.reservations = {
        row[0]: Reservation(Transfer.from_row(row), *fields)
        for row, *fields in data["reservations"]
    }
    ledger.pending = {pending_id: PendingState(*state) for pending_id, *state in data["pending"]}
    ledger.rebuild_expiries()
    ledger.limits = {account_id: Limits(*row) for account_id, row in data["limits"]}
    ledger.velocity = {account_id: Velocity.from_row(row) for account_id, row in data["velocity"]}
