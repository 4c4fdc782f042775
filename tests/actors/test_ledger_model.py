"""Property tests: the ledger, and the router over three shards, against a small reference.

The reference applies the documented rules in their documented order with plain dicts. The
core alone must match it command for command; so must the real router running the
cross-shard protocol over three in-process shard hosts (each on the in-memory log), and
after replaying every shard's log from scratch the state must be the same again.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field
from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from actors.ledger.codes import TransferResult
from actors.ledger.ledger import Ledger
from actors.ledger.model import AMOUNT_MAX, BALANCE_MAX, Account, Roles, Transfer
from actors.shard.host import ShardConfig, ShardHost
from persistence.log import MemoryLog
from switch.routing.router import Router
from tests.actors.ledger_helpers import accounts_now, apply_all, history, local_router

LEDGERS = ("USD", "EUR")
ACCOUNT_IDS = ["a", "b", "c", "d", "e", "f"]
TRANSFER_IDS = [f"t{i}" for i in range(10)]


@dataclass
class Reference:
    accounts: dict[str, dict[str, Any]] = field(default_factory=dict)
    transfers: dict[str, tuple[Any, ...]] = field(default_factory=dict)

    def create_account(self, id_: str, ledger: str, flags: int) -> str:
        if flags & ~15 or (flags & 1 and flags & 2):
            return "flags_invalid"
        if ledger not in LEDGERS:
            return "ledger_unknown"
        if id_ in self.accounts:
            existing = self.accounts[id_]
            if existing["ledger"] != ledger:
                return "exists_with_different_ledger"
            return "exists" if existing["flags"] == flags else "exists_with_different_flags"
        self.accounts[id_] = {"ledger": ledger, "flags": flags, "dp": 0, "cp": 0}
        return "ok"

    def transfer(self, id_: str, debit: str, credit: str, amount: int, ledger: str,
                 code: int) -> str:
        if not 0 < amount <= AMOUNT_MAX:
            return "amount_invalid"
        if debit == credit:
            return "accounts_must_be_different"
        if id_ in self.transfers:
            names = ["debit_account_id", "credit_account_id", "amount", "ledger", "code"]
            for name, old, new in zip(names, self.transfers[id_],
                                      (debit, credit, amount, ledger, code), strict=True):
                if old != new:
                    return f"exists_with_different_{name}"
            return "exists"
        dr, cr = self.accounts.get(debit), self.accounts.get(credit)
        if dr is None:
            return "debit_account_not_found"
        if cr is None:
            return "credit_account_not_found"
        if dr["ledger"] != ledger or cr["ledger"] != ledger:
            return "ledger_mismatch"
        if dr["flags"] & 4:
            return "debit_account_closed"
        if cr["flags"] & 4:
            return "credit_account_closed"
        if dr["dp"] + amount > BALANCE_MAX:
            return "overflows_debits"
        if cr["cp"] + amount > BALANCE_MAX:
            return "overflows_credits"
        if dr["flags"] & 1 and dr["dp"] + amount > dr["cp"]:
            return "exceeds_credits"
        if cr["flags"] & 2 and cr["cp"] + amount > cr["dp"]:
            return "exceeds_debits"
        dr["dp"] += amount
        cr["cp"] += amount
        self.transfers[id_] = (debit, credit, amount, ledger, code)
        return "ok"


ledgers = st.sampled_from(["USD", "USD", "USD", "EUR", "XXX"])
account_flags = st.sampled_from([0, 0, 1, 1, 1, 2, 2, 3, 4, 8, 16])
accounts_ops = st.tuples(st.just("account"), st.sampled_from(ACCOUNT_IDS), ledgers, account_flags)
# Mostly small amounts, so that limits are met exactly and off by one; now and then an
# invalid or enormous one.
amounts = st.one_of(st.integers(1, 6), st.integers(1, 6), st.integers(1, 6),
                    st.sampled_from([-1, 0, AMOUNT_MAX, AMOUNT_MAX + 1]))
transfer_ops = st.tuples(st.just("transfer"), st.sampled_from(TRANSFER_IDS),
                         st.sampled_from(ACCOUNT_IDS), st.sampled_from(ACCOUNT_IDS), amounts,
                         st.sampled_from(["USD", "USD", "USD", "EUR"]), st.sampled_from([1, 2]))
# Open every account first (mostly valid, mostly USD), then mix everything.
setup = st.tuples(*[
    st.tuples(st.just("account"), st.just(id_), st.sampled_from(["USD"] * 4 + ["EUR"]),
              st.sampled_from([0, 0, 0, 1, 1, 1, 2, 4]))
    for id_ in ACCOUNT_IDS
])
operations = st.tuples(
    setup, st.lists(st.one_of(accounts_ops, *[transfer_ops] * 6), min_size=10, max_size=80),
).map(lambda parts: list(parts[0]) + parts[1])


def check_conservation(accounts: list[Account]) -> None:
    for ledger in LEDGERS:
        mine = [a for a in accounts if a.ledger == ledger]
        assert sum(a.debits_posted for a in mine) == sum(a.credits_posted for a in mine)
        assert sum(a.debits_pending for a in mine) == sum(a.credits_pending for a in mine) == 0


@settings(max_examples=300, deadline=None)
@given(operations)
def test_core_matches_the_reference(ops: list[tuple[Any, ...]]) -> None:
    reference, ledger = Reference(), Ledger(LEDGERS)
    for now, op in enumerate(ops, start=1):
        if op[0] == "account":
            _, id_, ledger_code, flags = op
            result, events = ledger.create_account(Account(id_, ledger_code, 1, "o", flags, "",
                                                           timestamp=now))
            assert result.value == reference.create_account(id_, ledger_code, flags), op
        else:
            _, id_, debit, credit, amount, ledger_code, code = op
            result, events, _ = ledger.commit_transfer(
                Transfer(id_, debit, credit, amount, ledger_code, code, "", timestamp=now),
                Roles.both, TransferResult.ok)
            assert result.value == reference.transfer(*op[1:]), op
        apply_all(ledger, events)
    for id_, expected in reference.accounts.items():
        account = ledger.accounts[id_]
        assert (account.debits_posted, account.credits_posted) == (expected["dp"], expected["cp"])
    check_conservation(list(ledger.accounts.values()))


def three_shard_router(logs: list[MemoryLog]) -> tuple[Router, list[ShardHost]]:
    hosts = []
    for index, log in enumerate(logs):
        config = ShardConfig(index, LEDGERS, snapshot_every_events=25)
        hosts.append(ShardHost(config, lambda log=log: log.reopen()))

    return local_router(hosts), hosts


@settings(max_examples=60, deadline=None)
@given(operations)
def test_router_over_three_shards_matches_the_reference(ops: list[tuple[Any, ...]]) -> None:
    logs = [MemoryLog() for _ in range(3)]
    router, hosts = three_shard_router(logs)
    reference = Reference()

    async def drive() -> None:
        for op in ops:
            if op[0] == "account":
                _, id_, ledger_code, flags = op
                (outcome,) = await router.create_accounts([Account(id_, ledger_code, 1, "o",
                                                                   flags, "")])
                assert not isinstance(outcome, BaseException)
                assert outcome[0] == reference.create_account(id_, ledger_code, flags), op
            else:
                _, id_, debit, credit, amount, ledger_code, code = op
                (outcome,) = await router.create_transfers(
                    [Transfer(id_, debit, credit, amount, ledger_code, code, "")])
                assert not isinstance(outcome, BaseException)
                assert outcome[0] == reference.transfer(*op[1:]), op

    asyncio.run(drive())
    accounts = {a.id: a for h in hosts for a in h.ledger.accounts.values()}
    for id_, expected in reference.accounts.items():
        assert (accounts[id_].debits_posted, accounts[id_].credits_posted) == \
            (expected["dp"], expected["cp"])
    check_conservation(list(accounts.values()))
    assert all(not h.ledger.reservations for h in hosts)
    # Replaying each shard's log (and snapshots) rebuilds exactly the same state.
    _, replayed = three_shard_router(logs)
    for before, after in zip(hosts, replayed, strict=True):
        assert accounts_now(before.ledger) == accounts_now(after.ledger)
        assert before.ledger.store.transfers == after.ledger.store.transfers  # type: ignore[attr-defined]
        for account_id in before.ledger.accounts:
            assert history(before.ledger, account_id) == history(after.ledger, account_id)
