"""A linked chain through the router's rounds (the rules are in actors/ledger/chains.py).

  A. reserve: every shard but the coordinator reserves its parts of the chain, in order;
  B. commit: the coordinator (the first member's home) reserves its own parts, merges the
     verdicts and, if every member is ok, records the decision and finalizes its own parts,
     all in one durable batch: the acknowledgement point;
  C. finalize: the other shards' parts are posted (held, for pending members) or voided.
A chain that lives on its coordinator alone takes round B only, in one batch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.ledger import chains
from actors.ledger.codes import TRANSFER_RESULTS, TransferResult, first_failure
from actors.ledger.model import BALANCING, POST_PENDING, Transfer
from actors.ledger.store import ChainDecision
from actors.ledger.verdicts import chain_part_outcome
from actors.messages import (
    Asked,
    ChainReply,
    Command,
    CommitChain,
    Finalize,
    FinalizeClaim,
    PartsReply,
    ReserveChain,
    Settle,
)
from switch.routing.channel import ShardUnavailable, SlotMoving

Outcome = tuple[str, Any] | BaseException
Call = tuple[int, Command]
_OK = TransferResult.ok


@dataclass
class ChainRun:
    indexes: list[int]  # the members' places in the request
    members: list[Transfer]
    coordinator: int
    attempt: int
    parts: dict[int, list[chains.ChainPart]]  # per shard, in member order
    shard_of: Callable[[str], int]
    reserved: dict[int, PartsReply | BaseException] = field(default_factory=dict)  # round A
    committed: ChainReply | BaseException | None = None  # the coordinator's reply, or error

    @classmethod
    def build(cls, indexes: list[int], members: list[Transfer], shard_of: Callable[[str], int],
              attempt: int) -> ChainRun:
        return cls(indexes, members, shard_of(members[0].id), attempt,
                   chains.parts_by_shard(members, shard_of), shard_of)

    @property
    def key(self) -> str:
        return self.members[0].id

    @property
    def remote_shards(self) -> list[int]:
        return [shard for shard in self.parts if shard != self.coordinator]

    def reserve_calls(self) -> list[Call]:
        return [(shard, ReserveChain(self.key, self.attempt, self.parts[shard]))
                for shard in self.remote_shards]

    def commit_call(self) -> Call:
        codes = [_OK] * len(self.members)
        # Per member: its balancing rules on other shards (None: not balancing), and a post's
        # or void's fields as stored, if its claim was taken on another shard.
        rules: list[list[Any] | None] = [[] if m.flags & BALANCING else None
                                         for m in self.members]
        filled: list[Transfer | None] = [None] * len(self.members)
        for shard, reply in self.reserved.items():
            for index, part in enumerate(self.parts[shard]):
                member = part.member
                if not isinstance(reply, PartsReply):
                    codes[member] = first_failure(codes[member], TransferResult.in_flight)
                    continue
                answer = reply.parts[index]
                codes[member] = first_failure(codes[member], TRANSFER_RESULTS[answer.result])
                member_rules = rules[member]
                if answer.rules and member_rules is not None:
                    member_rules.extend(answer.rules)
                if answer.filled is not None:
                    filled[member] = answer.filled
        asked = [Asked(m.amount, rules[i], filled[i]) for i, m in enumerate(self.members)]
        return self.coordinator, CommitChain(self.key, self.attempt,
                                             self.parts.get(self.coordinator, []),
                                             [str(code) for code in codes], asked)

    def outcomes(self) -> list[Outcome]:
        """Each member's answer, in chain order."""
        reply = self.committed
        if not isinstance(reply, ChainReply):
            error = reply if isinstance(reply, BaseException) else ShardUnavailable("no reply")
            return [error] * len(self.members)
        errors = [r for r in self.reserved.values() if isinstance(r, BaseException)]
        answers = chains.answers([TRANSFER_RESULTS[code] for code in reply.codes])
        decision = reply.decision
        if errors and decision is None and chains.verdict(answers)[0] != chains.EXISTS:
            return [errors[0]] * len(self.members)
        stored = {entry.member: entry.transfer for entry in reply.stored}
        for shard, shard_reply in self.reserved.items():
            if isinstance(shard_reply, PartsReply):
                for part, answer in zip(self.parts[shard], shard_reply.parts, strict=True):
                    if answer.stored is not None:
                        stored[part.member] = answer.stored
        found: list[Outcome] = []
        for index, code in enumerate(answers):
            if code is _OK and decision is not None:
                found.append((code, _committed_member(self.members[index], index, decision)))
            else:
                found.append((code, stored.get(index) if code.startswith("exists") else None))
        return found

    def finalize_calls(self) -> list[Call]:
        """Round C: settle the parts round A reserved, by the coordinator's decision."""
        reply = self.committed
        if isinstance(reply, SlotMoving):  # the coordinator applied nothing: never commits
            decision = None
        elif not isinstance(reply, ChainReply):
            return []  # no answer from the coordinator: only its decision decides; redrive asks
        else:
            decision = reply.decision
        calls: list[Call] = []
        for shard, shard_reply in self.reserved.items():
            if not isinstance(shard_reply, PartsReply):
                continue  # unknown: any part it holds is in doubt, for redrive
            for part, answer in zip(self.parts[shard], shard_reply.parts, strict=True):
                member = self.members[part.member]
                outcome, timestamp, amount, resolving = chain_part_outcome(
                    member, part.member, decision)
                if answer.filled is not None:  # the claim it took on a pending transfer there
                    resolution = None if decision is None else answer.filled.stamped(timestamp)
                    calls.append((shard, FinalizeClaim(member.pending_id, member.id,
                                                       self.attempt, resolution)))
                if answer.held is not None:
                    calls.append((shard, Finalize(member.id, self.attempt, outcome, timestamp,
                                                  amount, resolving)))
        return calls + self._settle_calls(decision)

    def _settle_calls(self, decision: ChainDecision | None) -> list[Call]:
        """The held parts of the pending transfers the chain's posts and voids resolved."""
        if decision is None:
            return []
        calls: list[Call] = []
        for member, timestamp, resolving in zip(self.members, decision.timestamps,
                                                decision.resolving, strict=True):
            if resolving is not None:
                resolution = resolving.stamped(timestamp)
                post = bool(member.flags & POST_PENDING)
                calls += settles(self.shard_of, member.pending_id, resolving, post,
                                 resolving.amount if post else 0, resolution)
        return calls


def settles(shard_of: Callable[[str], int], pending_id: str, pending: Transfer, post: bool,
            amount: int, resolution: Transfer | None) -> list[tuple[int, Settle]]:
    """A final pending transfer's settle commands: one per shard holding its sides, naming
    the sides it expects there."""
    by_shard: dict[int, list[str]] = {}
    for account_id in (pending.debit_account_id, pending.credit_account_id):
        by_shard.setdefault(shard_of(account_id), []).append(account_id)
    return [(shard, Settle(pending_id, post, amount, resolution, accounts))
            for shard, accounts in sorted(by_shard.items())]


def _committed_member(member: Transfer, index: int, decision: ChainDecision) -> Transfer:
    """A member as its chain committed it: stamped, with its decided amount (a post or void
    as stored, what it left out filled from its pending transfer)."""
    resolving = decision.resolving[index]
    if resolving is not None:
        return resolving.stamped(decision.timestamps[index])
    return member.stamped(decision.timestamps[index]).resized(decision.amounts[index])
