"""Linked chains at one shard host (a real LMDB log): the coordinator's decision in one batch,
parts held for other shards, what redrive reads, and a restart in between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors.ledger.chains import ChainPart, answers, check_chain_static, verdict
from actors.ledger.codes import TransferResult as T
from actors.ledger.events import (
    AccountCreated,
    ReservationHeld,
    TransferReserved,
)
from actors.ledger.ledger import Ledger
from actors.ledger.model import (
    LINKED,
    PENDING,
    POST_PENDING,
    RESOLVES_PENDING,
    Account,
    Roles,
    Transfer,
)
from actors.messages import (
    Asked,
    ChainReply,
    Command,
    Commit,
    CommitChain,
    Finalize,
    ListInDoubt,
    ReserveChain,
    ResolveChain,
)
from tests.actors.ledger_helpers import apply_all, history
from tests.actors.test_host import account, call, host_on

HOME = Roles.home


def fields(transfer_id: str, debit: str, credit: str, amount: int, flags: int = 0) -> Transfer:
    return Transfer(transfer_id, debit, credit, amount, "USD", 1, "", flags)


def part(member: Transfer, roles: int, index: int) -> ChainPart:
    return ChainPart(member, roles, index)


def commit_chain(key: str, attempt: int, parts: list[ChainPart], remote: list[str]
                 ) -> Command:
    """The coordinator's command, as the router sends it (no balancing members here)."""
    amounts = {p.member: p.transfer.amount for p in parts}
    asked = [Asked(amounts[member], None) for member in range(len(remote))]
    return CommitChain(key, attempt, parts, remote, asked)


def balances(host: Any, account_id: str) -> tuple[int, int, int, int]:
    a = host.ledger.accounts[account_id]
    return a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending


@pytest.mark.parametrize(("codes", "kind", "expected"), [
    ([T.ok, T.ok], "ok", [T.ok, T.ok]),
    ([T.exists, T.exists], "exists", [T.exists, T.exists]),
    ([T.exists, T.ok], "failed", [T.exists, T.linked_event_failed]),
    ([T.ok, T.exceeds_credits, T.in_flight], "failed",
     [T.linked_event_failed, T.exceeds_credits, T.linked_event_failed]),
])
def test_answers_of_a_chain(codes: list[T], kind: str, expected: list[T]) -> None:
    assert answers(codes) == expected
    assert verdict(codes)[0] == kind


def test_static_checks_of_a_chain_in_order() -> None:
    def member(transfer_id: str, amount: int = 5, flags: int = LINKED) -> Transfer:
        return Transfer(transfer_id, "a", "b", amount, "USD", 1, "", flags)

    assert check_chain_static([member("x"), member("y", flags=0)]) == [T.ok, T.ok]
    assert check_chain_static([member("x"), member("y", 0, 0)]) == [T.ok, T.amount_invalid]
    assert check_chain_static([member("x"), member("x", flags=0)]) == [
        T.ok, T.exists_with_different_flags]
    resolving = Transfer("v", "", "", 0, "", -1, "", RESOLVES_PENDING & 8, "p")
    assert check_chain_static([member("x"), resolving]) == [T.ok, T.ok]
    assert check_chain_static([member("x"), Transfer("v", "", "", 0, "", -1, "",
                                                     RESOLVES_PENDING, "p")]) == [
        T.ok, T.flags_are_mutually_exclusive]


def decided(host: object, command: Command) -> ChainReply:
    (reply,) = call(host, [command])  # type: ignore[arg-type]
    assert isinstance(reply, ChainReply)
    return reply


