"""A linked chain through the router's rounds (the rules are in actors/chains.py).

  A. reserve: every shard but the coordinator reserves its parts of the chain, in order;
  B. commit: the coordinator (the first member's home) reserves its own parts, merges the
     verdicts and, if every member is ok, records the decision and finalizes its own parts,
     all in one durable batch: the acknowledgement point;
  C. finalize: the other shards' parts are posted (held, for pending members) or voided.
A chain that lives on its coordinator alone takes round B only, in one batch.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors import messages as p
from actors.ledger import chains
from actors.ledger.codes import TRANSFER_RESULTS, TransferResult, first_failure
from actors.ledger.model import BALANCING, POST_PENDING, Transfer
from actors.ledger.verdicts import chain_part_outcome
from switch.routing.channel import ShardUnavailable

Reply = Any
Outcome = tuple[str, list[Any] | None] | BaseException
_OK = TransferResult.ok


@dataclass
class ChainRun:
    indexes: list[int]  # the members' places in the request
    members: list[Transfer]
    coordinator: int
    attempt: int
    parts: dict[int, list[list[Any]]]  # shard -> [[fields, roles, member index], ...]
    shard_of: Any
    reserved: dict[int, Reply] = field(default_factory=dict)  # round A replies per shard
    committed: Reply = None  # the coordinator's reply, or the error that hid it

    @classmethod
    def build(cls, indexes: list[int], members: list[Transfer], shard_of: Any,
              attempt: int) -> ChainRun:
        return cls(indexes, members, shard_of(members[0].id), attempt,
                   chains.parts_by_shard(members, shard_of), shard_of)

    @property
    def key(self) -> str:
        return self.members[0].id

    @property
    def remote_shards(self) -> list[int]:
        return [shard for shard in self.parts if shard != self.coordinator]

    def reserve_calls(self) -> list[tuple[int, list[Any]]]:
        return [(shard, [p.OP_RESERVE_CHAIN, self.key, self.attempt, self.parts[shard]])
                for shard in self.remote_shards]

    def commit_call(self) -> tuple[int, list[Any]]:
        codes = [_OK] * len(self.members)
        # Per member: the amount asked, its balancing rules on other shards (None: not
        # balancing), and a post's or void's fields as stored, if its claim was taken.
        asked: list[list[Any]] = [[m.amount, [] if m.flags & BALANCING else None, None]
                                  for m in self.members]
        for shard, reply in self.reserved.items():
            for index, part in enumerate(self.parts[shard]):
                member = part[2]
                if isinstance(reply, BaseException):
                    codes[member] = first_failure(codes[member], TransferResult.in_flight)
                    continue
                code, _, _, rules, filled = reply[index]
                codes[member] = first_failure(codes[member], TRANSFER_RESULTS[code])
                if rules:
                    asked[member][1] += rules
                if filled is not None:
                    asked[member][2] = filled
        return self.coordinator, [p.OP_COMMIT_CHAIN, self.key, self.attempt,
                                  self.parts.get(self.coordinator, []), codes, asked]

    def outcomes(self) -> list[Outcome]:
        """Each member's answer, in chain order."""
        reply = self.committed
        if isinstance(reply, BaseException):
            return [reply] * len(self.members)
        codes, timestamps, amounts, resolving, stored = reply
        errors = [r for r in self.reserved.values() if isinstance(r, BaseException)]
        answers = chains.answers([TRANSFER_RESULTS[code] for code in codes])
        if errors and timestamps is None and chains.verdict(answers)[0] != chains.EXISTS:
            return [errors[0]] * len(self.members)
        rows = dict(stored)
        for shard, shard_reply in self.reserved.items():
            if not isinstance(shard_reply, BaseException):
                for part, (_, row, *_) in zip(self.parts[shard], shard_reply, strict=True):
                    if row is not None:
                        rows[part[2]] = row
        found: list[Outcome] = []
        for index, code in enumerate(answers):
            if code is _OK and resolving[index] is not None:
                found.append((code, [*resolving[index], timestamps[index]]))
            elif code is _OK:
                member = self.members[index].stamped(timestamps[index])
                found.append((code, member.resized(amounts[index]).row()))
            else:
                found.append((code, rows.get(index) if code.startswith("exists") else None))
        return found

    def finalize_calls(self) -> list[tuple[int, list[Any]]]:
        """Round C: settle the parts round A reserved, by the coordinator's decision."""
        reply = self.committed
        if isinstance(reply, ShardUnavailable):
            return []  # the coordinator may or may not have decided: redrive will ask it
        decision = None if isinstance(reply, BaseException) or reply[1] is None \
            else reply[1:4]
        calls = []
        for shard, shard_reply in self.reserved.items():
            if isinstance(shard_reply, BaseException):
                continue  # unknown: any part it holds is in doubt, for redrive
            for part, (_, _, held, _, filled) in zip(self.parts[shard], shard_reply,
                                                     strict=True):
                member = self.members[part[2]]
                outcome, timestamp, amount, fields = chain_part_outcome(member, part[2],
                                                                        decision)
                if filled is not None:  # the claim it took on a pending transfer there
                    row = None if decision is None else [*filled, timestamp]
                    calls.append((shard, [p.OP_FINALIZE_CLAIM, member.pending_id, member.id,
                                          self.attempt, row]))
                if held is not None:
                    calls.append((shard, [p.OP_FINALIZE, member.id, self.attempt, outcome,
                                          timestamp, amount, fields]))
        return calls + self._settle_calls(decision)

    def _settle_calls(self, decision: list[Any] | None) -> list[tuple[int, list[Any]]]:
        """The held parts of the pending transfers the chain's posts and voids resolved."""
        if decision is None:
            return []
        calls = []
        for member, timestamp, fields in zip(self.members, decision[0], decision[2],
                                             strict=True):
            if fields is not None:
                row = [*fields, timestamp]
                post = bool(member.flags & POST_PENDING)
                for shard in {self.shard_of(fields[1]), self.shard_of(fields[2])}:
                    calls.append((shard, [p.OP_SETTLE, member.pending_id, post,
                                          fields[3] if post else 0, row]))
        return calls
