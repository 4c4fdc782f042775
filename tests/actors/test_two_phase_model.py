"""Property test of two-phase transfers: the real router over three in-process shard hosts,
one operation at a time, against a small reference (pending, post, void, expiry).

The shards share a fake clock, so expiry is under the test's control: a `tick` moves time past
every timeout and runs one redrive pass, as the switch's periodic one would.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.ledger.model import PENDING, POST_PENDING, VOID_PENDING, Account, Transfer
from actors.ledger.pending import UNSPECIFIED_CODE
from actors.shard.host import ShardConfig, ShardHost
from persistence.log import MemoryLog
from switch.routing.redrive import Redriver
from switch.routing.router import Router
from tests.actors.ledger_helpers import local_router

ACCOUNT_FLAGS = {"bank": 0, "a": 1, "b": 1, "c": 0, "d": 2}  # 1: no overdraft, 2: no over-credit
PLAIN_IDS = [f"t{i}" for i in range(6)]
PENDING_IDS = [f"p{i}" for i in range(5)]
RESOLVING_IDS = [f"q{i}" for i in range(5)]


@dataclass
class Reference:
    balances: dict[str, list[int]] = field(default_factory=lambda: {
        name: [0, 0, 0, 0] for name in ACCOUNT_FLAGS})  # dp, cp, dpend, cpend
    transfers: dict[str, dict[str, Any]] = field(default_factory=dict)
    status: dict[str, str] = field(default_factory=dict)

    def submit(self, id_: str, debit: str, credit: str, amount: int, pending: bool,
               timeout: int) -> str:
        if debit == credit:
            return "accounts_must_be_different"
        fields = {"debit": debit, "credit": credit, "amount": amount,
                  "flags": PENDING if pending else 0, "pending_id": "", "timeout": timeout}
        if id_ in self.transfers:
            return self._exists(self.transfers[id_], fields)
        dr, cr = self.balances[debit], self.balances[credit]
        if ACCOUNT_FLAGS[debit] & 1 and dr[0] + dr[2] + amount > dr[1]:
            return "exceeds_credits"
        if ACCOUNT_FLAGS[credit] & 2 and cr[1] + cr[3] + amount > cr[0]:
            return "exceeds_debits"
        self._apply(id_, fields, pending)
        return "ok"

    def _apply(self, id_: str, fields: dict[str, Any], pending: bool) -> None:
        """Store an accepted transfer: posted, or held as pending."""
        dr, cr = self.balances[fields["debit"]], self.balances[fields["credit"]]
        if pending:
            dr[2] += fields["amount"]
            cr[3] += fields["amount"]
            self.status[id_] = "pending"
        else:
            dr[0] += fields["amount"]
            cr[1] += fields["amount"]
        self.transfers[id_] = fields

    def resolve(self, id_: str, pending_id: str, post: bool, amount: int) -> str:
        target = self.transfers.get(pending_id)
        fields = {"debit": "", "credit": "", "amount": amount,
                  "flags": POST_PENDING if post else VOID_PENDING, "pending_id": pending_id,
                  "timeout": 0}
        # What a post or void leaves out is its pending transfer's; a repeat compares as
        # stored, what it leaves out being the stored one's.
        source = self.transfers.get(id_, target)
        if source is not None:
            fields.update(debit=source["debit"], credit=source["credit"],
                          amount=(amount or source["amount"]) if post else source["amount"])
        if id_ in self.transfers:
            return self._exists(self.transfers[id_], fields)
        if target is None:
            return "pending_transfer_not_found"
        if not target["flags"] & PENDING:
            return "pending_transfer_not_pending"
        if post and fields["amount"] > target["amount"]:
            return "exceeds_pending_transfer_amount"
        if not post and amount not in (0, target["amount"]):
            return "pending_transfer_has_different_amount"
        status = self.status[pending_id]
        if status != "pending":
            return {"posted": "pending_transfer_already_posted",
                    "voided": "pending_transfer_already_voided",
                    "expired": "pending_transfer_expired"}[status]
        self._release(target)
        if post:
            self.balances[target["debit"]][0] += fields["amount"]
            self.balances[target["credit"]][1] += fields["amount"]
        self.status[pending_id] = "posted" if post else "voided"
        self.transfers[id_] = fields
        return "ok"

    def tick(self) -> None:
        for pending_id, status in self.status.items():
            if status == "pending" and self.transfers[pending_id]["timeout"]:
                self.status[pending_id] = "expired"
                self._release(self.transfers[pending_id])

    def _release(self, target: dict[str, Any]) -> None:
        self.balances[target["debit"]][2] -= target["amount"]
        self.balances[target["credit"]][3] -= target["amount"]

    @staticmethod
    def _exists(old: dict[str, Any], new: dict[str, Any]) -> str:
        for key, name in (("debit", "debit_account_id"), ("credit", "credit_account_id"),
                          ("amount", "amount"), ("flags", "flags"),
                          ("pending_id", "pending_id"), ("timeout", "timeout_ms")):
            if old[key] != new[key]:
                return f"exists_with_different_{name}"
        return "exists"


names = st.sampled_from(["bank", "a", "a", "b", "b", "c", "d"])
small = st.integers(1, 40)
plain = st.tuples(st.just("plain"), st.sampled_from(PLAIN_IDS), names, names, small)
held = st.sampled_from([1, 9, 10, 39, 40])  # amounts a post meets, and misses by one
pending = st.tuples(st.just("pending"), st.sampled_from(PENDING_IDS), names, names, held,
                    st.sampled_from([0, 0, 5]))
resolving = st.tuples(st.just("resolve"), st.sampled_from(RESOLVING_IDS),
                      st.sampled_from([*PENDING_IDS, "t0"]), st.booleans(),
                      st.sampled_from([0, 0, 1, 9, 10, 11, 40, 41]))
tick = st.tuples(st.just("tick"))  # rarer than the rest: one of several kinds, once
# Some pending transfers first, so that posts and voids have something to resolve.
operations = st.tuples(
    st.lists(pending, min_size=2, max_size=6),
    st.lists(st.one_of(plain, pending, resolving, resolving, resolving, tick), min_size=5,
             max_size=40),
).map(lambda parts: parts[0] + parts[1])


class Clock:
    def __init__(self) -> None:
        self.now_ns = 10**18

    def __call__(self) -> int:
        self.now_ns += 1_000
        return self.now_ns


def shards(clock: Clock) -> tuple[Router, list[ShardHost]]:
    hosts = []
    for index in range(3):
        log = MemoryLog()
        hosts.append(ShardHost(ShardConfig(index, ("USD",), 20), lambda log=log: log.reopen(),
                               clock_ns=clock))

    return local_router(hosts), hosts


def as_transfer(op: tuple[Any, ...]) -> Transfer:
    if op[0] == "resolve":
        _, id_, pending_id, post, amount = op
        return Transfer(id_, "", "", amount, "", UNSPECIFIED_CODE, "",
                        POST_PENDING if post else VOID_PENDING, pending_id)
    _, id_, debit, credit, amount, *rest = op
    timeout = rest[0] if rest else 0
    return Transfer(id_, debit, credit, amount, "USD", 1, "",
                    PENDING if op[0] == "pending" else 0, "", timeout)


@settings(max_examples=300, deadline=None)
@given(operations)
def test_router_two_phase_matches_the_reference(ops: list[tuple[Any, ...]]) -> None:
    clock = Clock()
    router, hosts = shards(clock)
    reference = Reference()

    async def drive() -> None:
        redriver = await open_and_fund(router, reference)
        for op in ops:
            await step(router, redriver, clock, reference, op)
        await settle(router, redriver)

    asyncio.run(drive())
    check_books(hosts, reference)


async def open_and_fund(router: Router, reference: Reference) -> Redriver:
    """The accounts, 100 for each from the bank, in the switch and the reference alike."""
    await router.create_accounts([Account(name, "USD", 1, "o", flags, "")
                                  for name, flags in ACCOUNT_FLAGS.items()])
    funding = [Transfer(f"fund-{n}", "bank", n, 100, "USD", 1, "") for n in "abcd"]
    for outcome, transfer in zip(await router.create_transfers(funding), funding,
                                 strict=True):
        expected = reference.submit(transfer.id, "bank", transfer.credit_account_id, 100,
                                    False, 0)
        assert not isinstance(outcome, BaseException) and outcome[0] == expected
    return Redriver(router)


async def step(router: Router, redriver: Redriver, clock: Clock, reference: Reference,
               op: tuple[Any, ...]) -> None:
    """One operation (a transfer, a post or void, or a tick of the clock) on both sides."""
    if op[0] == "tick":
        clock.now_ns += 10**12  # past every timeout
        reference.tick()
        await redriver.run_once()
        return
    (outcome,) = await router.create_transfers([as_transfer(op)])
    assert not isinstance(outcome, BaseException), outcome
    if op[0] == "resolve":
        expected = reference.resolve(*op[1:])
    else:
        expected = reference.submit(*op[1:5], op[0] == "pending", op[5] if len(op) > 5 else 0)
    assert outcome[0] == expected, (op, outcome)


async def settle(router: Router, redriver: Redriver) -> None:
    """Let the last rounds finish, and one redrive pass settle what they leave."""
    while router._finishing:
        await asyncio.sleep(0)
    await redriver.run_once()


def check_books(hosts: list[ShardHost], reference: Reference) -> None:
    """Every balance, posted and pending, as the reference has it; nothing left in doubt."""
    accounts = {a.id: a for h in hosts for a in h.ledger.accounts.values()}
    for name, expected in reference.balances.items():
        account = accounts[name]
        assert [account.debits_posted, account.credits_posted, account.debits_pending,
                account.credits_pending] == expected, name
    assert not any(r for h in hosts for r in h.ledger.reservations.values() if not r.held)
