"""A shard's side of linked chains (and of balancing parts): reserving parts in order, and the
coordinator's decision. The ShardHost runs these inside a batch; the rules are in
actors/chains.py and actors/balancing.py, the events in actors/ledger.py."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from actors.ledger import chains
from actors.ledger.balancing import Rule, decide
from actors.ledger.codes import TRANSFER_RESULTS, TransferResult, first_failure
from actors.ledger.ledger import Event, Ledger
from actors.ledger.model import BALANCING, Roles, Transfer
from actors.ledger.verdicts import chain_part_outcome

_OK = TransferResult.ok
_IN_FLIGHT = TransferResult.in_flight


class Part(NamedTuple):
    """A chain member's part on this shard, reserved (or refused)."""

    result: TransferResult
    stored: Transfer | None  # the stored transfer, when a home part finds its id taken
    transfer: Transfer
    member: int
    held: int | None  # the amount held by its reservation (None: nothing reserved)
    rules: list[Rule]  # a balancing member's rules here
    filled: list[Any] | None  # a post or void whose claim was taken: its fields as stored

    def reply(self) -> list[Any]:
        return [self.result, self.stored.row() if self.stored is not None else None,
                self.held, self.rules, self.filled]


class ChainOps:
    def __init__(self, ledger: Ledger, next_timestamp: Callable[[], int],
                 record: Callable[[list[Event], list[Event]], None]) -> None:
        self.ledger = ledger
        self._next_timestamp = next_timestamp
        self._record = record

    def reserve_parts(self, command: list[Any], events: list[Event]) -> list[Part]:
        """Parts on this shard, in order: of a linked chain (each seeing those before it),
        or one cross-shard balancing transfer's. A balancing part holds what its rules here
        allow and leaves the verdict on them to where all its rules meet."""
        _, chain, attempt, parts = command[:4]
        funds = chains.ChainFunds()
        reserved = []
        for fields, roles, member in parts:
            transfer = Transfer.from_row([*fields, self._next_timestamp()])
            claimed: TransferResult = _OK
            filled = None
            if roles & Roles.claim:
                claimed, new_events, _ = self.ledger.claim_pending(transfer, attempt, chain,
                                                                   member)
                self._record(new_events, events)
                filled = new_events[0][8] if new_events else None
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
            funds.add(Transfer.from_row(new_events[0][1]), roles)
            return result, stored, new_events[0][1][3], rules
        if rules and result is not _IN_FLIGHT and not result.startswith("exists"):
            result = _OK  # no objection but the rules: decided where all of them meet
        return result, stored, None, rules

    def commit_chain(self, command: list[Any], events: list[Event]) -> list[Any]:
        """At the coordinator: reserve the parts here, decide the chain, and finalize its
        parts here (the claims on pending transfers here included), in this one batch.

        command[4]: each member's verdict elsewhere; command[5]: per member [amount asked,
        its balancing rules elsewhere (None: not balancing), its fields as stored if a post or
        void whose claim was taken elsewhere]. Replies [codes, timestamps, amounts, posts'
        and voids' fields, [[member, stored row], ...]], the middle three None if void.
        """
        chain, attempt = command[1], command[2]
        local = self.reserve_parts(command, events)
        codes = [TRANSFER_RESULTS[code] for code in command[4]]
        asked = command[5]
        stored_rows = []
        for part in local:
            codes[part.member] = first_failure(codes[part.member], part.result)
            if part.rules:
                asked[part.member][1] += part.rules
            if part.filled is not None:
                asked[part.member][2] = part.filled
            if part.stored is not None:
                stored_rows.append([part.member, part.stored.row()])
        amounts = []
        for member, (amount, rules, filled) in enumerate(asked):
            if rules is not None:
                code, amount = decide(amount, rules)
                codes[member] = first_failure(codes[member], code)
            amounts.append(filled[3] if filled is not None else amount)
        decision: list[Any] | None = None
        if chains.verdict(codes)[0] == chains.OK:
            resolving = [entry[2] for entry in asked]
            decision = [[self._next_timestamp() for _ in codes], amounts, resolving]
            self._record(self.ledger.decide_chain(chain, attempt, *decision), events)
        for part in local:
            self._finalize(part, attempt, decision, events)
        return [codes, *(decision or [None, None, None]), stored_rows]

    def _finalize(self, part: Part, attempt: int, decision: list[Any] | None,
                  events: list[Event]) -> None:
        outcome, timestamp, amount, fields = chain_part_outcome(part.transfer, part.member,
                                                                decision)
        if part.filled is not None:  # the claim this part took on a pending transfer here
            row = None if decision is None else [*part.filled, timestamp]
            self._record(self.ledger.finalize_claim(part.transfer.pending_id, part.transfer.id,
                                                    attempt, row), events)
        if part.held is not None:
            self._record(self.ledger.finalize_reservation(
                part.transfer.id, attempt, outcome, timestamp, amount, fields), events)
