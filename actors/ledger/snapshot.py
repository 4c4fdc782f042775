"""A ledger's live state as one typed value, and back: what a snapshot stores.

Only what memory holds is in it (accounts, parts held here, open pending transfers, limits
and velocity windows, the count of transfers homed here); what the store holds (transfers,
histories, chains' decisions, final pending states) is durable by itself. So a snapshot's
size follows the number of accounts, not the number of transfers ever made.
"""

from __future__ import annotations

import msgspec

from actors.ledger.accounts import AccountRows, AccountTable
from actors.ledger.limits import Velocity
from actors.ledger.model import Account
from actors.ledger.parts import (
    FenceEntry,
    LimitsEntry,
    PendingEntry,
    Reservation,
    SettlingEntry,
    VelocityEntry,
)
from actors.ledger.registry import RegistryState
from actors.ledger.slots import SlotMovesState
from actors.ledger.state import LedgerState, Totals


class Snapshot(msgspec.Struct, array_like=True, frozen=True):
    accounts: list[Account]  # formats 2 and 3; since format 4 empty: the rows below
    homed_count: int
    reservations: list[Reservation]
    pending: list[PendingEntry]
    limits: list[LimitsEntry]
    velocity: list[VelocityEntry]
    settling: list[SettlingEntry] = []
    account_rows: AccountRows | None = None  # format 4 on: the accounts as packed rows
    registry: RegistryState | None = None  # format 5 on: participants, keys, who is disabled
    fences: list[FenceEntry] = []  # format 7 on: attempts told void that never commit
    slot_moves: SlotMovesState | None = None  # format 10 on: slots leaving or gone

    def account_structs(self) -> list[Account]:
        """The accounts as structs, whichever way this snapshot holds them (audits compare)."""
        if self.account_rows is None:
            return list(self.accounts)
        return list(AccountTable.from_rows(self.account_rows).values())


def dump(ledger: LedgerState) -> Snapshot:
    """The state now. The lists share the live objects: encode before the next batch."""
    return Snapshot(
        accounts=[],
        account_rows=ledger.accounts.snapshot_rows(),
        homed_count=ledger.homed_count,
        reservations=list(ledger.reservations.values()),
        pending=[PendingEntry(pending_id, state) for pending_id, state in ledger.pending.items()],
        limits=[LimitsEntry(account_id, limits) for account_id, limits in ledger.limits.items()],
        velocity=[VelocityEntry(account_id, velocity.state())
                  for account_id, velocity in ledger.velocity.items()],
        settling=[SettlingEntry(pending_id, since_ns)
                  for pending_id, since_ns in ledger.settling.items()],
        registry=RegistryState.of(ledger.registry) if ledger.registry.version else None,
        fences=[FenceEntry(key, sorted(attempts), chain)
                for chain, fenced in ((False, ledger.fenced_transfers),
                                      (True, ledger.fenced_chains))
                for key, attempts in fenced.items()],
        slot_moves=ledger.slot_moves if ledger.slot_moves.slots else None,
    )


def load(ledger: LedgerState, snapshot: Snapshot) -> None:
    """Into an empty ledger (its store already holds what the snapshot's record wrote)."""
    if ledger.accounts or ledger.reservations:
        raise ValueError("a snapshot loads into an empty ledger only")
    ledger.accounts = (AccountTable.from_rows(snapshot.account_rows)
                       if snapshot.account_rows is not None
                       else AccountTable.of(snapshot.accounts))
    ledger.homed_count = snapshot.homed_count
    ledger.reservations = {r.transfer.id: r for r in snapshot.reservations}
    ledger.pending = {entry.pending_id: entry.state for entry in snapshot.pending}
    ledger.rebuild_expiries()
    ledger.limits = {entry.account_id: entry.limits for entry in snapshot.limits}
    ledger.velocity = {entry.account_id: Velocity.from_state(entry.window)
                       for entry in snapshot.velocity}
    ledger.totals = Totals.of(ledger.accounts.values())
    ledger.settling = {entry.pending_id: entry.since_ns for entry in snapshot.settling}
    if snapshot.registry is not None:
        snapshot.registry.restore(ledger.registry)
    if snapshot.slot_moves is not None:
        ledger.slot_moves = msgspec.structs.replace(snapshot.slot_moves)
    for fence in snapshot.fences:
        fenced = ledger.fenced_chains if fence.chain else ledger.fenced_transfers
        fenced[fence.key] = set(fence.attempts)