def test_the_coordinator_decides_and_commits_a_local_chain_in_one_batch(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a", flags=1), account("b", flags=1)])
    parts = [part(fields("k", "bank", "a", 100, LINKED), HOME | Roles.both, 0),
             part(fields("m", "a", "b", 100), HOME | Roles.both, 1)]
    before = host.log.last_seq
    reply = decided(host, commit_chain("k", 7, parts, ["ok", "ok"]))
    assert reply.codes == ["ok", "ok"] and reply.decision is not None and reply.stored == []
    assert len(reply.decision.timestamps) == 2
    assert host.log.last_seq == before + 1  # reserved, decided and committed: one record
    assert balances(host, "a") == (100, 100, 0, 0) and balances(host, "b") == (0, 100, 0, 0)
    assert host.ledger.stored("m").timestamp == reply.decision.timestamps[1]  # type: ignore[union-attr]
    assert not host.ledger.reservations
    # Again: both are repeats, the stored transfers come back, nothing moves.
    again = decided(host, commit_chain("k", 8, parts, ["ok", "ok"]))
    assert again.codes == ["exists", "exists"] and again.decision is None
    assert [entry.member for entry in again.stored] == [0, 1]
    assert balances(host, "a") == (100, 100, 0, 0) and not host.ledger.reservations
    host.close()


def test_a_failing_chain_leaves_nothing_but_a_voided_reservation(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a", flags=1), account("b", flags=1)])
    parts = [part(fields("k", "bank", "a", 100, LINKED), HOME | Roles.both, 0),
             part(fields("m", "a", "b", 101), HOME | Roles.both, 1)]  # a has only 100
    reply = decided(host, commit_chain("k", 7, parts, ["ok", "ok"]))
    assert reply.codes == ["ok", "exceeds_credits"] and reply.decision is None
    assert balances(host, "a") == (0, 0, 0, 0) and host.ledger.stored("k") is None
    # A verdict from another shard fails the chain here too.
    parts[1] = part(fields("m", "a", "b", 100), HOME | Roles.both, 1)
    reply = decided(host, commit_chain("k", 8, parts, ["ok", "exceeds_debits"]))
    assert reply.codes == ["ok", "exceeds_debits"] and reply.decision is None
    assert not host.ledger.reservations and host.ledger.homed_count == 0
    host.close()


def test_parts_held_for_another_coordinator_survive_a_restart(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a", flags=1)])
    # This shard holds k's credit, m's id and debit, n's credit; the coordinator is elsewhere.
    parts = [part(fields("k", "bank", "a", 100, LINKED), Roles.credit, 0),
             part(fields("m", "a", "bank", 100, LINKED), HOME | Roles.debit, 1),
             part(fields("n", "bank", "a", 7, LINKED | PENDING), Roles.credit, 2),
             part(fields("o", "a", "bank", 1), Roles.debit, 3)]
    (replies,) = call(host, [ReserveChain("k", 3, parts)])
    # m spends what k brings; o cannot spend what the pending n may never bring.
    assert [r.result for r in replies.parts] == ["ok", "ok", "ok", "exceeds_credits"]
    parts.pop()
    (replies,) = call(host, [ReserveChain("k", 4, parts)])
    assert [r.result for r in replies.parts] == ["in_flight"] * 3  # one attempt at a time
    # An id under a chain's reservation is taken for anyone else until it is decided.
    (reply,) = call(host, [Commit(fields("m", "a", "bank", 1), Roles.both)])
    assert reply.result == "in_flight"
    host.close()
    host = host_on(tmp_path)  # as after a crash
    (doubt,) = call(host, [ListInDoubt(0)])
    assert sorted((d.transfer.id, d.chain, d.member) for d in doubt.parts) == [
        ("k", "k", 0), ("m", "k", 1), ("n", "k", 2)]
    # The coordinator committed with these timestamps: k posted, m committed here, n held.
    replies = call(host, [Finalize("k", 3, "post", 1001), Finalize("m", 3, "post", 1002),
                          Finalize("n", 3, "hold", 1003)])
    assert [r.applied for r in replies] == [True, True, True]
    assert balances(host, "a") == (100, 100, 0, 7)
    assert host.ledger.stored("m").timestamp == 1002 and host.ledger.homed_count == 1  # type: ignore[union-attr]
    host.close()
    host = host_on(tmp_path)
    assert balances(host, "a") == (100, 100, 0, 7) and host.ledger.homed_count == 1
    host.close()


def test_resolve_chain_answers_only_the_attempt_that_committed(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a")])
    parts = [part(fields("k", "bank", "a", 5, LINKED), HOME | Roles.both, 0)]
    decision = decided(host, commit_chain("k", 41, parts, ["ok"])).decision
    assert decision is not None and decision.amounts == [5] and decision.resolving == [None]
    replies = call(host, [ResolveChain("k", 41), ResolveChain("k", 40),
                          ResolveChain("other", 41)])
    assert [r.decision for r in replies] == [decision, None, None]
    host.take_snapshot()
    host.close()
    host = host_on(tmp_path)
    assert call(host, [ResolveChain("k", 41)])[0].decision == decision
    host.close()


def test_a_chain_post_finalized_after_its_pending_transfer_was_settled_here() -> None:
    """A post in a chain, its id's home also holding a part of its pending transfer: the
    pending transfer's home may record it posted, and the held part here be settled, before
    the post's id part here is finalized (found by review)."""
    ledger = Ledger(["USD"])
    apply_all(ledger, [AccountCreated(Account(name, "USD", 1, "o", 0, "", 1))
                       for name in ("payer", "payee")])
    held = Transfer("p", "payer", "payee", 100, "USD", 1, "", PENDING, "", 0, 10)
    apply_all(ledger, [TransferReserved(held, Roles.debit, 5), ReservationHeld("p")])
    post = Transfer("q", "", "", 0, "", -1, "", POST_PENDING, "p", 0, 20)
    apply_all(ledger, [TransferReserved(post, HOME, 9, "k", 1)])
    filled = Transfer("q", "payer", "payee", 100, "USD", 1, "", POST_PENDING, "p")
    apply_all(ledger, ledger.settle_held("p", True, 100, filled.stamped(50)))
    apply_all(ledger, ledger.finalize_reservation("q", 9, "post", 50, 100, filled))
    assert ledger.stored("q") == filled.stamped(50)
    assert ledger.homed_count == 1 and not ledger.reservations
    assert history(ledger, "payer") == [filled.stamped(50)]  # posted once
    assert ledger.accounts["payer"].debits_posted == 100
