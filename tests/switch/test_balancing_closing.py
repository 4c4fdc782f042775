"""Balancing transfers (move at most the amount, what the account allows) and closing
transfers (a pending transfer that closes its account; a void reopens it), through the API,
with the transfer's id and its two accounts on every arrangement of shards."""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RunningSwitch, assert_balanced, shard_ids
from tests.switch.test_api import LIMITED, account, transfer
from tests.switch.test_linked import balance, codes, linked

# (the transfer id's shard, the debit account's, the credit account's)
LAYOUTS = [(0, 0, 0), (0, 1, 2), (1, 0, 0), (2, 2, 1)]
IDS = ["-".join(map(str, x)) for x in LAYOUTS]


def placed(switch: RunningSwitch, layout: tuple[int, int, int], tag: str,
           credit_flags: dict[str, bool] | None = None) -> dict[str, str]:
    assert switch.router is not None
    home, debit, credit = layout
    names = {"bank": f"{tag}-bank",
             "debit": shard_ids(switch.router, debit, f"{tag}-d-", 1)[0],
             "credit": shard_ids(switch.router, credit, f"{tag}-c-", 1)[0]}
    for key in ("t1", "t2", "t3", "t4"):
        names[key] = shard_ids(switch.router, home, f"{tag}-{key}-", 1)[0]
    response = switch.post("/v1/accounts", [account(names["bank"]),
                                            account(names["debit"], LIMITED),
                                            account(names["credit"], credit_flags)])
    assert {r["result"] for r in response.json()["results"]} == {"ok"}
    return names


def flagged(item: dict[str, Any], **flags: bool) -> dict[str, Any]:
    return {**item, "flags": flags}


def pending_of(switch: RunningSwitch, name: str) -> tuple[int, int]:
    found = switch.account(name)
    return found["debits_pending"], found["credits_pending"]


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_balancing_debit_moves_what_the_account_holds(shared_switch: RunningSwitch,
                                                     layout: tuple[int, int, int]) -> None:
    switch = shared_switch
    n = placed(switch, layout, "bd" + "".join(map(str, layout)))
    switch.post("/v1/transfers", transfer(f"{n['t1']}-fund", n["bank"], n["debit"], 300))
    sweep = flagged(transfer(n["t1"], n["debit"], n["credit"], 500), balancing_debit=True)
    response = switch.post("/v1/transfers", sweep)
    assert response.status_code == 201, response.text
    assert response.json()["transfer"]["amount"] == 300
    assert (balance(switch, n["debit"]), balance(switch, n["credit"])) == (0, 300)
    assert pending_of(switch, n["debit"]) == (0, 0) and pending_of(switch, n["credit"]) == (0, 0)
    # The same request again is a repeat; asking for less than moved is not.
    assert switch.post("/v1/transfers", sweep).json()["result"] == "exists"
    smaller = flagged(transfer(n["t1"], n["debit"], n["credit"], 200), balancing_debit=True)
    assert switch.post("/v1/transfers", smaller).json()["result"] == \
        "exists_with_different_amount"
    # Nothing left to move: rejected, not stored with amount 0.
    empty = flagged(transfer(n["t2"], n["debit"], n["credit"], 5), balancing_debit=True)
    assert switch.post("/v1/transfers", empty).json()["result"] == "exceeds_credits"
    assert switch.get(f"/v1/transfers/{n['t2']}").status_code == 404
    assert_balanced(switch.totals_at_rest())


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_balancing_credit_takes_what_the_account_owes(shared_switch: RunningSwitch,
                                                     layout: tuple[int, int, int]) -> None:
    """A loan account (credits must not exceed debits) repaid in full, whatever is asked."""
    switch = shared_switch
    n = placed(switch, layout, "bc" + "".join(map(str, layout)),
               credit_flags={"credits_must_not_exceed_debits": True})
    switch.post("/v1/transfers", transfer(f"{n['t1']}-fund", n["bank"], n["debit"], 1_000))
    switch.post("/v1/transfers", transfer(f"{n['t1']}-loan", n["credit"], n["bank"], 250))
    repay = flagged(transfer(n["t1"], n["debit"], n["credit"], 900), balancing_credit=True,
                    pending=True)
    response = switch.post("/v1/transfers", repay)
    assert response.status_code == 201, response.text
    assert response.json()["transfer"]["amount"] == 250
    assert pending_of(switch, n["debit"]) == (250, 0)  # held: only what moves
    assert pending_of(switch, n["credit"]) == (0, 250)
    post = {"id": n["t2"], "pending_id": n["t1"], "flags": {"post_pending_transfer": True}}
    assert switch.post("/v1/transfers", post).status_code == 201
    assert (balance(switch, n["debit"]), balance(switch, n["credit"])) == (750, 0)
    assert pending_of(switch, n["debit"]) == (0, 0) and pending_of(switch, n["credit"]) == (0, 0)
    assert_balanced(switch.totals_at_rest())


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_closing_closes_and_a_void_reopens(shared_switch: RunningSwitch,
                                          layout: tuple[int, int, int]) -> None:
    switch = shared_switch
    n = placed(switch, layout, "cl" + "".join(map(str, layout)))
    switch.post("/v1/transfers", transfer(f"{n['t1']}-fund", n["bank"], n["debit"], 100))
    assert switch.post("/v1/transfers", flagged(
        transfer(n["t1"], n["debit"], n["credit"], 10), closing_debit=True)
    ).json()["code"] == "closing_transfer_must_be_pending"
    closing = flagged(transfer(n["t1"], n["debit"], n["credit"], 10), closing_debit=True,
                      pending=True)
    assert switch.post("/v1/transfers", closing).status_code == 201
    assert switch.account(n["debit"])["flags"]["closed"] is True
    blocked = switch.post("/v1/transfers", transfer(n["t2"], n["bank"], n["debit"], 1))
    assert blocked.json()["result"] == "credit_account_closed"
    void = {"id": n["t3"], "pending_id": n["t1"], "flags": {"void_pending_transfer": True}}
    assert switch.post("/v1/transfers", void).status_code == 201
    assert switch.account(n["debit"])["flags"]["closed"] is False
    assert switch.post("/v1/transfers", transfer(n["t2"], n["bank"], n["debit"], 1)
                       ).status_code == 201
    # Closing the credit account and posting: it stays closed.
    closing = flagged(transfer(n["t4"], n["debit"], n["credit"], 10), closing_credit=True,
                      pending=True)
    assert switch.post("/v1/transfers", closing).status_code == 201
    post = {"id": f"{n['t4']}-post", "pending_id": n["t4"],
            "flags": {"post_pending_transfer": True}}
    assert switch.post("/v1/transfers", post).status_code == 201
    assert switch.account(n["credit"])["flags"]["closed"] is True
    assert balance(switch, n["credit"]) == 10
    assert_balanced(switch.totals_at_rest())


