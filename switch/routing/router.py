"""The router: which shard holds what, and how a transfer crosses shards.

Every id (account or transfer) maps to a slot by a stable hash, and every slot to a shard
by a table the router holds (so that slots can later move between shards and nodes). An
account lives on its id's shard; a transfer's *home* is its id's shard: it keeps the id
index (idempotency) and records the commit decision.

A transfer whose home, debit and credit shards are one shard commits there in one event.
Otherwise (docs/ARCHITECTURE.md, "Cross-shard transfers") a plain or pending transfer takes
one durable round before its answer (`staged_commit`):
  A. stage and reserve, at once: the home checks and holds the id and its own sides
     (`Stage`), each other shard holding an account checks and holds its side (`Reserve`);
     once every one of them is durable and ok, the transfer is committed: the answer leaves;
  C. finalize: the home records the decision, the reservations are posted (or voided).
A balancing transfer, a post or void (and any transfer without `staged_commit`) takes three:
  A. reserve: each non-home shard holding an account checks its side and holds it pending
     (a post or void claims its pending transfer at that one's home);
  B. commit: the home checks the id, its own sides and the reservations' verdict, and
     records the decision durably (this is the acknowledgement point);
  C. finalize: the reservations are posted or voided.
A crash between rounds leaves parts in doubt; switch/redrive.py decides a staged transfer
from its parts, and resolves each other part against its home's decision (no commit
recorded means void), at start-up and then periodically.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from actors import failpoints
from actors.ledger import chains
from actors.ledger.balancing import Rule
from actors.ledger.codes import TRANSFER_RESULTS, TransferResult, first_failure
from actors.ledger.ledger import HOLD, POST, VOID, check_transfer_static, repeat_of
from actors.ledger.limits import Limits
from actors.ledger.model import (
    BALANCING,
    LINKED,
    PENDING,
    POST_PENDING,
    RESOLVES_PENDING,
    Account,
    Roles,
    Transfer,
)
from actors.ledger.queries import add_totals
from actors.ledger.verdicts import staged_decision
from actors.messages import (
    AccountReply,
    Applied,
    ClaimPending,
    ClaimReply,
    Command,
    Commit,
    CreateAccount,
    Finalize,
    FinalizeClaim,
    GetTotals,
    Reply,
    Reserve,
    ReserveReply,
    SettleDone,
    Stage,
    TotalsReply,
    TransferReply,
    expect,
)
from actors.shard.stats import ShardStatus
from actors.topology import Placement
from switch.routing.channel import Overloaded, ShardChannel, ShardUnavailable, SlotMoving
from switch.routing.linked import ChainRun, settles
from switch.routing.transport import ShardLink

log = logging.getLogger("payswitch.router")

_Pending = tuple[list[Any], list[tuple[list[int], "asyncio.Future[list[Any]]"]]]
Call = tuple[int, Command]  # (shard, command)
Settlement = tuple[int, str, list[int]]  # a pending transfer's home, its id, settle places
_OK = TransferResult.ok
_IN_FLIGHT = TransferResult.in_flight
_STAGED_AT_HOME = -2  # an owner key in round A: the home's reply to `Stage`
SLOT_HOPS_MAX = 4  # a command follows a moved slot this many shards at most
ATTEMPT_COUNTER_BITS = 32  # an attempt: a router's random prefix, then its counter
_DEBIT = Roles.debit
_CREDIT = Roles.credit
_BOTH = Roles.both
# A per-item outcome: (result code, the stored transfer or account, or None), or the exception
# that prevented it.
Outcome = tuple[str, Any] | BaseException


OnOutcome = Callable[[int, Outcome], None]


def _account_outcome(reply: object) -> Outcome:
    created = expect(reply, AccountReply)
    return created.result, created.account


def _moved(outcome: object) -> bool:
    """A shard's answer that the slot has moved (it applied nothing; the router learned)."""
    return isinstance(outcome, SlotMoving) and outcome.moved


