"""Linked chains at one shard host (a real LMDB log): the coordinator's decision in one batch,
parts held for other shards, what redrive reads, and a restart in between."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from actors import messages as p
from actors.ledger.chains import answers, check_chain_static, verdict
from actors.ledger.codes import TransferResult as T
from actors.ledger.ledger import ACCOUNT_CREATED, TRANSFER_RESERVED, Ledger
from actors.ledger.model import LINKED, PENDING, POST_PENDING, RESOLVES_PENDING, Roles, Transfer
from tests.actors.test_host import account, call, host_on

HOME = Roles.home


def fields(transfer_id: str, debit: str, credit: str, amount: int, flags: int = 0) -> list[Any]:
    return [transfer_id, debit, credit, amount, "USD", 1, "", flags, "", 0]


def commit_chain(key: str, attempt: int, parts: list[list[Any]], remote: list[str]
                 ) -> list[Any]:
    """The coordinator's command, as the router sends it (no balancing members here)."""
    amounts = {member: fields_[3] for fields_, _, member in parts}
    asked = [[amounts[member], None, None] for member in range(len(remote))]
    return [p.OP_COMMIT_CHAIN, key, attempt, parts, remote, asked]


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


def test_the_coordinator_decides_and_commits_a_local_chain_in_one_batch(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a", flags=1), account("b", flags=1)])
    parts = [[fields("k", "bank", "a", 100, LINKED), HOME | Roles.both, 0],
             [fields("m", "a", "b", 100), HOME | Roles.both, 1]]
    before = host._log.last_seq
    _, [[codes, timestamps, _, _, stored]] = call(host, [commit_chain("k", 7, parts, ["ok", "ok"])])
    assert codes == ["ok", "ok"] and len(timestamps) == 2 and stored == []
    assert host._log.last_seq == before + 1  # reserved, decided and committed: one record
    assert balances(host, "a") == (100, 100, 0, 0) and balances(host, "b") == (0, 100, 0, 0)
    assert host.ledger.transfers["m"].timestamp == timestamps[1]
    assert not host.ledger.reservations
    # Again: both are repeats, the stored rows come back, nothing moves.
    _, [[codes, timestamps, _, _, stored]] = call(host, [commit_chain("k", 8, parts, ["ok", "ok"])])
    assert codes == ["exists", "exists"] and timestamps is None
    assert [member for member, _ in stored] == [0, 1]
    assert balances(host, "a") == (100, 100, 0, 0) and not host.ledger.reservations
    host.close()


def test_a_failing_chain_leaves_nothing_but_a_voided_reservation(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a", flags=1), account("b", flags=1)])
    parts = [[fields("k", "bank", "a", 100, LINKED), HOME | Roles.both, 0],
             [fields("m", "a", "b", 101), HOME | Roles.both, 1]]  # a has only 100
    _, [[codes, timestamps, _, _, _]] = call(host, [commit_chain("k", 7, parts, ["ok", "ok"])])
    assert codes == ["ok", "exceeds_credits"] and timestamps is None
    assert balances(host, "a") == (0, 0, 0, 0) and "k" not in host.ledger.transfers
    # A verdict from another shard fails the chain here too.
    parts[1][0][3] = 100
    _, [[codes, timestamps, _, _, _]] = call(host, [commit_chain("k", 8, parts,
                                                            ["ok", "exceeds_debits"])])
    assert codes == ["ok", "exceeds_debits"] and timestamps is None
    assert not host.ledger.reservations and not host.ledger.transfers
    host.close()


def test_parts_held_for_another_coordinator_survive_a_restart(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a", flags=1)])
    # This shard holds k's credit, m's id and debit, n's credit; the coordinator is elsewhere.
    parts = [[fields("k", "bank", "a", 100, LINKED), Roles.credit, 0],
             [fields("m", "a", "bank", 100, LINKED), HOME | Roles.debit, 1],
             [fields("n", "bank", "a", 7, LINKED | PENDING), Roles.credit, 2],
             [fields("o", "a", "bank", 1), Roles.debit, 3]]
    _, [replies] = call(host, [[p.OP_RESERVE_CHAIN, "k", 3, parts]])
    # m spends what k brings; o cannot spend what the pending n may never bring.
    assert [r[0] for r in replies] == ["ok", "ok", "ok", "exceeds_credits"]
    parts.pop()
    _, [replies] = call(host, [[p.OP_RESERVE_CHAIN, "k", 4, parts]])
    assert [r[0] for r in replies] == ["in_flight"] * 3  # one attempt at a time
    # An id under a chain's reservation is taken for anyone else until it is decided.
    _, [reply] = call(host, [[p.OP_COMMIT, fields("m", "a", "bank", 1), Roles.both, "ok", 0]])
    assert reply[0] == "in_flight"
    host.close()
    host = host_on(tmp_path)  # as after a crash
    _, [doubt] = call(host, [[p.OP_IN_DOUBT, 0]])
    assert sorted((row[0], chain, member) for row, _, _, chain, member in doubt) == [
        ("k", "k", 0), ("m", "k", 1), ("n", "k", 2)]
    # The coordinator committed with these timestamps: k posted, m committed here, n held.
    _, replies = call(host, [[p.OP_FINALIZE, "k", 3, "post", 1001, 0],
                             [p.OP_FINALIZE, "m", 3, "post", 1002, 0],
                             [p.OP_FINALIZE, "n", 3, "hold", 1003, 0]])
    assert replies == [True, True, True]
    assert balances(host, "a") == (100, 100, 0, 7)
    assert host.ledger.transfers["m"].timestamp == 1002 and host.ledger.homed_count == 1
    host.close()
    host = host_on(tmp_path)
    assert balances(host, "a") == (100, 100, 0, 7) and host.ledger.homed_count == 1
    host.close()


def test_resolve_chain_answers_only_the_attempt_that_committed(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("bank"), account("a")])
    parts = [[fields("k", "bank", "a", 5, LINKED), HOME | Roles.both, 0]]
    _, [[_, timestamps, amounts, resolving, _]] = call(host, [commit_chain("k", 41, parts, ["ok"])])
    _, replies = call(host, [[p.OP_RESOLVE_CHAIN, "k", 41], [p.OP_RESOLVE_CHAIN, "k", 40],
                             [p.OP_RESOLVE_CHAIN, "other", 41]])
    assert replies == [[timestamps, amounts, resolving], None, None] and amounts == [5]
    host.take_snapshot()
    host.close()
    host = host_on(tmp_path)
    _, replies = call(host, [[p.OP_RESOLVE_CHAIN, "k", 41]])
    assert replies == [[timestamps, amounts, resolving]] and resolving == [None]
    host.close()


def test_a_chain_post_finalized_after_its_pending_transfer_was_settled_here() -> None:
    """A post in a chain, its id's home also holding a part of its pending transfer: the
    pending transfer's home may record it posted, and the held part here be settled, before
    the post's id part here is finalized (found by review)."""
    ledger = Ledger(["USD"])
    for name in ("payer", "payee"):
        ledger.apply([ACCOUNT_CREATED, [name, "USD", 1, "o", 0, "", 1, 0, 0, 0, 0]])
    held = Transfer("p", "payer", "payee", 100, "USD", 1, "", PENDING, "", 0, 10)
    ledger.apply([TRANSFER_RESERVED, held.row(), Roles.debit, 5, "", 0])
    ledger.apply(["reservation_held", "p", 0])
    post = Transfer("q", "", "", 0, "", -1, "", POST_PENDING, "p", 0, 20)
    ledger.apply([TRANSFER_RESERVED, post.row(), HOME, 9, "k", 1])
    filled = ["q", "payer", "payee", 100, "USD", 1, "", POST_PENDING, "p", 0]
    for event in ledger.settle_held("p", True, 100, [*filled, 50]):
        ledger.apply(event)
    for event in ledger.finalize_reservation("q", 9, "post", 50, 100, filled):
        ledger.apply(event)
    assert ledger.transfers["q"].row() == [*filled, 50]
    assert ledger.homed_count == 1 and not ledger.reservations
    assert ledger.history["payer"] == [ledger.transfers["q"]]  # one object, posted once
    assert ledger.accounts["payer"].debits_posted == 100
