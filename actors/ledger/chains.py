"""Linked chains: transfers that succeed or fail as one, whatever shards they touch (pure).

Every part of every member is reserved on the shard that holds it, and each member's id is
reserved at its own home too (`Roles.home`: the id stays free until the chain is decided, and
no other transfer can take it meanwhile). The chain's *coordinator*, the home of its first
member, then reserves its own parts, merges every member's verdict and, if all are ok,
records the decision (`chain_committed`, with each member's timestamp) in the same batch in
which it finalizes its own parts. The other shards' parts are finalized after: posted (held,
for a pending member) or voided. A crash in between leaves parts in doubt; redrive asks the
coordinator, and no decision recorded means void. Nothing of a failed chain is ever posted.
A post or void holds no sides of its own: its parts are its id at its home and a claim on
its pending transfer at that one's home (`Roles.claim`), settled by the same decision.

Within a chain each member sees the ones before it: the pending credits (and debits) of
earlier members count as funds for a later member's balance checks on the same account,
since they are posted together or not at all. A pending member's do not (it may be voided),
nor do a balancing member's: its amount is decided only when every shard has limited it.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import msgspec

from actors.ledger.codes import TransferResult
from actors.ledger.exists import transfer_exists
from actors.ledger.model import BALANCING, PENDING, RESOLVES_PENDING, Roles, Transfer
from actors.ledger.pending import check_static

_R = TransferResult
_OK = TransferResult.ok

OK, EXISTS, FAILED = "ok", "exists", "failed"


@dataclass(slots=True)
class ChainFunds:
    """What earlier members of one chain hold pending on a shard's accounts."""

    credits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))
    debits: defaultdict[str, int] = field(default_factory=lambda: defaultdict(int))

    def add(self, transfer: Transfer, roles: int) -> None:
        if transfer.flags & (BALANCING | PENDING):
            # A pending member's credit may yet be voided; a balancing member's amount is
            # final only once every shard has had its say: neither is funds.
            return
        if roles & Roles.debit:
            self.debits[transfer.debit_account_id] += transfer.amount
        if roles & Roles.credit:
            self.credits[transfer.credit_account_id] += transfer.amount


def verdict(codes: list[TransferResult]) -> tuple[str, int]:
    """OK, EXISTS (every member is a repeat of a stored transfer: the chain was applied
    before) or FAILED with the index of the first failing member."""
    if all(code is _R.exists for code in codes):
        return EXISTS, -1
    for index, code in enumerate(codes):
        if code is not _OK:
            return FAILED, index
    return OK, -1


def answers(codes: list[TransferResult]) -> list[TransferResult]:
    """Each member's answer: a failed chain's first failure, and linked_event_failed."""
    kind, first = verdict(codes)
    if kind != FAILED:
        return codes
    return [code if index == first else _R.linked_event_failed
            for index, code in enumerate(codes)]


def check_chain_static(members: list[Transfer]) -> list[TransferResult]:
    """The checks a chain needs before it is sent anywhere, per member (all ok: send it).

    An id twice in one chain: the later one answers as a repeat of the earlier one would, as
    in TigerBeetle (the chain then fails, so neither is stored).
    """
    codes: list[TransferResult] = []
    seen: dict[str, Transfer] = {}
    for member in members:
        code = check_static(member)
        if code is _OK and member.id in seen:
            code = transfer_exists(seen[member.id], member)
        seen.setdefault(member.id, member)
        codes.append(code)
    return codes


class ChainPart(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A chain member's part on one shard: the member (unstamped), the roles held there, and
    the member's place in the chain."""

    transfer: Transfer
    roles: int
    member: int


def parts_by_shard(members: list[Transfer], shard_of: Callable[[str], int]
                   ) -> dict[int, list[ChainPart]]:
    """Each shard's parts of a chain, in member order. A post or void holds nothing of its
    own: its parts are its id and the claim on its pending transfer (whose held parts are
    settled once the chain is decided)."""
    parts: dict[int, list[ChainPart]] = {}
    for index, member in enumerate(members):
        roles: dict[int, int] = defaultdict(int)
        roles[shard_of(member.id)] |= Roles.home
        if member.flags & RESOLVES_PENDING:
            roles[shard_of(member.pending_id)] |= Roles.claim
        else:
            roles[shard_of(member.debit_account_id)] |= Roles.debit
            roles[shard_of(member.credit_account_id)] |= Roles.credit
        for shard, shard_roles in roles.items():
            parts.setdefault(shard, []).append(ChainPart(member, shard_roles, index))
    return parts
