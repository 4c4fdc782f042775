"""A stateful property test of the router over shards whose links fail and stall: batches run
concurrently, a call may be lost before it reaches its shard or after the shard committed
it, or fail to its caller and reach the shard later (after redrive: a dropped connection's
request run late), and redrive runs now and then. Whatever happens:

- a transfer answered `ok` or `exists` is stored, exactly once, with what was sent;
- a transfer answered with a ledger rule's code is not stored;
- money is neither created nor destroyed: once redrive has settled everything, every
  ledger balances, nothing is left pending or in doubt, and no limited account is overdrawn.
"""

from __future__ import annotations

import asyncio
import random
from typing import Any

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule

from actors.ledger.model import DEBITS_MUST_NOT_EXCEED_CREDITS, PENDING, Account, Transfer
from actors.ledger.queries import PartInDoubt
from actors.ledger.verdicts import is_staged, remote_shards
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, round_robin
from persistence.log import MemoryLog
from switch.routing.redrive import Redriver
from switch.routing.router import Router
from switch.routing.transport import LocalShard

ACCOUNTS = [f"acct-{n}" for n in range(8)]
FUNDS = 1_000
REJECTIONS = {"exceeds_credits", "linked_event_failed"}


class FlakyLink(LocalShard):
    """A link that, as the dice say, stalls a call, loses it before the shard runs it, loses
    the shard's answer after it ran (the shard committed: the caller does not know), or fails
    it to the caller and runs it on the shard later (`deliver_late`)."""

    def __init__(self, index: int, host: ShardHost, rng: random.Random) -> None:
        super().__init__(index, host)
        self.rng = rng
        self.flaky = False
        self.late: list[bytes] = []

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        roll = self.rng.random() if self.flaky else 1.0
        if roll < 0.05:
            raise ConnectionError("lost on the way")
        if 0.96 < roll < 1.0:  # (1.0: a calm link)
            self.late.append(blob)
            raise ConnectionError("the connection dropped; the shard runs it later")
        for _ in range(self.rng.randint(0, 3)):
            await asyncio.sleep(0)
        reply = await super().call(blob, request_ids)
        if roll < 0.10:
            raise ConnectionError("the answer was lost")
        return reply