class _TellingOutcomes(list[Outcome | None]):
    """The outcomes of a batch, telling `on_outcome` of each as it is set. Every item is set
    once, in the same step of the wave that makes it final (see `create_transfers`). With
    `held`, they are told only at `tell_set()`: once their wave's finalize is done."""

    def __init__(self, size: int, on_outcome: OnOutcome, held: bool = False) -> None:
        super().__init__([None] * size)
        self._on_outcome = on_outcome
        self._held = held
        self._told: set[int] = set()
        self.sending_on = True  # a slot_moved answer is not told: the item is sent again

    def _tellable(self, outcome: Outcome | None) -> bool:
        return outcome is not None and not (self.sending_on and _moved(outcome))

    def __setitem__(self, index: Any, outcome: Any) -> None:
        super().__setitem__(index, outcome)
        if self._tellable(outcome) and not self._held:
            self._on_outcome(index, outcome)

    def tell_set(self) -> None:
        if not self._held:
            return
        for index, outcome in enumerate(self):
            if outcome is not None and self._tellable(outcome) and index not in self._told:
                self._told.add(index)
                self._on_outcome(index, outcome)


@dataclass
class _Cross:
    """A transfer crossing shards, through its rounds (one before its answer if staged)."""

    index: int
    transfer: Transfer
    home: int
    home_roles: int
    remote_roles: dict[int, int]
    attempt: int
    reserved: dict[int, ReserveReply | BaseException] = field(default_factory=dict)
    # The home's reply to Commit (to Stage, if staged), or the error
    committed: TransferReply | BaseException | None = None
    claim_shard: int = -1  # a post or void: the pending transfer's home, which it claims
    claimed: ClaimReply | BaseException | None = None
    staged: bool = False  # one round: its home staged it beside the reservations
    unsent: bool = False  # a command of its round A never left this router (a full queue)

    def staged_outcome(self) -> Outcome:
        """A staged transfer's answer from its round: the home's reply and its parts'
        (the lowest-ranked failure, as if checked in one place). Once this router has seen
        every one of them durable and ok, commit is the only decision anyone can record
        (recovery commits when every part is there); before that, either can be."""
        home = self.committed
        if isinstance(home, BaseException) or home is None:
            return home or ShardUnavailable("no answer from the transfer's home")
        reply = expect(home, TransferReply)
        if reply.result.startswith("exists") or reply.result == _IN_FLIGHT:
            return reply.result, reply.transfer
        result = TRANSFER_RESULTS[reply.result]
        for part in self.reserved.values():
            if isinstance(part, BaseException):
                return part  # unknown: recovery decides from what is durable
            result = first_failure(result, TRANSFER_RESULTS[part.result])
        return (result.value, reply.transfer if result is _OK else None)

    def refused_somewhere(self) -> bool:
        """A part, or the home, is surely not there: refused by a rule, or its command
        never left this router. Such an attempt can never commit."""
        replies = [self.committed, *self.reserved.values()]
        return self.unsent or any(
            isinstance(reply, SlotMoving)  # the shard applied nothing: the slot is not there
            or (isinstance(reply, TransferReply | ReserveReply) and reply.result != _OK)
            for reply in replies)


