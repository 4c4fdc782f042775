"""A shard's side of linked chains (and of balancing parts): reserving parts in order, and the
coordinator's decision. The ShardHost runs these inside a batch; the rules are in
actors/ledger/chains.py and actors/ledger/balancing.py, the events in actors/ledger/events.py.
"""

from __future__ import annotations

from collections.abc import Callable

import msgspec

from actors.ledger import chains
from actors.ledger.balancing import Rule, decide
from actors.ledger.codes import TRANSFER_RESULTS, TransferResult, first_failure
from actors.ledger.events import Event, PendingClaimed
from actors.ledger.ledger import Ledger
from actors.ledger.model import BALANCING, Roles, Transfer
from actors.ledger.store import ChainDecision
from actors.ledger.verdicts import chain_part_outcome
from actors.messages import Asked, ChainReply, CommitChain, PartReply, StoredMember, expect

_OK = TransferResult.ok
_IN_FLIGHT = TransferResult.in_flight

Record = Callable[[list[Event], list[Event]], None]


class Part(msgspec.Struct, frozen=True, gc=False):
    """A chain member's part on this shard, reserved (or refused)."""

    result: TransferResult
    stored: Transfer | None  # the stored transfer, when a home part finds its id taken
    transfer: Transfer
    member: int
    held: int | None  # the amount held by its reservation (None: nothing reserved)
    rules: list[Rule]  # a balancing member's rules here
    filled: Transfer | None  # a post or void whose claim was taken: as it will be stored

    def reply(self) -> PartReply:
        return PartReply(self.result, self.stored, self.held, self.rules, self.filled)


class ChainOps:
    def __init__(self, ledger: Ledger, next_timestamp: Callable[[], int], record: Record) -> None:
        self.ledger = ledger
        self._next_timestamp = next_timestamp
        self._record = record

    def reserve_parts(self, chain: str, attempt: int, parts: list[chains.ChainPart],
                      events: list[Event]) -> list[Part]:
        """Parts on this shard, in order: of a linked chain (each seeing those before it),
        or one cross-shard balancing transfer's. A balancing part holds what its rules here
        allow and leaves the verdict on them to where all its rules meet."""
        funds = chains.ChainFunds()
        reserved = []
        for part in parts:
            transfer = part.transfer.stamped(self._next_timestamp())
            roles, member = part.roles, part.member
            claimed: TransferResult = _OK
            filled = None
            if roles & Roles.claim:
                claimed, new_events, _ = self.ledger.claim_pending(transfer, attempt, chain,
                                                                   member)
                self._record(new_events, events)
                if new_events:
                    filled = expect(new_events[0], PendingClaimed).claim.resolving
                roles &= ~Roles.claim
            result, stored, held, rules = self._reserve(transfer, roles, attempt, chain,
                                                        member, funds, events)
            reserved.append(Part(first_failure(claimed, result), stored, transfer, member,
                                 held, rules, filled))
        return reserved

    def _reserve(self, transfer: Transfer, roles: int, attempt: int, chain: str, member: int,
                 funds: chains.ChainFunds, events: list[Event]
                 ) -> tuple[TransferResult, Transfer | None, int | None, list[Rule]]:
        if not roles:
            return _OK, None, None, []
        rules = self.ledger.balancing_rules(transfer, roles, funds) \
            if transfer.flags & BALANCING else []
        result, new_events, stored = self.ledger.reserve_transfer(
            transfer, roles, attempt, chain, member, funds)
        self._record(new_events, events)
        if new_events:
            reserved = new_events[0].transfer  # type: ignore[union-attr]
            assert reserved is not None  # a reservation's event carries its transfer
            funds.add(reserved, roles)
            return result, stored, reserved.amount, rules
        if rules and result is not _IN_FLIGHT and not result.startswith("exists"):
            result = _OK  # no objection but the rules: decided where all of them meet
        return result, stored, None, rules

    def commit_chain(self, command: CommitChain, events: list[Event]) -> ChainReply:
        """At the coordinator: reserve the parts here, decide the chain, and finalize its
        parts here (the claims on pending transfers here included), in this one batch."""
        chain, attempt = command.chain, command.attempt
        local = self.reserve_parts(chain, attempt, command.parts, events)
        codes = [TRANSFER_RESULTS[code] for code in command.verdicts]
        asked = [Asked(entry.amount, None if entry.rules is None else list(entry.rules),
                       entry.filled) for entry in command.asked]
        stored = []
        for part in local:
            codes[part.member] = first_failure(codes[part.member], part.result)
            entry = asked[part.member]
            if part.rules and entry.rules is not None:
                entry.rules.extend(part.rules)
            if part.filled is not None:
                asked[part.member] = Asked(entry.amount, entry.rules, part.filled)
            if part.stored is not None:
                stored.append(StoredMember(part.member, part.stored))
        amounts = []
        for member, entry in enumerate(asked):
            amount = entry.amount
            if entry.rules is not None:
                code, amount = decide(amount, entry.rules)
                codes[member] = first_failure(codes[member], code)
            amounts.append(entry.filled.amount if entry.filled is not None else amount)
        if self.ledger.is_fenced(chain, attempt, chain=True):  # redrive voided its parts
            codes = [first_failure(code, TransferResult.in_flight) for code in codes]
        decision = None
        if chains.verdict(codes)[0] == chains.OK:
            decision = ChainDecision(attempt, [self._next_timestamp() for _ in codes], amounts,
                                     [entry.filled for entry in asked])
            self._record(self.ledger.decide_chain(chain, attempt, decision.timestamps,
                                                  decision.amounts, decision.resolving), events)
        for part in local:
            self._finalize(part, attempt, decision, events)
        return ChainReply([str(code) for code in codes], decision, stored)

    def _finalize(self, part: Part, attempt: int, decision: ChainDecision | None,
                  events: list[Event]) -> None:
        outcome, timestamp, amount, resolving = chain_part_outcome(part.transfer, part.member,
                                                                   decision)
        if part.filled is not None:  # the claim this part took on a pending transfer here
            resolution = None if decision is None else part.filled.stamped(timestamp)
            self._record(self.ledger.finalize_claim(part.transfer.pending_id, part.transfer.id,
                                                    attempt, resolution), events)
        if part.held is not None:
            self._record(self.ledger.finalize_reservation(
                part.transfer.id, attempt, outcome, timestamp, amount, resolving), events)