class FlakyRouter(RuleBasedStateMachine):
    @initialize(seed=st.integers(0, 2**32 - 1))
    def start(self, seed: int) -> None:
        self.rng = random.Random(seed)
        self.loop = asyncio.new_event_loop()  # the router's channels live on one loop
        logs = [MemoryLog() for _ in range(3)]
        self.hosts = [ShardHost(ShardConfig(i, ("USD",), 40), lambda log=log: log)
                      for i, log in enumerate(logs)]
        self.links = [FlakyLink(i, host, self.rng) for i, host in enumerate(self.hosts)]
        self.router = Router(self.links, Placement(round_robin(3, 64)), 10_000, 8190)
        self.sent: dict[str, Transfer] = {}
        self.answers: dict[str, list[str | None]] = {}  # per id, per copy sent (None: in doubt)
        self.n = 0
        self.loop.run_until_complete(self._open())

    async def _open(self) -> None:
        bank = Account("bank", "USD", 1, "o", 0, "")
        accounts = [Account(a, "USD", 1, "o", DEBITS_MUST_NOT_EXCEED_CREDITS, "")
                    for a in ACCOUNTS]
        await self.router.create_accounts([bank, *accounts])
        funding = [Transfer(f"fund-{a}", "bank", a, FUNDS, "USD", 1) for a in ACCOUNTS]
        outcomes = await self.router.create_transfers(funding)
        assert all(o[0] == "ok" for o in outcomes)  # type: ignore[index]
        for link in self.links:
            link.flaky = True

    def _transfer(self, pending: bool) -> Transfer:
        self.n += 1
        debit, credit = self.rng.sample(ACCOUNTS, 2)
        transfer = Transfer(f"t{self.n}", debit, credit, self.rng.randint(1, 400), "USD", 1,
                            "", PENDING if pending else 0, "", 50 if pending else 0)
        self.sent[transfer.id] = transfer
        return transfer

    @rule(batches=st.integers(1, 4), size=st.integers(1, 6), pending=st.booleans())
    def concurrent_batches(self, batches: int, size: int, pending: bool) -> None:
        requests = [[self._transfer(pending and self.rng.random() < 0.3) for _ in range(size)]
                    for _ in range(batches)]
        # Now and then a batch repeats an earlier transfer (a client's retry).
        if self.sent and self.rng.random() < 0.3:
            requests[0].append(self.sent[self.rng.choice(list(self.sent))])

        async def send() -> list[list[Any]]:
            return list(await asyncio.gather(*(self.router.create_transfers(r)
                                               for r in requests)))

        for request, outcomes in zip(requests, self.loop.run_until_complete(send()),
                                     strict=True):
            for transfer, outcome in zip(request, outcomes, strict=True):
                answer = None if isinstance(outcome, BaseException) else outcome[0]
                self.answers.setdefault(transfer.id, []).append(answer)

    @rule()
    def redrive(self) -> None:
        self.loop.run_until_complete(Redriver(self.router).run_once())
        self._deliver_late()

    def _deliver_late(self) -> None:
        """What failed to its callers reaches the shards now, after redrive decided."""
        for link, host in zip(self.links, self.hosts, strict=True):
            late, link.late = link.late, []
            for blob in late:
                host.handle(blob, [])

    @invariant()
    def what_was_acknowledged_is_stored_as_sent(self) -> None:
        """A copy answered ok/exists: stored as sent. Every copy refused by a rule (none in
        doubt): not stored. A refusal may precede an ok (a retry after funds came in), and
        never follow one: a stored transfer answers `exists` for ever."""
        for transfer_id, answers in self.answers.items():
            stored = self._stored(transfer_id)
            if "ok" in answers or "exists" in answers:
                assert stored is not None, transfer_id
                assert stored.same_fields(self.sent[transfer_id]), (stored, answers)
                first = min(answers.index(a) for a in ("ok", "exists") if a in answers)
                assert not set(answers[first + 1:]) & REJECTIONS, (transfer_id, answers)
            elif answers and all(a in REJECTIONS for a in answers):
                assert stored is None, (transfer_id, answers)

    def _stored(self, transfer_id: str) -> Transfer | None:
        """Committed by its durable records: stored at its home, or staged there with every
        part present (its decision, queued, may have been lost: redrive records it)."""
        home = self.hosts[self.router.shard_of(transfer_id)].ledger
        stored = home.stored(transfer_id)
        if stored is not None:
            return stored
        staged = home.reservations.get(transfer_id)
        if staged is None or staged.held:
            return None
        part = PartInDoubt(staged.transfer, staged.roles, staged.attempt, staged.chain, 0)
        if not is_staged(part):
            return None
        for shard in remote_shards(part, self.router.shard_of):
            ledger = self.hosts[shard].ledger
            part = ledger.reservations.get(transfer_id)
            if ledger.stored(transfer_id) is None and (
                    part is None or part.attempt != staged.attempt):
                return None
        return staged.transfer

    def teardown(self) -> None:
        if not hasattr(self, "links"):
            return
        try:
            self._settle_and_check()
        finally:
            self.loop.close()

    def _settle_and_check(self) -> None:
        for link in self.links:
            link.flaky = False
        self._deliver_late()
        for _ in range(3):  # calm links: everything in doubt is settled
            self.loop.run_until_complete(Redriver(self.router).run_once())
        sums = [0, 0, 0, 0]
        for host in self.hosts:
            assert not [r for r in host.ledger.reservations.values() if not r.held]
            for account in host.ledger.accounts.values():
                if account.flags & DEBITS_MUST_NOT_EXCEED_CREDITS:
                    assert account.debits_posted + account.debits_pending <= \
                        account.credits_posted, account
                for field, value in enumerate((account.debits_posted, account.credits_posted,
                                               account.debits_pending,
                                               account.credits_pending)):
                    sums[field] += value
        assert sums[0] == sums[1] and sums[2] == sums[3], sums


FlakyRouter.TestCase.settings = settings(max_examples=40, stateful_step_count=12,
                                         deadline=None)
TestFlakyRouter = FlakyRouter.TestCase
