"""Linked chains through the API: all or nothing, across shards, also when redrive finishes
them after a crash."""

from __future__ import annotations

import time
from typing import Any

import pytest

from actors.ledger.chains import ChainPart, parts_by_shard
from actors.ledger.model import LINKED, POST_PENDING, Transfer
from actors.messages import Asked, CommitChain, ReserveChain
from tests.conftest import RunningSwitch, assert_balanced, shard_ids
from tests.switch.test_api import LIMITED, account, transfer


def linked(item: dict[str, Any], **flags: bool) -> dict[str, Any]:
    return {**item, "flags": {"linked": True, **flags}}


def codes(response: Any) -> list[str]:
    assert response.status_code == 200, response.text
    return [r["result"] for r in response.json()["results"]]


def people(switch: RunningSwitch, tag: str, shards: list[int]) -> list[str]:
    """A funded bank account and limited wallets, one on each shard given."""
    assert switch.router is not None
    names = [shard_ids(switch.router, shard, f"{tag}-w{i}-", 1)[0]
             for i, shard in enumerate(shards)]
    bank = f"{tag}-bank"
    assert switch.post("/v1/accounts", [account(bank)] + [account(n, LIMITED) for n in names]
                       ).status_code == 200
    return [bank, *names]


def balance(switch: RunningSwitch, name: str) -> int:
    found = switch.account(name)
    return int(found["credits_posted"] - found["debits_posted"])


def pending_of(switch: RunningSwitch, name: str) -> tuple[int, int]:
    found = switch.account(name)
    return found["debits_pending"], found["credits_pending"]


# Which shard each of three wallets lives on.
LAYOUTS = [(0, 0, 0), (0, 1, 2), (2, 1, 1), (1, 2, 0)]


@pytest.mark.parametrize("layout", LAYOUTS, ids=["-".join(map(str, x)) for x in LAYOUTS])
def test_a_chain_commits_whole_and_each_member_sees_the_ones_before(
        shared_switch: RunningSwitch, layout: tuple[int, int, int]) -> None:
    switch = shared_switch
    tag = "ok" + "".join(map(str, layout))
    bank, a, b, c = people(switch, tag, list(layout))
    # b and c hold nothing yet: each later member spends what the one before brought.
    chain = [linked(transfer(f"{tag}-1", bank, a, 500)), linked(transfer(f"{tag}-2", a, b, 300)),
             transfer(f"{tag}-3", b, c, 300)]
    assert codes(switch.post("/v1/transfers", chain)) == ["ok", "ok", "ok"]
    assert [balance(switch, n) for n in (a, b, c)] == [200, 0, 300]
    assert all(pending_of(switch, n) == (0, 0) for n in (a, b, c))
    shown = switch.get(f"/v1/transfers/{tag}-2").json()
    assert shown["flags"]["linked"] is True
    # The same chain again: every member is a repeat, nothing moves.
    assert codes(switch.post("/v1/transfers", chain)) == ["exists", "exists", "exists"]
    assert [balance(switch, n) for n in (a, b, c)] == [200, 0, 300]
    assert_balanced(switch.totals_at_rest())


@pytest.mark.parametrize("layout", LAYOUTS, ids=["-".join(map(str, x)) for x in LAYOUTS])
def test_a_failing_member_fails_the_whole_chain(shared_switch: RunningSwitch,
                                                layout: tuple[int, int, int]) -> None:
    switch = shared_switch
    tag = "bad" + "".join(map(str, layout))
    bank, a, b, c = people(switch, tag, list(layout))
    chain = [linked(transfer(f"{tag}-1", bank, a, 500)), linked(transfer(f"{tag}-2", a, b, 300)),
             transfer(f"{tag}-3", b, c, 301)]  # b has only 300
    assert codes(switch.post("/v1/transfers", chain)) == [
        "linked_event_failed", "linked_event_failed", "exceeds_credits"]
    assert [balance(switch, n) for n in (a, b, c)] == [0, 0, 0]
    assert all(pending_of(switch, n) == (0, 0) for n in (a, b, c))
    for index in (1, 2, 3):  # nothing of a failed chain is visible
        assert switch.get(f"/v1/transfers/{tag}-{index}").status_code == 404
    # The ids are free: a corrected chain with the same ids commits.
    chain[2] = transfer(f"{tag}-3", b, c, 300)
    assert codes(switch.post("/v1/transfers", chain)) == ["ok", "ok", "ok"]
    assert_balanced(switch.totals_at_rest())