def test_a_chain_that_sweeps_an_account_and_closes_it(shared_switch: RunningSwitch) -> None:
    """As TigerBeetle users close an account: a balancing sweep and a closing transfer, linked.
    The sweep sees what the chain's earlier member brought."""
    switch = shared_switch
    n = placed(switch, (1, 0, 2), "sweep")
    switch.post("/v1/transfers", transfer("sweep-fund", n["bank"], n["debit"], 70))
    chain = [linked(transfer("sweep-1", n["bank"], n["debit"], 30)),
             linked(transfer("sweep-2", n["debit"], n["credit"], 10**12), balancing_debit=True),
             flagged(transfer("sweep-3", n["debit"], n["credit"], 1), pending=True,
                     closing_debit=True)]
    assert codes(switch.post("/v1/transfers", chain)) == ["linked_event_failed",
                                                           "linked_event_failed",
                                                           "exceeds_credits"]
    chain[2] = flagged(transfer("sweep-3", n["bank"], n["debit"], 1), pending=True,
                       closing_credit=True)
    assert codes(switch.post("/v1/transfers", chain)) == ["ok", "ok", "ok"]
    assert switch.get("/v1/transfers/sweep-2").json()["amount"] == 100
    assert balance(switch, n["credit"]) == 100 and balance(switch, n["debit"]) == 0
    assert switch.account(n["debit"])["flags"]["closed"] is True
    assert_balanced(switch.totals_at_rest())


@pytest.mark.parametrize("layout", LAYOUTS, ids=IDS)
def test_the_other_side_is_checked_with_the_amount_that_moves(
        shared_switch: RunningSwitch, layout: tuple[int, int, int]) -> None:
    """The debit account could not pay the amount asked, but can pay what the credit side
    takes: the same answer wherever the two accounts live."""
    switch = shared_switch
    n = placed(switch, layout, "bo" + "".join(map(str, layout)),
               credit_flags={"credits_must_not_exceed_debits": True})
    switch.post("/v1/transfers", transfer(f"{n['t1']}-fund", n["bank"], n["debit"], 300))
    switch.post("/v1/transfers", transfer(f"{n['t1']}-loan", n["credit"], n["bank"], 250))
    repay = flagged(transfer(n["t1"], n["debit"], n["credit"], 900), balancing_credit=True)
    response = switch.post("/v1/transfers", repay)
    assert response.status_code == 201, response.text
    assert response.json()["transfer"]["amount"] == 250
    assert (balance(switch, n["debit"]), balance(switch, n["credit"])) == (50, 0)
    # Nothing left to take: exceeds_debits. Then 100 to take but 50 to pay: exceeds_credits.
    again = flagged(transfer(n["t2"], n["debit"], n["credit"], 900), balancing_credit=True)
    assert switch.post("/v1/transfers", again).json()["result"] == "exceeds_debits"
    switch.post("/v1/transfers", transfer(f"{n['t2']}-loan", n["credit"], n["bank"], 100))
    assert switch.post("/v1/transfers", again).json()["result"] == "exceeds_credits"
    assert pending_of(switch, n["debit"]) == (0, 0) and pending_of(switch, n["credit"]) == (0, 0)
    assert_balanced(switch.totals_at_rest())
