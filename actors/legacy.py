"""Records and snapshots of storage format 1 (releases up to 48c71b7), read into today's types.

Format 1 stored events as orjson lists read by position, and snapshots as an orjson object
holding every transfer. This module is the one place that still reads those positions: the
codec hands it a format-1 payload and gets typed values back, so recovery, verification and
every reader above see format 1 and format 2 alike. Nothing writes format 1.
"""

from __future__ import annotations

from typing import Any

import orjson

from actors.ledger.events import (
    AccountCreated,
    ChainCommitted,
    Claim,
    Event,
    HeldSettled,
    LimitsChanged,
    PartCommitted,
    PendingClaimed,
    PendingClaimReleased,
    PendingExpired,
    PendingResolved,
    ReservationHeld,
    ReservationPosted,
    ReservationVoided,
    TransferCommitted,
    TransferReserved,
)
from actors.ledger.limits import Limits, VelocityState
from actors.ledger.model import Account, Transfer
from actors.ledger.parts import (
    LimitsEntry,
    PendingEntry,
    Reservation,
    SettlingEntry,
    VelocityEntry,
)
from actors.ledger.pending import PENDING_STATUS, PendingState, PendingStatus
from actors.ledger.snapshot import Snapshot
from actors.ledger.store import ChainDecision, StoredTransfer


class LegacyIndex:
    """What a format-1 snapshot held that today lives in the store."""

    def __init__(self) -> None:
        self.transfers: list[StoredTransfer] = []
        self.history: dict[str, list[str]] = {}
        self.chains: dict[str, ChainDecision] = {}
        self.pending_final: dict[str, PendingStatus] = {}
        # Where importing the history sets each account's head: the ledger's accounts, once
        # the snapshot is loaded (until then, the snapshot's own).
        self.accounts: Any = {}


def _transfer(row: list[Any]) -> Transfer:
    return Transfer(*row)


def _fields(fields: list[Any] | None) -> Transfer | None:
    """A transfer's client fields (a row without its timestamp)."""
    return None if fields is None else Transfer(*fields)


def _claim(claim: list[Any]) -> Claim:
    resolving_id, attempt, post, amount, *chained = claim
    if not chained:
        return Claim(resolving_id, attempt, post, amount)
    chain, member, fields = chained
    return Claim(resolving_id, attempt, post, amount, chain, member, _fields(fields))


def event(item: list[Any]) -> Event:
    """One format-1 event, by its kind and positions."""
    kind, rest = item[0], item[1:]
    match kind:
        case "account_created":
            return AccountCreated(Account(*rest[0]))
        case "transfer_committed":
            return TransferCommitted(_transfer(rest[0]), rest[1], rest[2])
        case "transfer_reserved":
            return TransferReserved(_transfer(rest[0]), *rest[1:5])
        case "reservation_posted":
            return ReservationPosted(rest[0], rest[1], rest[2] if len(rest) > 2 else 0)
        case "reservation_voided":
            return ReservationVoided(rest[0])
        case "reservation_held":
            return ReservationHeld(rest[0], rest[1] if len(rest) > 1 else 0)
        case "pending_claimed":
            return PendingClaimed(rest[0], _claim(rest[1:]))
        case "pending_claim_released":
            return PendingClaimReleased(rest[0])
        case "pending_resolved":
            return PendingResolved(rest[0], rest[1], rest[2], _transfer(rest[3]))
        case "pending_expired":
            return PendingExpired(rest[0])
        case "held_settled":
            resolution = None if rest[3] is None else _transfer(rest[3])
            return HeldSettled(rest[0], rest[1], rest[2], resolution)
        case "limits_changed":
            return LimitsChanged(rest[0], Limits(*rest[1]), rest[2])
        case "chain_committed":
            chain, attempt, timestamps, amounts, *resolving = rest
            members = resolving[0] if resolving else [None] * len(timestamps)
            return ChainCommitted(chain, attempt, timestamps, amounts,
                                  [_fields(fields) for fields in members])
        case "part_committed":
            fields = rest[3] if len(rest) > 3 else None
            return PartCommitted(rest[0], rest[1], rest[2], _fields(fields))
    raise ValueError(f"unknown format-1 event kind {kind!r}")


def events(payload: bytes) -> list[Event]:
    items = orjson.loads(payload)
    if not isinstance(items, list) or not items:
        raise ValueError("a format-1 record holds a non-empty list of events")
    return [event(item) for item in items]


def snapshot(body: bytes) -> tuple[Snapshot, LegacyIndex]:
    """A format-1 snapshot: the live state, and the part that today lives in the store."""
    data = orjson.loads(body)
    index = LegacyIndex()
    attempts = dict(data["commit_attempts"])
    rows = [_transfer(row) for row in data["transfers"]]
    index.transfers = [StoredTransfer(t, attempts.get(t.id, 0)) for t in rows]
    index.history = {account_id: [rows[position].id for position in positions]
                     for account_id, positions in data["history"].items()}
    for key, (attempt, timestamps, amounts, *resolving) in data["chains"]:
        members = resolving[0] if resolving else [None] * len(timestamps)
        index.chains[key] = ChainDecision(attempt, timestamps, amounts,
                                          [_fields(fields) for fields in members])
    pending, settling = [], []
    for pending_id, status, expires_at_ns, claim, amount_posted, resolution in data["pending"]:
        state = PendingState(status, expires_at_ns, None if claim is None else _claim(claim),
                             amount_posted, None if resolution is None else _transfer(resolution))
        if status == PENDING_STATUS:
            pending.append(PendingEntry(pending_id, state))
        else:
            index.pending_final[pending_id] = PendingStatus(status, amount_posted,
                                                            state.resolution)
            # The old format did not say whether its held parts were settled: every final
            # one goes to the outbox (settling a part again is a no-op), as replaying the
            # old log would put it (PendingResolved / PendingExpired).
            settling.append(SettlingEntry(pending_id, expires_at_ns if state.resolution is None
                                          else state.resolution.timestamp))
    live = Snapshot(
        accounts=[Account(*row) for row in data["accounts"]],
        homed_count=data["homed_count"],
        reservations=[Reservation(_transfer(row), *fields) for row, *fields in
                      data["reservations"]],
        pending=pending,
        limits=[LimitsEntry(account_id, Limits(*row)) for account_id, row in data["limits"]],
        velocity=[VelocityEntry(account_id, VelocityState(window_ns, [tuple(d) for d in debits]))
                  for account_id, (window_ns, debits) in data["velocity"]],
        settling=settling,
    )
    index.accounts = {account.id: account for account in live.accounts}
    return live, index