def test_chain_rules_checked_before_anything_moves(shared_switch: RunningSwitch) -> None:
    switch = shared_switch
    bank, a, b = people(switch, "rules", [0, 1])
    single = transfer("rules-x", bank, a, 10)
    assert codes(switch.post("/v1/transfers", [single, linked(transfer("rules-y", bank, a, 5))])
                 ) == ["ok", "linked_event_chain_open"]
    response = switch.post("/v1/transfers", linked(transfer("rules-z", bank, a, 5)))
    assert response.status_code == 422
    assert response.json()["code"] == "linked_event_chain_open"
    assert codes(switch.post("/v1/transfers", [
        linked(transfer("rules-1", bank, a, 5)), linked(transfer("rules-2", bank, a, 0)),
        transfer("rules-3", bank, a, 5)])) == [
        "linked_event_failed", "amount_invalid", "linked_event_failed"]
    # One id twice in a chain: the second is a repeat of the first, and the chain fails.
    assert codes(switch.post("/v1/transfers", [
        linked(transfer("rules-4", bank, a, 5)), linked(transfer("rules-4", bank, a, 5)),
        transfer("rules-5", bank, a, 5)])) == [
        "linked_event_failed", "exists", "linked_event_failed"]
    assert codes(switch.post("/v1/transfers", [
        linked(transfer("rules-5", bank, a, 5)),
        {"id": "rules-6", "pending_id": "rules-x", "flags": {"void_pending_transfer": True}}])
    ) == ["linked_event_failed", "pending_transfer_not_pending"]
    # A member whose id is taken fails the chain; a chain after it in the request is its own.
    assert codes(switch.post("/v1/transfers", [
        linked(transfer("rules-7", bank, a, 5)), transfer("rules-x", bank, a, 10),
        linked(transfer("rules-8", a, b, 1)), transfer("rules-9", b, a, 1)])) == [
        "linked_event_failed", "exists", "ok", "ok"]
    assert switch.get("/v1/transfers/rules-7").status_code == 404
    assert balance(switch, a) == 10
    assert_balanced(switch.totals_at_rest())


def test_pending_members_are_held_and_resolved_like_any_pending_transfer(
        shared_switch: RunningSwitch) -> None:
    switch = shared_switch
    bank, a, b = people(switch, "pend", [1, 2])
    chain = [linked(transfer("pend-1", bank, a, 100)),
             linked(transfer("pend-2", a, b, 60), pending=True),
             transfer("pend-3", bank, b, 5, timeout_ms=0)]
    assert codes(switch.post("/v1/transfers", chain)) == ["ok", "ok", "ok"]
    assert pending_of(switch, a) == (60, 0) and pending_of(switch, b) == (0, 60)
    assert switch.post("/v1/transfers", {"id": "pend-4", "pending_id": "pend-2",
                                         "flags": {"post_pending_transfer": True}}
                       ).status_code == 201
    assert (balance(switch, a), balance(switch, b)) == (40, 65)
    assert pending_of(switch, a) == (0, 0) and pending_of(switch, b) == (0, 0)
    assert_balanced(switch.totals_at_rest())


