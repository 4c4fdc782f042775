"""Property test of per-account limits: the real router over three in-process shard hosts,
one operation at a time, against a small reference (transfer_max, overdraft, velocity over a
rolling window, limits changed mid-run, with single-phase and pending transfers, posts, voids
and expiry).

It reuses the two-phase model (tests/actors/test_two_phase_model.py): its reference keeps
the balances, posts, voids and expiry; this one adds the limits checked on the debit side.

Time is the test's: the shards' clock stands still until a `wait` moves it by whole steps of
STEP_MS. No window is a multiple of a step, so no debit ever sits exactly on a window's edge
(the shards add a nanosecond per command, far less than the distance to the edge; the edge
itself, to the nanosecond, is for tests/actors/test_limits_table.py).

What the velocity window holds follows actors/limits.py and the ledger: a debit counts if
its transfer commits, wherever its id and accounts live (a cross-shard reservation counts
while in doubt and is taken back if voided); a committed pending transfer's debit is not
given back by its void or expiry; switching the limit off forgets the debits, and a new
window starts from what the old one still held. Repeats of an id (which use no budget) are
tests/switch/test_limits.py's.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from itertools import count
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st
from msgspec.structs import astuple

from actors.ledger.limits import Limits
from actors.ledger.model import PENDING, POST_PENDING, VOID_PENDING, Account, Transfer
from actors.ledger.pending import UNSPECIFIED_CODE
from actors.messages import SetLimits
from actors.shard.host import ShardHost
from switch.routing.redrive import Redriver
from switch.routing.router import Router
from tests.actors.ledger_helpers import accounts_now
from tests.actors.test_two_phase_model import Clock, Reference, shards

# 1: debits must not exceed credits (the overdraft applies), 2: credits must not exceed debits.
# Placed over the three shards: a, d on 0; bank, i, m on 1; c, e on 2.
ACCOUNT_FLAGS = {"bank": 0, "a": 1, "e": 1, "i": 1, "c": 0, "d": 2, "m": 2}
FUNDED = ["a", "c", "d", "e", "i"]  # FUNDING each from the bank, first
FUNDING = 100
STEP_MS = 3
TICK_MS = 333_333 * STEP_MS  # about 1,000 s (whole steps): past every timeout and window
TIMEOUT_MS = 60_000  # only a tick reaches it
# The order in which failures win when the debit and the credit side both fail (codes.py).
FAILURE_ORDER = ["exceeds_transfer_max", "exceeds_credits", "exceeds_debits",
                 "exceeds_velocity_limit"]
NO_LIMITS = [0, 0, 0, 0]  # transfer_max, overdraft, velocity_max, velocity_window_ms


class LimitsReference(Reference):
    """The two-phase reference, with the limits on the debit side and each account's debits
    in its velocity window. Times are in ms since the start."""

    def __init__(self, shard_of: Callable[[str], int]) -> None:
        super().__init__(balances={name: [0, 0, 0, 0] for name in ACCOUNT_FLAGS})
        self.shard_of = shard_of
        self.now_ms = 0
        self.limits: dict[str, list[int]] = {}
        # For accounts with a velocity limit, since it was set: (ms, amount), oldest first.
        self.debits: dict[str, list[tuple[int, int]]] = {}

    def set_limits(self, account: str, row: list[int]) -> str:
        if account not in self.balances:
            return "account_not_found"
        velocity_max, window_ms = row[2], row[3]
        if bool(velocity_max) != bool(window_ms):
            return "limits_invalid"
        old = self.limits.get(account, NO_LIMITS)
        if row == old:
            return "unchanged"
        self.limits[account] = row
        if not velocity_max:
            self.debits.pop(account, None)  # off: forgotten (on again later: from nothing)
        elif window_ms != old[3] and account in self.debits:
            # A new window keeps what the old one held at the change (no more is known).
            kept, self.debits[account] = self.debits[account], []
            for at_ms, amount in kept:
                if self.now_ms - at_ms < old[3]:
                    self._count(account, at_ms, amount)
        else:
            self.debits.setdefault(account, [])
        return "ok"

    def recent(self, account: str) -> int:
        window_ms = self.limits.get(account, NO_LIMITS)[3]
        return sum(amount for at_ms, amount in self.debits.get(account, [])
                   if self.now_ms - at_ms < window_ms)

    def _count(self, account: str, at_ms: int, amount: int) -> None:
        """Record a debit, and forget those now out of the window (as the ledger does)."""
        window_ms = self.limits[account][3]
        self.debits[account] = [(t, a) for t, a in [*self.debits[account], (at_ms, amount)]
                                if at_ms - t < window_ms]

    def amount_at(self, account: str, limit: str, beyond: int) -> int:
        """An amount that just meets (beyond 0) or just passes (1) one of the debit limits."""
        dp, cp, dpend, _ = self.balances[account]
        transfer_max, overdraft, velocity_max, _ = self.limits.get(account, NO_LIMITS)
        room = {"transfer_max": transfer_max, "credits": cp + overdraft - dp - dpend,
                "velocity": velocity_max - self.recent(account)}[limit]
        return max(1, room + beyond)

    def adjusted(self, account: str, changes: list[int | None]) -> list[int]:
        """The account's limits with some changed (None: kept); the velocity limit only if it
        is on, and never switched off here."""
        row = list(self.limits.get(account, NO_LIMITS))
        for i, value in enumerate(changes):
            if value is not None and (i < 2 or (row[2] and value)):
                row[i] = value
        return row

    def check_debit(self, account: str, amount: int) -> str:
        dp, cp, dpend, _ = self.balances[account]
        transfer_max, overdraft, velocity_max, _ = self.limits.get(account, NO_LIMITS)
        if transfer_max and amount > transfer_max:
            return "exceeds_transfer_max"
        if ACCOUNT_FLAGS[account] & 1 and dp + dpend + amount > cp + overdraft:
            return "exceeds_credits"
        if velocity_max and self.recent(account) + amount > velocity_max:
            return "exceeds_velocity_limit"
        return "ok"

    def check_credit(self, account: str, amount: int) -> str:
        dp, cp, _, cpend = self.balances[account]
        if ACCOUNT_FLAGS[account] & 2 and cp + cpend + amount > dp:
            return "exceeds_debits"
        return "ok"

    def submit(self, id_: str, debit: str, credit: str, amount: int, pending: bool,
               timeout: int) -> str:
        assert id_ not in self.transfers  # ids are never repeated here
        if debit == credit:
            return "accounts_must_be_different"
        debit_result = self.check_debit(debit, amount)
        failures = [r for r in (debit_result, self.check_credit(credit, amount)) if r != "ok"]
        result = min(failures, key=FAILURE_ORDER.index) if failures else "ok"
        # The debit counts towards velocity if the transfer commits, wherever it lives (a
        # reservation counts while in doubt and is taken back when it is voided).
        if result == "ok" and debit in self.debits:
            self._count(debit, self.now_ms, amount)
        if result != "ok":
            return result
        self._apply(id_, {"debit": debit, "credit": credit, "amount": amount,
                          "flags": PENDING if pending else 0, "pending_id": "",
                          "timeout": timeout}, pending)
        return "ok"

    def tick(self) -> None:
        self.now_ms += TICK_MS
        super().tick()


debits = st.sampled_from(["a", "a", "e", "e", "i", "i", "bank", "c", "d"])  # mostly limited
credits = st.sampled_from(["bank", "c", "c", "a", "e", "i", "d", "m"])
shard = st.integers(0, 2)  # the home of the transfer's id
amount = st.one_of(st.integers(1, 30), st.sampled_from([10, 11, 25, 26, 40, 41, 60, 120]))
windowed = st.tuples(st.sampled_from([20, 30, 50]), st.sampled_from([2, 5, 10, 20, 50]))
velocity = st.one_of(st.just((0, 0)), windowed, windowed, windowed)
limits_row = st.builds(lambda tm, od, v: [tm, od, *v], st.sampled_from([0, 0, 0, 10, 25, 40]),
                       st.sampled_from([0, 0, 15, 50]), velocity)
maybe_row = st.one_of(st.none(), limits_row, limits_row)
timeout = st.sampled_from([0, 0, TIMEOUT_MS])
transfer = st.tuples(st.just("transfer"), shard, debits, credits, amount, st.booleans(), timeout)
# An amount at the edge of one limit of the debit account (see LimitsReference.amount_at).
edge = st.tuples(st.just("edge"), shard, debits, credits,
                 st.sampled_from(["transfer_max", "credits", "velocity"]), st.integers(0, 1),
                 st.booleans(), timeout)
resolving = st.tuples(st.just("resolve"), shard, st.sampled_from([True] * 4 + [False]),
                      st.integers(0, 20), st.booleans(), st.sampled_from([0, 0, 5, 10, 60]))
change = st.tuples(st.just("limits"), st.sampled_from([*ACCOUNT_FLAGS, "nobody"]),
                   st.one_of(limits_row, limits_row, limits_row, st.just(NO_LIMITS),
                             st.just([0, 0, 30, 0])))
# Some limits of one account changed, the rest (the velocity window above all) kept.
tweak = st.tuples(st.just("tweak"), debits, st.tuples(
    *[st.sampled_from([None, None, 0, 10, 25, 40])] * 3,
    st.sampled_from([None, 2, 5, 10, 20, 50])))
wait = st.tuples(st.just("wait"), st.integers(1, 5))
tick = st.tuples(st.just("tick"))
kinds = {"transfer": transfer, "edge": edge, "resolve": resolving, "limits": change,
         "tweak": tweak, "wait": wait, "tick": tick}
weights = {"transfer": 6, "edge": 3, "resolve": 3, "limits": 2, "tweak": 2, "wait": 3, "tick": 1}
operation = st.sampled_from([kind for kind, n in weights.items() for _ in range(n)]).flatmap(
    kinds.__getitem__)
operations = st.lists(operation, min_size=10, max_size=60)
initial = st.fixed_dictionaries({name: maybe_row for name in ACCOUNT_FLAGS if name != "bank"})


class StillClock(Clock):
    """Stands still between the test's moves (the shards then add a nanosecond a command)."""

    def __call__(self) -> int:
        return self.now_ns


