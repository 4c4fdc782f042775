"""What a part or a claim left in doubt becomes, from its decider's answer (pure).

A part of a cross-shard transfer is decided by its transfer's home (`Ledger.resolve`), a
part of a linked chain by the chain's coordinator (`Ledger.resolve_chain`); a claim on a
pending transfer by its post or void's decider, the same way. The router's finalize round,
redrive and the WAL tool's audit all settle them with these, so they settle alike.
"""

from __future__ import annotations

from typing import Any

from actors.ledger.ledger import HOLD, POST, VOID
from actors.ledger.model import PENDING, Transfer


def chain_part_outcome(member: Transfer, index: int, decision: list[Any] | None
                       ) -> tuple[str, int, int, list[Any] | None]:
    """What a chain member's part becomes by its coordinator's decision ([timestamps, amounts,
    posts' and voids' fields], or None: not committed): the outcome, the member's commit
    timestamp, its amount and (a post or void) its fields as stored."""
    if decision is None:
        return VOID, 0, 0, None
    timestamps, amounts, resolving = decision
    outcome = HOLD if member.flags & PENDING else POST
    return outcome, timestamps[index], amounts[index], resolving[index]


def part_verdict(row: list[Any], chain: str, member: int, verdict: Any
                 ) -> tuple[str, int, int, list[Any] | None]:
    """A part in doubt, by what its decider answered: its transfer's home (`resolve`) or its
    chain's coordinator (`resolve_chain`). The arguments of its `finalize_reservation`."""
    if chain:
        return chain_part_outcome(Transfer.from_row(row), member, verdict)
    outcome, timestamp, committed = verdict
    return outcome, timestamp, committed[3] if committed else 0, None


def claim_verdict(chain: str, member: int, verdict: Any) -> list[Any] | None:
    """A claim in doubt, by what its post or void's decider answered: the row it was stored
    with, or None (not committed: release the claim)."""
    if chain:
        return None if verdict is None else [*verdict[2][member], verdict[0][member]]
    return None if verdict[0] == VOID else list(verdict[2])