def test_redrive_finishes_a_chain_its_coordinator_decided(quiet_switch: RunningSwitch
                                                           ) -> None:
    """The coordinator decided, the other shards' parts were never finalized (a crash)."""
    switch = quiet_switch
    assert switch.router is not None
    bank, a, b = people(switch, "half", [1, 2])
    key = shard_ids(switch.router, 0, "half-k", 1)[0]
    members = [Transfer(key, bank, a, 100, "USD", 1, "", LINKED),
               Transfer("half-2", a, b, 100, "USD", 1, "")]
    parts = parts_by_shard(members, switch.router.shard_of)
    for shard, shard_parts in parts.items():
        if shard != 0:
            (replies,) = switch.shard_call(shard, [ReserveChain(key, 99, shard_parts)])
            assert all(reply.result == "ok" for reply in replies.parts)
    (decided,) = switch.shard_call(0, [CommitChain(key, 99, parts.get(0, []), ["ok", "ok"],
                                                   [Asked(100, None), Asked(100, None)])])
    assert decided.decision is not None
    assert switch.in_doubt() > 0
    switch.restart()
    assert switch.in_doubt() == 0  # resolved before the API took traffic
    assert (balance(switch, a), balance(switch, b)) == (0, 100)
    assert pending_of(switch, a) == (0, 0) and pending_of(switch, b) == (0, 0)
    assert switch.get(f"/v1/transfers/{key}").status_code == 200
    assert switch.get("/v1/transfers/half-2").status_code == 200
    assert_balanced(switch.totals_at_rest())


def test_redrive_voids_a_chain_never_decided(quiet_switch: RunningSwitch) -> None:
    switch = quiet_switch
    assert switch.router is not None
    bank, a, b = people(switch, "undecided", [1, 2])
    key = shard_ids(switch.router, 0, "und-k", 1)[0]
    fields = Transfer(key, a, b, 70, "USD", 1, "", LINKED)
    assert switch.post("/v1/transfers", transfer("und-fund", bank, a, 100)).status_code == 201
    switch.wait_for_credits(a, 100)
    switch.shard_call(1, [ReserveChain(key, 5, [ChainPart(fields, 1, 0)])])
    switch.shard_call(2, [ReserveChain(key, 5, [ChainPart(fields, 2, 0)])])
    assert pending_of(switch, a) == (70, 0)
    switch.restart()
    assert switch.in_doubt() == 0
    assert pending_of(switch, a) == (0, 0) and pending_of(switch, b) == (0, 0)
    assert (balance(switch, a), balance(switch, b)) == (100, 0)
    # The key's home never saw it: the id is free.
    assert switch.post("/v1/transfers", transfer(key, a, b, 70)).status_code == 201
    assert_balanced(switch.totals_at_rest())


def test_a_pending_member_brings_no_funds(shared_switch: RunningSwitch) -> None:
    """A pending credit may yet be voided: a later member cannot spend it."""
    switch = shared_switch
    bank, a, b = people(switch, "nofunds", [1, 2])
    chain = [linked(transfer("nofunds-1", bank, a, 100), pending=True),
             transfer("nofunds-2", a, b, 100)]
    assert codes(switch.post("/v1/transfers", chain)) == ["linked_event_failed",
                                                           "exceeds_credits"]
    assert pending_of(switch, a) == (0, 0)


# Which shard holds: the pending transfer's id, the payer, the payee, the chain's posts' ids.
RESOLVING_LAYOUTS = [(0, 0, 0, 0), (0, 1, 2, 1), (2, 1, 0, 0), (1, 2, 2, 0)]


@pytest.mark.parametrize("layout", RESOLVING_LAYOUTS,
                         ids=["-".join(map(str, x)) for x in RESOLVING_LAYOUTS])
