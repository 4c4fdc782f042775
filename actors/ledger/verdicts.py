"""What a part or a claim left in doubt becomes, from its decider's answer (pure).

A part of a cross-shard transfer is decided by its transfer's home (`Ledger.resolve`), a
part of a linked chain by the chain's coordinator (`Ledger.resolve_chain`); a claim on a
pending transfer by its post or void's decider, the same way. The router's finalize round,
redrive and the WAL tool's audit all settle them with these, so they settle alike.
"""

from __future__ import annotations

from collections.abc import Callable

from actors.ledger.ledger import HOLD, POST, VOID, Verdict
from actors.ledger.model import PENDING, Roles, Transfer
from actors.ledger.queries import PartInDoubt
from actors.ledger.store import ChainDecision

Outcome = tuple[str, int, int, Transfer | None]  # finalize_reservation's arguments


def chain_part_outcome(member: Transfer, index: int, decision: ChainDecision | None
                       ) -> Outcome:
    """What a chain member's part becomes by its coordinator's decision (None: not
    committed): the outcome, the member's commit timestamp, its amount and (a post or void)
    its fields as stored."""
    if decision is None:
        return VOID, 0, 0, None
    outcome = HOLD if member.flags & PENDING else POST
    return (outcome, decision.timestamps[index], decision.amounts[index],
            decision.resolving[index])


def part_verdict(transfer: Transfer, chain: str, member: int,
                 verdict: Verdict | ChainDecision | None) -> Outcome:
    """A part in doubt, by what its decider answered: its transfer's home (`resolve`, a
    Verdict) or its chain's coordinator (`resolve_chain`, a decision or None)."""
    if chain:
        return chain_part_outcome(transfer, member, _chain_decision(verdict))
    home = _home_verdict(verdict)
    committed = home.transfer
    return (home.outcome, committed.timestamp if committed else 0,
            committed.amount if committed else 0, None)


def claim_verdict(chain: str, member: int, verdict: Verdict | ChainDecision | None
                  ) -> Transfer | None:
    """A claim in doubt, by what its post or void's decider answered: the post or void as it
    was stored, or None (not committed: release the claim)."""
    if chain:
        decision = _chain_decision(verdict)
        if decision is None:
            return None
        resolving = decision.resolving[member]
        if resolving is None:
            raise ValueError(f"chain {chain} member {member} claims but resolves nothing")
        return resolving.stamped(decision.timestamps[member])
    home = _home_verdict(verdict)
    return None if home.outcome == VOID else home.transfer


# Checked however Python runs (-O drops asserts): a part is decided by its own decider only.
def _chain_decision(verdict: Verdict | ChainDecision | None) -> ChainDecision | None:
    if isinstance(verdict, Verdict):
        raise TypeError("a chain's part was given a transfer's verdict")
    return verdict


def _home_verdict(verdict: Verdict | ChainDecision | None) -> Verdict:
    if not isinstance(verdict, Verdict):
        raise TypeError(f"a transfer's part was given {type(verdict).__name__}, not its verdict")
    return verdict


def is_staged(part: PartInDoubt) -> bool:
    """A transfer staged at its home (this part is the home's), not yet decided there."""
    return bool(part.roles & Roles.home) and not part.chain


def remote_shards(part: PartInDoubt, shard_of: Callable[[str], int]) -> set[int]:
    """The shards holding a staged transfer's other parts: its sides its home does not."""
    transfer = part.transfer
    shards = set()
    if not part.roles & Roles.debit:
        shards.add(shard_of(transfer.debit_account_id))
    if not part.roles & Roles.credit:
        shards.add(shard_of(transfer.credit_account_id))
    return shards


def staged_decision(transfer: Transfer) -> str:
    """What a staged transfer whose every part is there becomes at its home."""
    return HOLD if transfer.flags & PENDING else POST
