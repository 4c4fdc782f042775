"""Read-only views of a ledger's live state: what redrive must settle, per-ledger totals.

Each lists only what is live (parts held here, open pending transfers), so its cost follows
what is in doubt, not the ledger's history.
"""

from __future__ import annotations

import msgspec

from actors.ledger.model import Transfer
from actors.ledger.pending import PendingStatus
from actors.ledger.state import LedgerState


class PartInDoubt(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A reserved part waiting for its decider: its transfer's home, or its chain's
    coordinator when `chain` is set."""

    transfer: Transfer
    roles: int
    attempt: int
    chain: str
    member: int


class HeldPart(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A part of a committed pending transfer held here until its home resolves it."""

    pending_id: str
    roles: int


class ClaimInDoubt(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A pending transfer locked by a post or void whose decider (its home, or its chain's
    coordinator) has not been heard from."""

    pending_id: str
    resolving_id: str
    attempt: int
    chain: str
    member: int


class Settling(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A final pending transfer whose held parts may not all be settled: what to send them."""

    pending_id: str
    status: PendingStatus
    debit_account_id: str
    credit_account_id: str


class LedgerTotals(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A ledger's sums over accounts, as decimal strings: exact at any size (a message's
    integers hold 64 bits, and sums over many accounts can pass 2^64)."""

    ledger: str
    debits_posted: str
    credits_posted: str
    debits_pending: str
    credits_pending: str

    def values(self) -> tuple[int, int, int, int]:
        return (int(self.debits_posted), int(self.credits_posted), int(self.debits_pending),
                int(self.credits_pending))


def in_doubt(ledger: LedgerState, reserved_before_ns: int) -> list[PartInDoubt]:
    """Reservations waiting for their home's decision: what recovery must re-drive.

    Only those reserved before the given time: younger ones are almost always still under way.
    """
    return [PartInDoubt(r.transfer, r.roles, r.attempt, r.chain, r.member)
            for r in ledger.reservations.values()
            if not r.held and r.transfer.timestamp <= reserved_before_ns]


def held_parts(ledger: LedgerState, reserved_before_ns: int) -> list[HeldPart]:
    """Parts of committed pending transfers held here: settled once their home resolves them."""
    return [HeldPart(r.transfer.id, r.roles) for r in ledger.reservations.values()
            if r.held and r.transfer.timestamp <= reserved_before_ns]


def claims_in_doubt(ledger: LedgerState) -> list[ClaimInDoubt]:
    return [ClaimInDoubt(pending_id, state.claim.resolving_id, state.claim.attempt,
                         state.claim.chain, state.claim.member)
            for pending_id, state in ledger.pending.items() if state.claim is not None]


def settling(ledger: LedgerState, final_before_ns: int) -> list[Settling]:
    """Final pending transfers homed here whose parts may still be held (final for some
    time: younger ones are almost always being settled by the round that resolved them)."""
    found = []
    for pending_id, since_ns in list(ledger.settling.items()):
        status, pending = ledger.pending_status(pending_id), ledger.stored(pending_id)
        if since_ns <= final_before_ns and status is not None and pending is not None:
            found.append(Settling(pending_id, status, pending.debit_account_id,
                                  pending.credit_account_id))
    return found


def totals(ledger: LedgerState) -> list[LedgerTotals]:
    """Per ledger, the sums kept as events were applied: no scan of the accounts."""
    return [LedgerTotals(code, *map(str, sums))
            for code, sums in sorted(list(ledger.totals.by_ledger.items()))]


def add_totals(into: dict[str, list[int]], totals_list: list[LedgerTotals]) -> None:
    """Sum shards' totals per ledger (exactly)."""
    for entry in totals_list:
        sums = into.setdefault(entry.ledger, [0, 0, 0, 0])
        for index, value in enumerate(entry.values()):
            sums[index] += value
