"""The router: which shard holds what, and how a transfer crosses shards.

Every id (account or transfer) maps to a slot by a stable hash, and every slot to a shard
by a table the router holds (so that slots can later move between shards and nodes). An
account lives on its id's shard; a transfer's *home* is its id's shard: it keeps the id
index (idempotency) and records the commit decision.

A transfer whose home, debit and credit shards are one shard commits there in one event.
Otherwise it runs in three rounds (docs/ARCHITECTURE.md, "Cross-shard transfers"):
  A. reserve: each non-home shard holding an account checks its side and holds it pending;
  B. commit: the home checks the id, its own sides and the reservations' verdict, and
     records the decision durably (this is the acknowledgement point);
  C. finalize: the reservations are posted or voided.
A crash between rounds leaves reservations in doubt; switch/redrive.py resolves each against
its home's decision (no commit recorded means void), at start-up and then periodically.
"""

from __future__ import annotations

import asyncio
import logging
import random
from dataclasses import dataclass, field
from typing import Any

from actors import failpoints
from actors import messages as p
from actors.ledger import chains
from actors.ledger.codes import TRANSFER_RESULTS, TransferResult, first_failure
from actors.ledger.ledger import HOLD, POST, VOID, check_transfer_static
from actors.ledger.model import (
    LINKED,
    PENDING,
    POST_PENDING,
    RESOLVES_PENDING,
    Account,
    Roles,
    Transfer,
)
from actors.topology import Placement
from switch.routing.channel import Overloaded, ShardChannel, ShardUnavailable
from switch.routing.linked import ChainRun

log = logging.getLogger("payswitch.router")

Reply = Any
_Pending = tuple[list[Any], list[tuple[list[int], "asyncio.Future[list[Any]]"]]]
_OK = TransferResult.ok
_IN_FLIGHT = TransferResult.in_flight
_DEBIT = Roles.debit
_CREDIT = Roles.credit
_BOTH = Roles.both
# A per-item outcome: (result code, stored row or None), or the exception that prevented it.
Outcome = tuple[str, list[Any] | None] | BaseException


@dataclass
class _Cross:
    """A transfer crossing shards, through its three rounds."""

    index: int
    transfer: Transfer
    fields: list[Any]
    home: int
    home_roles: int
    remote_roles: dict[int, int]
    attempt: int
    reserved: dict[int, Reply] = field(default_factory=dict)
    committed: Reply = None  # the home's reply to the commit, or the error that hid it
    claim_shard: int = -1  # a post or void: the pending transfer's home, which it claims
    claimed: Reply = None  # [result, pending transfer row] from the claim