def ids_homed_at(router: Router, home: int) -> Iterator[str]:
    """Fresh transfer ids whose home is this shard."""
    return (id_ for id_ in (f"x{n}" for n in count()) if router.shard_of(id_) == home)


def check_final_state(hosts: list[ShardHost], reference: LimitsReference, now_ns: int) -> None:
    accounts = {a.id: (h, a) for h in hosts for a in h.ledger.accounts.values()}
    for name, expected in reference.balances.items():
        host, account = accounts[name]
        assert [account.debits_posted, account.credits_posted, account.debits_pending,
                account.credits_pending] == expected, name
        limits = host.ledger.limits.get(name)
        assert (list(astuple(limits)) if limits is not None else NO_LIMITS) == \
            reference.limits.get(name, NO_LIMITS), name
        velocity = host.ledger.velocity.get(name)
        assert (velocity is not None) == (name in reference.debits), name
        if velocity is not None:
            assert velocity.sum_since(now_ns - velocity.window_ns) == reference.recent(name), name
    assert not any(r for h in hosts for r in h.ledger.reservations.values() if not r.held)


def check_recovery(hosts: list[ShardHost], clock: Clock) -> None:
    """Limits and velocity windows come back the same from the log (and snapshots)."""
    for host in hosts:
        host.wait_for_snapshot()
        live = host.ledger
        again = ShardHost(host.config, host._open_log, clock_ns=clock).ledger
        assert again.limits == live.limits
        assert {k: v.state() for k, v in again.velocity.items()} == \
            {k: v.state() for k, v in live.velocity.items()}
        assert accounts_now(again) == accounts_now(live)