def test_posts_and_voids_in_a_chain(shared_switch: RunningSwitch,
                                    layout: tuple[int, int, int, int]) -> None:
    """A chain captures one hold and releases another, as one: or neither, with the holds
    still pending and free to be resolved later."""
    switch = shared_switch
    assert switch.router is not None
    tag = "res" + "".join(map(str, layout))
    p_home, payer_shard, payee_shard, q_home = layout
    bank, payer, payee = people(switch, tag, [payer_shard, payee_shard])
    hold_1, hold_2 = shard_ids(switch.router, p_home, f"{tag}-hold-", 2)
    post_id, void_id, fee_id = shard_ids(switch.router, q_home, f"{tag}-q-", 3)
    switch.post("/v1/transfers", transfer(f"{tag}-fund", bank, payer, 100))
    for hold in (hold_1, hold_2):
        assert switch.post("/v1/transfers", {**transfer(hold, payer, payee, 40),
                                             "flags": {"pending": True}}).status_code == 201
    post = {"id": post_id, "pending_id": hold_1, "amount": 30,
            "flags": {"linked": True, "post_pending_transfer": True}}
    void = {"id": void_id, "pending_id": hold_2,
            "flags": {"linked": True, "void_pending_transfer": True}}
    # The fee cannot be paid (the payer has 100, 80 held): nothing happens.
    chain = [post, void, transfer(fee_id, payer, bank, 21)]
    assert codes(switch.post("/v1/transfers", chain)) == [
        "linked_event_failed", "linked_event_failed", "exceeds_credits"]
    assert pending_of(switch, payer) == (80, 0)
    assert switch.get(f"/v1/transfers/{hold_1}").json()["status"] == "pending"
    assert switch.get(f"/v1/transfers/{post_id}").status_code == 404
    # A fee the payer can pay: the hold captured in part, the other released, the fee paid.
    chain[2] = transfer(fee_id, payer, bank, 20)
    assert codes(switch.post("/v1/transfers", chain)) == ["ok", "ok", "ok"]
    assert pending_of(switch, payer) == (0, 0) and pending_of(switch, payee) == (0, 0)
    assert (balance(switch, payer), balance(switch, payee)) == (50, 30)
    stored = switch.get(f"/v1/transfers/{post_id}").json()
    assert (stored["amount"], stored["debit_account_id"]) == (30, payer)  # filled in
    assert switch.get(f"/v1/transfers/{hold_1}").json()["status"] == "posted"
    assert switch.get(f"/v1/transfers/{hold_2}").json()["status"] == "voided"
    assert codes(switch.post("/v1/transfers", chain)) == ["exists"] * 3
    assert_balanced(switch.totals_at_rest())


def test_redrive_finishes_a_chain_post_its_coordinator_decided(
        quiet_switch: RunningSwitch) -> None:
    """The chain's decision is recorded; the claim on the pending transfer and the post's id
    on other shards were never finalized (a crash): redrive settles both from the decision."""
    switch = quiet_switch
    assert switch.router is not None
    bank, payer, payee = people(switch, "rc", [1, 2])
    hold = shard_ids(switch.router, 2, "rc-hold-", 1)[0]
    key = shard_ids(switch.router, 0, "rc-k-", 1)[0]
    post_id = shard_ids(switch.router, 1, "rc-post-", 1)[0]
    switch.post("/v1/transfers", transfer("rc-fund", bank, payer, 100))
    switch.wait_for_credits(payer, 100)
    switch.post("/v1/transfers", {**transfer(hold, payer, payee, 60), "flags": {"pending": True}})
    members = [Transfer(key, bank, payee, 5, "USD", 1, "", LINKED),
               Transfer(post_id, "", "", 0, "", -1, "", POST_PENDING, hold)]
    parts = parts_by_shard(members, switch.router.shard_of)
    asked = [Asked(5, None), Asked(0, None)]
    for shard, shard_parts in parts.items():
        if shard != 0:
            (replies,) = switch.shard_call(shard, [ReserveChain(key, 77, shard_parts)])
            for index, reply in enumerate(replies.parts):
                assert reply.result == "ok", reply
                if reply.filled is not None:
                    member = shard_parts[index].member
                    asked[member] = Asked(asked[member].amount, None, reply.filled)
    (decided,) = switch.shard_call(0, [CommitChain(key, 77, parts.get(0, []), ["ok", "ok"],
                                                   asked)])
    assert decided.codes == ["ok", "ok"], decided
    switch.restart()
    assert switch.in_doubt() == 0
    deadline = time.monotonic() + 10
    while pending_of(switch, payer) != (0, 0):  # the held parts: redrive's third pass
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert (balance(switch, payer), balance(switch, payee)) == (40, 65)
    assert switch.get(f"/v1/transfers/{hold}").json()["status"] == "posted"
    assert switch.get(f"/v1/transfers/{post_id}").json()["amount"] == 60
    assert_balanced(switch.totals_at_rest())