class Router:
    def __init__(self, channels: list[ShardChannel], placement: Placement) -> None:
        assert channels and placement.shard_count == len(channels)
        self.channels = channels
        self.placement = placement
        self.shard_of = self.placement.shard_of
        self.live: dict[str, asyncio.Future[None]] = {}  # transfer ids under way here
        self._attempt_base = random.getrandbits(31) << 32
        self._attempt_next = 0
        self._finishing: set[asyncio.Task[None]] = set()

    # ---- scatter / gather ----

    def _submit(self, calls: list[tuple[int, list[Any]]], admitted: bool = False) -> _Pending:
        """Queue (shard, command) pairs, grouped per shard, now; `_gather` awaits the replies.

        Queueing is synchronous, so whatever a caller submits after this returns reaches each
        shard after these commands: the order that read-your-writes relies on.
        """
        by_shard: dict[int, list[int]] = {}
        for position, (shard, _) in enumerate(calls):
            by_shard.setdefault(shard, []).append(position)
        replies: list[Reply | BaseException] = [None] * len(calls)
        futures: list[tuple[list[int], asyncio.Future[list[Any]]]] = []
        for shard, all_positions in by_shard.items():
            channel = self.channels[shard]
            for start in range(0, len(all_positions), channel.call_commands_max):
                positions = all_positions[start : start + channel.call_commands_max]
                try:
                    future = channel.submit([calls[i][1] for i in positions], admitted)
                except Overloaded as error:
                    for i in positions:
                        replies[i] = error
                    continue
                futures.append((positions, future))
        return replies, futures

    @staticmethod
    async def _gather(pending: _Pending) -> list[Reply | BaseException]:
        replies, futures = pending
        for positions, future in futures:
            try:
                group_replies = await future
            except Exception as error:
                group_replies = [error] * len(positions)
            for i, reply in zip(positions, group_replies, strict=True):
                replies[i] = reply
        return replies

    async def scatter(self, calls: list[tuple[int, list[Any]]], admitted: bool = False
                      ) -> list[Reply | BaseException]:
        """Send (shard, command) pairs grouped per shard; replies come back in input order.
        `admitted`: finishing work under way, never refused at a full queue."""
        return await self._gather(self._submit(calls, admitted))

    async def ask(self, shard: int, command: list[Any]) -> Reply:
        (reply,) = await self.scatter([(shard, command)])
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def ask_all(self, command: list[Any]) -> list[Reply]:
        replies = await self.scatter([(shard, command) for shard in range(len(self.channels))])
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    # ---- accounts ----

    async def create_accounts(self, accounts: list[Account],
                              limits: list[list[int] | None] | None = None) -> list[Outcome]:
        """Create accounts (with their limits, when given, in the same shard batch)."""
        rows = limits or [None] * len(accounts)
        calls = [(self.shard_of(a.id), [p.OP_ACCOUNT, a.row()[:6], row])
                 for a, row in zip(accounts, rows, strict=True)]
        return [
            reply if isinstance(reply, BaseException) else (reply[0], reply[1])
            for reply in await self.scatter(calls)
        ]

    # ---- transfers ----

    async def create_transfers(self, transfers: list[Transfer]) -> list[Outcome]:
        """Apply a batch; items are independent (not atomic), except that a linked chain
        succeeds or fails as one, and each item gets its outcome."""
        outcomes: list[Outcome | None] = [None] * len(transfers)
        waiting = self._units(transfers, outcomes)
        while waiting:
            wave, waiting = self._next_wave(transfers, waiting)
            if wave:
                ids = {transfers[i].id for unit in wave for i in unit}
                done = asyncio.get_running_loop().create_future()
                for transfer_id in ids:
                    self.live[transfer_id] = done
                # Shielded: once a wave has started, it finishes even if the client goes away,
                # so an id is never released while its rounds are still under way.
                task = asyncio.ensure_future(self._run_wave(transfers, wave, outcomes, ids, done))
                await asyncio.shield(task)
            else:
                busy = {self.live[transfers[i].id] for unit in waiting for i in unit
                        if transfers[i].id in self.live}
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)
        return [outcome for outcome in outcomes if outcome is not None]

    @staticmethod
    def _units(transfers: list[Transfer], outcomes: list[Outcome | None]) -> list[list[int]]:
        """The request as units to run: single items and linked chains (a list of places).
        Those that fail the checks needing no state are answered here."""
        units: list[list[int]] = []
        chain: list[int] = []
        for index, transfer in enumerate(transfers):
            chain.append(index)
            if transfer.flags & LINKED and index < len(transfers) - 1:
                continue
            members = [transfers[i] for i in chain]
            if transfer.flags & LINKED:  # the request ended inside the chain
                codes = [TransferResult.ok] * (len(chain) - 1) + [
                    TransferResult.linked_event_chain_open]
            elif len(chain) == 1:
                codes = [check_transfer_static(transfer)]
            else:
                codes = chains.check_chain_static(members)
            if all(code is TransferResult.ok for code in codes):
                units.append(chain)
            else:
                for i, code in zip(chain, chains.answers(codes), strict=True):
                    outcomes[i] = (code.value, None)
            chain = []
        return units

    def _next_wave(
        self, transfers: list[Transfer], waiting: list[list[int]]
    ) -> tuple[list[list[int]], list[list[int]]]:
        """Units whose ids are not already under way; repeats of an id wait for the first."""
        wave: list[list[int]] = []
        later: list[list[int]] = []
        ids: set[str] = set()
        for unit in waiting:
            unit_ids = {transfers[i].id for i in unit}
            if unit_ids & ids or any(transfer_id in self.live for transfer_id in unit_ids):
                later.append(unit)
            else:
                ids |= unit_ids
                wave.append(unit)
        return wave, later

    async def _run_wave(
        self,
        transfers: list[Transfer],
        wave: list[list[int]],
        outcomes: list[Outcome | None],
        ids: set[str],
        done: asyncio.Future[None],
    ) -> None:
        """Rounds A and B; round C is queued before the caller answers, and awaited after.

        The answer can leave once the home's commit is durable (round B) and the finalize
        commands are queued: any later command to those shards, a read of the same accounts
        included, runs after them. The ids stay under way until round C is done.
        """
        finalizing: _Pending | None = None
        try:
            runs = [self._chain_run(transfers, unit) for unit in wave if len(unit) > 1]
            singles = [unit[0] for unit in wave if len(unit) == 1]
            crosses = await self._round_reserve_and_local(transfers, singles, outcomes, runs)
            if crosses or runs:
                if failpoints.ARMED:
                    failpoints.hit(failpoints.ROUTER_AFTER_RESERVE)
                await self._round_commit(crosses, outcomes, runs)
                if failpoints.ARMED:
                    failpoints.hit(failpoints.ROUTER_AFTER_COMMIT)
                    if runs:
                        failpoints.hit(failpoints.ROUTER_CHAIN_HALF_DECIDED)
                finalizing = self._submit(self._finalize_calls(crosses) + [
                    call for run in runs for call in run.finalize_calls()], admitted=True)
        finally:
            if finalizing is None:
                self._release(ids, done)
            else:
                task = asyncio.ensure_future(self._finish_wave(finalizing, ids, done))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)

    async def _finish_wave(self, finalizing: _Pending, ids: set[str],
                           done: asyncio.Future[None]) -> None:
        try:
            for reply in await self._gather(finalizing):
                if isinstance(reply, BaseException):
                    log.warning("finalize failed, left for redrive: %r", reply)
        finally:
            self._release(ids, done)

    def _release(self, ids: set[str], done: asyncio.Future[None]) -> None:
        for transfer_id in ids:
            del self.live[transfer_id]
        done.set_result(None)

    def _chain_run(self, transfers: list[Transfer], unit: list[int]) -> ChainRun:
        self._attempt_next += 1
        return ChainRun.build(unit, [transfers[i] for i in unit], self.shard_of,
                              self._attempt_base + self._attempt_next)

    async def _round_reserve_and_local(
        self, transfers: list[Transfer], wave: list[int], outcomes: list[Outcome | None],
        runs: list[ChainRun],
    ) -> list[_Cross]:
        calls: list[tuple[int, list[Any]]] = []
        owners: list[tuple[int, _Cross | ChainRun | None]] = []
        for run in runs:
            for call in run.reserve_calls():
                calls.append(call)
                owners.append((call[0], run))
        crosses: list[_Cross] = []
        shard_of = self.shard_of
        for index in wave:
            transfer = transfers[index]
            fields = transfer.fields()
            home = shard_of(transfer.id)
            if transfer.flags & RESOLVES_PENDING:
                cross = self._resolving(index, transfer, fields, home)
                crosses.append(cross)
                calls.append((cross.claim_shard, [p.OP_CLAIM, fields, cross.attempt]))
                owners.append((-1, cross))
                continue
            debit = shard_of(transfer.debit_account_id)
            credit = shard_of(transfer.credit_account_id)
            if home == debit == credit:
                calls.append((home, [p.OP_COMMIT, fields, _BOTH, "ok", 0]))
                owners.append((index, None))
                continue
            cross = self._cross(index, transfer, fields, home, debit, credit)
            crosses.append(cross)
            for shard, roles in cross.remote_roles.items():
                calls.append((shard, [p.OP_RESERVE, fields, roles, cross.attempt]))
                owners.append((shard, cross))
        for (key, cross_owner), reply in zip(owners, await self.scatter(calls), strict=True):
            if isinstance(cross_owner, ChainRun):
                cross_owner.reserved[key] = reply
            elif cross_owner is None:
                outcomes[key] = reply if isinstance(reply, BaseException) else (reply[0], reply[1])
            elif key < 0:
                cross_owner.claimed = reply
            else:
                cross_owner.reserved[key] = reply
        return crosses

    def _resolving(self, index: int, transfer: Transfer, fields: list[Any], home: int) -> _Cross:
        """A post or void: its home commits it, its pending transfer's home is claimed."""
        self._attempt_next += 1
        return _Cross(index, transfer, fields, home, 0, {}, self._attempt_base +
                      self._attempt_next, claim_shard=self.shard_of(transfer.pending_id))

    def _cross(self, index: int, transfer: Transfer, fields: list[Any], home: int, debit: int,
               credit: int) -> _Cross:
        home_roles = (_DEBIT if debit == home else 0) | (_CREDIT if credit == home else 0)
        remote_roles: dict[int, int] = {}
        if debit != home:
            remote_roles[debit] = _DEBIT
        if credit != home:
            remote_roles[credit] = remote_roles.get(credit, 0) | _CREDIT
        self._attempt_next += 1
        return _Cross(index, transfer, fields, home, home_roles, remote_roles,
                      self._attempt_base + self._attempt_next)

    async def _round_commit(self, crosses: list[_Cross], outcomes: list[Outcome | None],
                            runs: list[ChainRun]) -> None:
        calls = [run.commit_call() for run in runs]
        for cross in crosses:
            remote = _OK
            parts = [*cross.reserved.values(), *([cross.claimed] if cross.claim_shard >= 0 else [])]
            for reply in parts:
                if isinstance(reply, BaseException):
                    remote = first_failure(remote, _IN_FLIGHT)
                else:
                    remote = first_failure(remote, TRANSFER_RESULTS[
                        reply[0] if isinstance(reply, list) else reply])
            claimed = cross.claimed[1] if isinstance(cross.claimed, list) else None
            calls.append((cross.home, [p.OP_COMMIT, cross.fields, cross.home_roles, remote,
                                       cross.attempt, _remote_rules(cross.reserved), claimed]))
        replies = await self.scatter(calls, admitted=True)
        for run, reply in zip(runs, replies, strict=False):
            run.committed = reply
            for index, outcome in zip(run.indexes, run.outcomes(), strict=True):
                outcomes[index] = outcome
        for cross, reply in zip(crosses, replies[len(runs):], strict=True):
            cross.committed = reply
            errors = [r for r in [*cross.reserved.values(), cross.claimed]
                      if isinstance(r, BaseException)]
            if isinstance(reply, BaseException):
                outcomes[cross.index] = reply
            elif errors and not reply[0].startswith("exists"):
                outcomes[cross.index] = errors[0]
            else:
                outcomes[cross.index] = (reply[0], reply[1])

    def _finalize_calls(self, crosses: list[_Cross]) -> list[tuple[int, list[Any]]]:
        calls = []
        for cross in crosses:
            reply = cross.committed
            if isinstance(reply, ShardUnavailable):
                continue  # the home may or may not have committed: redrive will ask it
            # Refused at the queue (never sent) or failed whole (nothing applied): not committed.
            committed = not isinstance(reply, BaseException) and reply[0] == _OK
            if cross.claim_shard >= 0:
                calls.extend(self._resolution_calls(cross, reply[1] if committed else None))
                continue
            outcome = (HOLD if cross.transfer.flags & PENDING else POST) if committed else VOID
            commit_timestamp = reply[1][-1] if committed else 0
            amount = reply[1][3] if committed else 0
            for shard, reserve_reply in cross.reserved.items():
                if reserve_reply == _OK or (isinstance(reserve_reply, list)
                                            and reserve_reply[0] == _OK and reserve_reply[1]):
                    calls.append((shard, [p.OP_FINALIZE, cross.transfer.id, cross.attempt,
                                          outcome, commit_timestamp, amount]))
        return calls

    def _resolution_calls(self, cross: _Cross, row: list[Any] | None
                          ) -> list[tuple[int, list[Any]]]:
        """A post or void decided: release or resolve the claim; if committed, settle the
        pending transfer's held parts on its accounts' shards."""
        claimed = cross.claimed
        if not isinstance(claimed, list) or claimed[0] != _OK:
            return []  # no claim was taken (or it is unknown: redrive lists claims)
        transfer = cross.transfer
        calls = [(cross.claim_shard, [p.OP_FINALIZE_CLAIM, transfer.pending_id, transfer.id,
                                      cross.attempt, row])]
        if row is not None:
            pending = Transfer.from_row(claimed[1])
            post = bool(transfer.flags & POST_PENDING)
            amount = row[3] if post else 0
            for shard in {self.shard_of(pending.debit_account_id),
                          self.shard_of(pending.credit_account_id)}:
                calls.append((shard, [p.OP_SETTLE, pending.id, post, amount, row]))
        return calls

    # ---- reads ----

    async def totals(self) -> dict[str, list[int]]:
        sums: dict[str, list[int]] = {}
        for shard_totals in await self.ask_all([p.OP_TOTALS]):
            for ledger, values in shard_totals.items():
                row = sums.setdefault(ledger, [0, 0, 0, 0])
                for i, value in enumerate(values):
                    row[i] += value
        return sums

    def queue_depths(self) -> list[int]:
        return [channel.queued_commands for channel in self.channels]


def _remote_rules(reserved: dict[int, Reply]) -> list[Any] | None:
    """A balancing transfer's rules from its reserved parts, for its home (None: not one)."""
    replies = [reply for reply in reserved.values() if isinstance(reply, list)]
    return [rule for reply in replies for rule in reply[2]] if replies else None