@settings(max_examples=600, deadline=None)
@given(initial, operations)
def test_router_limits_match_the_reference(start: dict[str, list[int] | None],
                                           ops: list[tuple[Any, ...]]) -> None:
    clock = StillClock()
    router, hosts = shards(clock)
    reference = LimitsReference(router.shard_of)
    transfer_ids = [ids_homed_at(router, home) for home in range(3)]
    pending_ids: list[str] = []
    plain_ids: list[str] = []

    async def submit(transfer: Transfer) -> str:
        (outcome,) = await router.create_transfers([transfer])
        assert not isinstance(outcome, BaseException), outcome
        return outcome[0]

    async def set_limits(account: str, row: list[int]) -> None:
        reply = await router.ask(router.shard_of(account), SetLimits(account, Limits(*row)))
        assert reply.result == reference.set_limits(account, row), (account, row)
        if reply.result != "account_not_found":
            now = list(astuple(reply.limits)) if reply.limits is not None else NO_LIMITS
            assert now == reference.limits.get(account, NO_LIMITS)

    async def drive() -> None:
        redriver = Redriver(router)
        rows = [start.get(name) for name in ACCOUNT_FLAGS]
        created = await router.create_accounts(
            [Account(name, "USD", 1, "o", flags, "") for name, flags in ACCOUNT_FLAGS.items()],
            limits=[Limits(*row) if row is not None else None for row in rows])
        for name, row, outcome in zip(ACCOUNT_FLAGS, rows, created, strict=True):
            assert not isinstance(outcome, BaseException) and outcome[0] == "ok", outcome
            if row is not None:
                assert reference.set_limits(name, row) in ("ok", "unchanged")
        for name in FUNDED:
            funding = Transfer(f"fund-{name}", "bank", name, FUNDING, "USD", 1, "")
            expected = reference.submit(funding.id, "bank", name, FUNDING, False, 0)
            assert await submit(funding) == expected, name
        for op in ops:
            kind = op[0]
            if kind == "wait":
                clock.now_ns += op[1] * STEP_MS * 1_000_000
                reference.now_ms += op[1] * STEP_MS
            elif kind == "tick":
                clock.now_ns += TICK_MS * 1_000_000
                reference.tick()
                await redriver.run_once()
            elif kind == "limits":
                await set_limits(op[1], op[2])
            elif kind == "tweak":
                await set_limits(op[1], reference.adjusted(op[1], list(op[2])))
            elif kind in ("transfer", "edge"):
                if kind == "edge":
                    _, home, debit, credit, limit, beyond, pending, timeout = op
                    amount_ = reference.amount_at(debit, limit, beyond)
                else:
                    _, home, debit, credit, amount_, pending, timeout = op
                id_ = next(transfer_ids[home])
                timeout = timeout if pending else 0
                result = await submit(Transfer(id_, debit, credit, amount_, "USD", 1, "",
                                               PENDING if pending else 0, "", timeout))
                (pending_ids if pending else plain_ids).append(id_)
                assert result == reference.submit(id_, debit, credit, amount_, pending,
                                                  timeout), op
            else:
                _, home, of_pending, k, post, amount_ = op
                targets = pending_ids if of_pending else plain_ids
                if not targets:
                    continue
                target, id_ = targets[k % len(targets)], next(transfer_ids[home])
                result = await submit(Transfer(id_, "", "", amount_, "", UNSPECIFIED_CODE, "",
                                               POST_PENDING if post else VOID_PENDING, target))
                assert result == reference.resolve(id_, target, post, amount_), op
        while router._finishing:
            await asyncio.sleep(0)
        await redriver.run_once()

    asyncio.run(drive())
    check_final_state(hosts, reference, clock.now_ns)
    check_recovery(hosts, clock)