class Router:
    def __init__(self, links: Sequence[ShardLink], placement: Placement,
                 queue_commands_max: int = 65_536, call_commands_max: int = 8190,
                 answer_after_finalize: bool = False, staged_commit: bool = True) -> None:
        """`links`: one per shard, in shard order (switch/routing/transport.py).
        `answer_after_finalize`: this router is one of several (`--workers`), whose reads
        do not queue behind its finalizes: a cross-shard answer waits for them.
        `staged_commit`: plain and pending transfers across shards take one durable round
        before their answer, not two (the module's docstring)."""
        if not links or placement.shard_count != len(links):
            raise ValueError(f"{len(links)} shard links for a topology of "
                             f"{placement.shard_count} shards")
        self.links = list(links)
        self.channels = [ShardChannel(link.index, link.call, queue_commands_max,
                                      call_commands_max, link.status) for link in links]
        self.placement = placement
        self.shard_of = self.placement.shard_of
        for channel in self.channels:
            channel.on_slot_moved = placement.move
        self.live: dict[str, asyncio.Future[None]] = {}  # transfer ids under way here
        # Attempts are unique across routers (ingress processes): random high bits
        self._attempt_base = random.getrandbits(31) << ATTEMPT_COUNTER_BITS
        self._attempt_next = 0
        self._finishing: set[asyncio.Task[None]] = set()
        self.answer_after_finalize = answer_after_finalize
        self.staged_commit = staged_commit
        # A participant's accounts in all (auth.accounts_per_participant_max; 0: no bound;
        # -1, unset: each shard applies its own start-up share): each shard is sent its
        # share by the slots it holds now (Placement.quota_share).
        self.accounts_per_participant_max = -1

    def made_here(self, attempt: int) -> bool:
        """Whether this router made a cross-shard attempt (its random high bits)."""
        return attempt >> ATTEMPT_COUNTER_BITS == self._attempt_base >> ATTEMPT_COUNTER_BITS

    # ---- scatter / gather ----

    def _submit(self, calls: list[Call], admitted: bool = False) -> _Pending:
        """Queue (shard, command) pairs, grouped per shard, now; `_gather` awaits the replies.

        Queueing is synchronous, so whatever a caller submits after this returns reaches each
        shard after these commands: the order that read-your-writes relies on.
        """
        by_shard: dict[int, list[int]] = {}
        for position, (shard, _) in enumerate(calls):
            by_shard.setdefault(shard, []).append(position)
        replies: list[Any] = [None] * len(calls)
        futures: list[tuple[list[int], asyncio.Future[list[Any]]]] = []
        for shard, all_positions in by_shard.items():
            channel = self.channels[shard]
            for start in range(0, len(all_positions), channel.call_commands_max):
                positions = all_positions[start : start + channel.call_commands_max]
                try:
                    future = channel.submit([calls[i][1] for i in positions], admitted)
                except (Overloaded, ShardUnavailable) as error:
                    for i in positions:
                        replies[i] = error
                    continue
                futures.append((positions, future))
        return replies, futures

    @staticmethod
    async def _gather(pending: _Pending,
                      on_group: Callable[[list[int]], None] | None = None) -> list[Any]:
        """The replies, in input order. `on_group(positions)`: called as each shard's group
        of replies arrives, before the others are in (a slow shard delays only its own)."""
        replies, futures = pending
        if on_group is None:
            for positions, future in futures:
                with contextlib.suppress(Exception):  # `_fill` keeps it for each reply
                    await future
                _fill(replies, positions, future)
            return replies
        refused = [i for i, reply in enumerate(replies) if reply is not None]
        if refused:  # answered by `_submit` already (a full queue): no group to wait for
            on_group(refused)
        handled: set[int] = set()  # groups given to on_group (by place in `futures`)

        def handle(group: int) -> None:
            if group not in handled:
                handled.add(group)
                positions, future = futures[group]
                _fill(replies, positions, future)
                on_group(positions)

        def arrived(group: int) -> Callable[[asyncio.Future[list[Any]]], None]:
            def callback(done: asyncio.Future[list[Any]]) -> None:
                if not done.cancelled():  # else the awaiting task is cancelled with it
                    handle(group)
            return callback

        for group, (_, future) in enumerate(futures):  # as each arrives, in any order
            future.add_done_callback(arrived(group))
        for group, (_, future) in enumerate(futures):
            with contextlib.suppress(Exception):
                await future
            handle(group)  # if its callback has not run yet
        return replies

    async def scatter(self, calls: list[Call], admitted: bool = False) -> list[Any]:
        """(Replies are Reply values, or the exception that kept one from coming.)"""
        """Send (shard, command) pairs grouped per shard; replies come back in input order.
        `admitted`: finishing work under way, never refused at a full queue."""
        return await self._gather(self._submit(calls, admitted))

    async def ask(self, shard: int, command: Command) -> Any:
        """One command's reply; asked again where its slot went if it has moved."""
        for _ in range(SLOT_HOPS_MAX):
            (reply,) = await self.scatter([(shard, command)])
            if not (isinstance(reply, SlotMoving) and reply.moved):
                break
            shard = reply.shard
        if isinstance(reply, BaseException):
            raise reply
        return reply

    async def ask_all(self, command: Command) -> list[Any]:
        replies = await self.scatter([(shard, command) for shard in range(len(self.channels))])
        for reply in replies:
            if isinstance(reply, BaseException):
                raise reply
        return replies

    async def barrier(self) -> None:
        """Return once every command this router queued before the call is committed on its
        shard (a small read queued behind them on every shard): a reader of the shards' logs
        (the read model) then sees what this router answered, a staged transfer's decision
        included. A shard recovering, or whose queue is full, is passed over at once; the
        caller bounds the wait for one whose call hangs."""
        await self.scatter([(shard, GetTotals()) for shard in range(len(self.channels))])

    # ---- accounts ----

    async def create_accounts(self, accounts: list[Account],
                              limits: list[Limits | None] | None = None, key_id: str = "",
                              participant_id: str = "") -> list[Outcome]:
        """Create accounts (with their limits, when given, in the same shard batch); `key_id`
        names the key that asked (recorded with each), `participant_id` for whom."""
        given = limits or [None] * len(accounts)
        replies: list[Any] = [None] * len(accounts)
        places = list(range(len(accounts)))
        bound = self.accounts_per_participant_max if participant_id else -1
        for _ in range(SLOT_HOPS_MAX):  # again where a moved slot is now (nothing applied)
            shares: dict[int, int] = {}  # per shard, as the table is now (-1: its own)
            calls: list[Call] = []
            for place in places:
                shard = self.shard_of(accounts[place].id)
                if bound >= 0 and shard not in shares:
                    shares[shard] = self.placement.quota_share(shard, bound)
                calls.append((shard, CreateAccount(accounts[place], given[place], key_id,
                                                   participant_id, shares.get(shard, -1))))
            sent = await self.scatter(calls)
            for place, reply in zip(places, sent, strict=True):
                replies[place] = reply
            places = [place for place, reply in zip(places, sent, strict=True)
                      if _moved(reply)]
            if not places:
                break
        return [reply if isinstance(reply, BaseException) else _account_outcome(reply)
                for reply in replies]

    # ---- transfers ----

    async def create_transfers(self, transfers: list[Transfer],
                               on_outcome: OnOutcome | None = None) -> list[Outcome]:
        """Apply a batch; items are independent (not atomic), except that a linked chain
        succeeds or fails as one, and each item gets its outcome. `on_outcome(index,
        outcome)` hears of each item as soon as it is decided, before the batch ends: a
        cross-shard item once its home's commit is durable and its finalize is queued (the
        same point the batch's answer waits for), so its answer may leave at once."""
        outcomes: list[Outcome | None] = [None] * len(transfers) if on_outcome is None \
            else _TellingOutcomes(len(transfers), on_outcome, self.answer_after_finalize)
        units = self._units(transfers, outcomes)
        for hop in range(SLOT_HOPS_MAX):
            last = hop == SLOT_HOPS_MAX - 1
            if isinstance(outcomes, _TellingOutcomes):
                outcomes.sending_on = not last
            repeats = _Repeats(transfers, units, send_on=not last)
            waiting = repeats.units
            while waiting:
                await self._run_waves(transfers, waiting, outcomes)
                waiting = repeats.answer(outcomes)
            # A slot that moved, told by its old shard (which applied nothing): the router
            # has learned where it is; the units it refused go again, as a client's retry
            # would, with the same ids (another ingress process moved it).
            units = [unit for unit in units if any(_moved(outcomes[i]) for i in unit)]
            if not units or last:
                break
            for unit in units:
                for index in unit:
                    outcomes[index] = None
        if isinstance(outcomes, _TellingOutcomes):
            outcomes.tell_set()
        return [outcome for outcome in outcomes if outcome is not None]

    async def _run_waves(self, transfers: list[Transfer], waiting: list[list[int]],
                         outcomes: list[Outcome | None]) -> None:
        """Run units in waves: a unit whose id is under way (here, or in another request)
        waits for it."""
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
                if isinstance(outcomes, _TellingOutcomes):
                    outcomes.tell_set()  # (held ones: their finalize is done now)
            else:
                busy = {self.live[transfers[i].id] for unit in waiting for i in unit
                        if transfers[i].id in self.live}
                await asyncio.wait(busy, return_when=asyncio.FIRST_COMPLETED)

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

        The answer can leave once the home's commit is durable (round B; for a staged
        transfer, round A: its staging and parts) and the finalize commands are queued: any
        later command to those shards through this router, a read of the same accounts
        included, runs after them. The ids stay under way until round
        C is done. With `answer_after_finalize` the answer waits for round C too.
        """
        finishing: asyncio.Future[None] | None = None
        try:
            finishing = await self._rounds(transfers, wave, outcomes, ids, done)
        finally:
            if finishing is not None and self.answer_after_finalize:
                await asyncio.shield(finishing)

    async def _rounds(
        self,
        transfers: list[Transfer],
        wave: list[list[int]],
        outcomes: list[Outcome | None],
        ids: set[str],
        done: asyncio.Future[None],
    ) -> asyncio.Future[None] | None:
        """Round A (with the staged transfers' answers), round B for the others, round C
        queued; returns round C's task (None: no round C)."""
        finalizing: list[tuple[_Pending, list[Settlement]]] = []
        try:
            runs = [self._chain_run(transfers, unit) for unit in wave if len(unit) > 1]
            singles = [unit[0] for unit in wave if len(unit) == 1]
            crosses = await self._round_reserve_and_local(transfers, singles, outcomes, runs)
            if crosses or runs:
                if failpoints.ARMED:
                    failpoints.hit(failpoints.ROUTER_AFTER_RESERVE)
                staged = [cross for cross in crosses if cross.staged]
                if staged:  # decided now: their decisions queued before any answer is told
                    answers = [cross.staged_outcome() for cross in staged]
                    finalizing.append((self._submit(
                        [call for cross, answer in zip(staged, answers, strict=True)
                         for call in _staged_decision_calls(cross, answer)], admitted=True), []))
                    for cross, answer in zip(staged, answers, strict=True):
                        outcomes[cross.index] = answer
                others = [cross for cross in crosses if not cross.staged]
                if others or runs:
                    await self._round_commit(others, outcomes, runs)
                if failpoints.ARMED:
                    failpoints.hit(failpoints.ROUTER_AFTER_COMMIT)
                    if runs:
                        failpoints.hit(failpoints.ROUTER_CHAIN_HALF_DECIDED)
                if others or runs:
                    settlements: list[Settlement] = []
                    finalizing.append((self._submit(self._finalize_calls(others, settlements) + [
                        call for run in runs for call in run.finalize_calls()], admitted=True),
                        settlements))
        finally:
            if not finalizing:
                self._release(ids, done)
                task = None
            else:
                task = asyncio.ensure_future(self._finish_wave(finalizing, ids, done))
                self._finishing.add(task)
                task.add_done_callback(self._finishing.discard)
        return task

    async def _finish_wave(self, finalizing: list[tuple[_Pending, list[Settlement]]],
                           ids: set[str], done: asyncio.Future[None]) -> None:
        try:
            for pending, settlements in finalizing:
                replies = await self._gather(pending)
                for reply in replies:
                    if isinstance(reply, BaseException):
                        log.warning("finalize failed, left for redrive: %r", reply)
                homes = settled_at_homes(settlements, replies)
                if homes:  # the pending transfers posts and voids resolved: nothing left held
                    await self.scatter([(home, SettleDone(pending_ids))
                                        for home, pending_ids in homes.items()], admitted=True)
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
        calls: list[Call] = []
        owners: list[tuple[int, _Cross | ChainRun | None]] = []
        for run in runs:
            for call in run.reserve_calls():
                calls.append(call)
                owners.append((call[0], run))
        crosses: list[_Cross] = []
        shard_of = self.shard_of
        for index in wave:
            transfer = transfers[index]
            home = shard_of(transfer.id)
            if transfer.flags & RESOLVES_PENDING:
                cross = self._resolving(index, transfer, home)
                crosses.append(cross)
                calls.append((cross.claim_shard, ClaimPending(transfer, cross.attempt)))
                owners.append((-1, cross))
                continue
            debit = shard_of(transfer.debit_account_id)
            credit = shard_of(transfer.credit_account_id)
            if home == debit == credit:
                calls.append((home, Commit(transfer, _BOTH)))
                owners.append((index, None))
                continue
            cross = self._cross(index, transfer, home, debit, credit)
            crosses.append(cross)
            if self.staged_commit and not transfer.flags & BALANCING:
                cross.staged = True
                calls.append((home, Stage(transfer, cross.home_roles, cross.attempt)))
                owners.append((_STAGED_AT_HOME, cross))
            for shard, roles in cross.remote_roles.items():
                calls.append((shard, Reserve(transfer, roles, cross.attempt)))
                owners.append((shard, cross))
        def decide_local(positions: list[int]) -> None:
            """A transfer wholly on one shard is final once its shard answers."""
            for position in positions:
                key, owner = owners[position]
                if owner is None:
                    reply = replies[position]
                    outcomes[key] = reply if isinstance(reply, BaseException) else \
                        _transfer_outcome(reply)

        pending = self._submit(calls)
        replies = pending[0]
        unsent = {place for place, reply in enumerate(replies) if reply is not None}
        await self._gather(pending, decide_local)
        for place, ((key, owner), reply) in enumerate(zip(owners, replies, strict=True)):
            if owner is None:
                continue  # decided as its shard answered
            if place in unsent and isinstance(owner, _Cross):
                owner.unsent = True  # refused here (a full queue): that part is not there
            if isinstance(owner, ChainRun):
                owner.reserved[key] = reply
            elif key == _STAGED_AT_HOME:
                owner.committed = reply
            elif key < 0:
                owner.claimed = reply
            else:
                owner.reserved[key] = reply
        return crosses

    def _resolving(self, index: int, transfer: Transfer, home: int) -> _Cross:
        """A post or void: its home commits it, its pending transfer's home is claimed."""
        self._attempt_next += 1
        return _Cross(index, transfer, home, 0, {}, self._attempt_base + self._attempt_next,
                      claim_shard=self.shard_of(transfer.pending_id))

    def _cross(self, index: int, transfer: Transfer, home: int, debit: int, credit: int
               ) -> _Cross:
        home_roles = (_DEBIT if debit == home else 0) | (_CREDIT if credit == home else 0)
        remote_roles: dict[int, int] = {}
        if debit != home:
            remote_roles[debit] = _DEBIT
        if credit != home:
            remote_roles[credit] = remote_roles.get(credit, 0) | _CREDIT
        self._attempt_next += 1
        return _Cross(index, transfer, home, home_roles, remote_roles,
                      self._attempt_base + self._attempt_next)

    async def _round_commit(self, crosses: list[_Cross], outcomes: list[Outcome | None],
                            runs: list[ChainRun]) -> None:
        calls: list[Call] = [run.commit_call() for run in runs]
        for cross in crosses:
            remote = _OK
            parts = [*cross.reserved.values(), *([cross.claimed] if cross.claim_shard >= 0 else [])]
            for part in parts:
                if isinstance(part, BaseException) or part is None:
                    remote = first_failure(remote, _IN_FLIGHT)
                else:
                    remote = first_failure(remote, TRANSFER_RESULTS[part.result])
            claimed = cross.claimed.pending if isinstance(cross.claimed, ClaimReply) else None
            calls.append((cross.home, Commit(cross.transfer, cross.home_roles, remote,
                                             cross.attempt, _remote_rules(cross.reserved),
                                             claimed)))
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
                continue
            reply = expect(reply, TransferReply)
            if errors and not reply.result.startswith("exists"):
                outcomes[cross.index] = errors[0]
            else:
                outcomes[cross.index] = _transfer_outcome(reply)

    def _finalize_calls(self, crosses: list[_Cross], settlements: list[Settlement]
                        ) -> list[Call]:
        """Round C's commands; `settlements` gets, per pending transfer a post or void
        resolved, its home and the places of its settle commands."""
        calls: list[Call] = []
        for cross in crosses:
            reply = cross.committed
            if not isinstance(reply, TransferReply | SlotMoving):
                continue  # no answer from the home: only its decision decides; redrive asks
            committed = reply.transfer if isinstance(reply, TransferReply) and \
                reply.result == _OK else None  # (a home that said slot_moved applied nothing)
            if cross.claim_shard >= 0:
                resolution = self._resolution_calls(cross, committed)
                if len(resolution) > 1:  # the claim's finalize, then the parts' settles
                    settlements.append((cross.claim_shard, cross.transfer.pending_id,
                                        list(range(len(calls) + 1, len(calls) + len(resolution)))))
                calls.extend(resolution)
                continue
            outcome = (HOLD if cross.transfer.flags & PENDING else POST) if committed else VOID
            timestamp = committed.timestamp if committed else 0
            amount = committed.amount if committed else 0
            for shard, reserved in cross.reserved.items():
                if isinstance(reserved, ReserveReply) and reserved.result == _OK and (
                        reserved.rules is None or reserved.held):
                    calls.append((shard, Finalize(cross.transfer.id, cross.attempt, outcome,
                                                  timestamp, amount)))
        return calls

    def _resolution_calls(self, cross: _Cross, committed: Transfer | None) -> list[Call]:
        """A post or void decided: release or resolve the claim; if committed, settle the
        pending transfer's held parts on its accounts' shards."""
        claimed = cross.claimed
        if not isinstance(claimed, ClaimReply) or claimed.result != _OK:
            return []  # no claim was taken (or it is unknown: redrive lists claims)
        transfer = cross.transfer
        calls: list[Call] = [(cross.claim_shard, FinalizeClaim(
            transfer.pending_id, transfer.id, cross.attempt, committed))]
        if committed is not None and claimed.pending is not None:
            pending = claimed.pending
            post = bool(transfer.flags & POST_PENDING)
            amount = committed.amount if post else 0
            calls += settles(self.shard_of, pending.id, pending, post, amount, committed)
        return calls

    # ---- reads ----

    async def statuses(self) -> list[ShardStatus]:
        """Every shard's status, read beside its batches (never through its write queue);
        raises ShardUnavailable if a shard does not answer."""
        try:
            return list(await asyncio.gather(*(link.status() for link in self.links)))
        except Exception as error:
            raise ShardUnavailable(f"a shard did not answer its status: {error!r}") from None

    async def statuses_answered(self, timeout_s: float = 2.0) -> list[ShardStatus | None]:
        """Every shard's status, None for one recovering or not answering in time."""
        async def one(index: int, link: ShardLink) -> ShardStatus | None:
            if self.channels[index].recovering_since_s is not None:
                return None
            try:
                return await asyncio.wait_for(link.status(), timeout_s)
            except Exception:
                return None

        return list(await asyncio.gather(*(one(i, link) for i, link in enumerate(self.links))))

    async def totals(self) -> dict[str, list[int]]:
        """Per ledger, exact sums over every shard (kept by each shard as it applies)."""
        sums: dict[str, list[int]] = {}
        for reply in await self.ask_all(GetTotals()):
            add_totals(sums, expect(reply, TotalsReply).totals)
        return sums

    def queue_depths(self) -> list[int]:
        return [channel.queued_commands for channel in self.channels]

    def recovering(self) -> dict[int, float]:
        """Shards recovering (their actor died; Ray restarts it): shard -> since (wall clock,
        seconds)."""
        return {channel.shard_index: channel.recovering_since_s for channel in self.channels
                if channel.recovering_since_s is not None}


class _Repeats:
    """Single items whose id an earlier single item of the request has: set aside, and
    answered once the earlier one is decided. After `ok` or `exists*` a repeat is answered
    here, as the id's home would (`exists`, or the first field that differs), without another
    round to the shards: 8,190 copies of one transfer cost one round, not 8,190."""

    def __init__(self, transfers: list[Transfer], units: list[list[int]],
                 send_on: bool = True) -> None:
        """`send_on`: a lead refused for a moved slot may run again (its answer not told)."""
        self.transfers = transfers
        self.send_on = send_on
        self.lead: dict[str, int] = {}  # id -> the place whose outcome decides its repeats
        self.waiting: dict[str, list[int]] = {}  # id -> its repeats' places, in order
        self.units: list[list[int]] = []  # the units to run first
        self.hops: Counter[str] = Counter()  # id -> times its lead was sent on
        for unit in units:
            if len(unit) == 1:
                transfer_id = transfers[unit[0]].id
                if transfer_id in self.lead:
                    self.waiting.setdefault(transfer_id, []).append(unit[0])
                    continue
                self.lead[transfer_id] = unit[0]
            self.units.append(unit)

    def answer(self, outcomes: list[Outcome | None]) -> list[list[int]]:
        """Answer what can be; returns the units to run next (a copy whose earlier attempt
        stored nothing is a new attempt of its own). A lead refused for a moved slot runs
        again itself (up to SLOT_HOPS_MAX times): the first copy stays the one made."""
        again: list[list[int]] = []
        for transfer_id in list(self.waiting):
            places = self.waiting[transfer_id]
            lead = self.lead[transfer_id]
            outcome = outcomes[lead]
            if self.send_on and _moved(outcome) and self.hops[transfer_id] < SLOT_HOPS_MAX - 1:
                self.hops[transfer_id] += 1
                outcomes[lead] = None
                again.append([lead])
                continue
            if isinstance(outcome, tuple) and outcome[1] is not None and (
                    outcome[0] == _OK or outcome[0].startswith("exists")):
                for index in places:
                    code = repeat_of(outcome[1], self.transfers[index])
                    outcomes[index] = (code.value, outcome[1])
                places.clear()
            else:
                self.lead[transfer_id] = places.pop(0)
                again.append([self.lead[transfer_id]])
            if not places:
                del self.waiting[transfer_id]
        return again


def _fill(replies: list[Any], positions: list[int], future: asyncio.Future[list[Any]]
          ) -> None:
    """A group's replies into their places: the exception that kept them, for each."""
    try:
        group_replies: list[Any] = future.result()
    except Exception as error:
        group_replies = [error] * len(positions)
    for i, reply in zip(positions, group_replies, strict=True):
        replies[i] = reply


def settled_at_homes(owners: list[Settlement], replies: list[Any]
                     ) -> dict[int, list[str]]:
    """Per home, the pending transfers whose every part's shard answered its settle."""
    done: dict[int, list[str]] = {}
    for home, pending_id, places in owners:
        if all(isinstance(replies[place], Applied) for place in places):
            done.setdefault(home, []).append(pending_id)
    return done


def _staged_decision_calls(cross: _Cross, outcome: Outcome) -> list[Call]:
    """Round C of a staged transfer (`outcome`: its answer): the decision at its home, and
    each part finalized.

    Committed (its answer said ok): the home and every part at once. Refused somewhere
    (`_Cross.refused_somewhere`): it can never commit, so the home and every part that may
    hold it (answered ok, or its answer lost) are voided at once. Not known (only replies
    lost): only the home is voided; its parts are left to redrive, which asks the home,
    because recovery may have found every part there and committed it meanwhile."""
    transfer, home = cross.transfer, cross.home
    if isinstance(outcome, BaseException) and not cross.refused_somewhere():
        return [(home, Finalize(transfer.id, cross.attempt, VOID, 0))]
    if isinstance(outcome, tuple) and outcome[0] == _OK:
        decision = Finalize(transfer.id, cross.attempt, staged_decision(transfer),
                            outcome[1].timestamp)
        return [(shard, decision) for shard in (home, *cross.reserved)]
    void = Finalize(transfer.id, cross.attempt, VOID, 0)  # a no-op where nothing is held
    return [(home, void), *((shard, void) for shard, reply in cross.reserved.items()
                            if not isinstance(reply, ReserveReply) or reply.result == _OK)]


def _transfer_outcome(reply: Reply) -> Outcome:
    committed = expect(reply, TransferReply)
    return committed.result, committed.transfer


def _remote_rules(reserved: dict[int, ReserveReply | BaseException]) -> list[Rule] | None:
    """A balancing transfer's rules from its reserved parts, for its home (None: not one)."""
    replies = [reply for reply in reserved.values()
               if isinstance(reply, ReserveReply) and reply.rules is not None]
    return [rule for reply in replies for rule in reply.rules or []] if replies else None
