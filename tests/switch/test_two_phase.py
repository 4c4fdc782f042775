"""Two-phase transfers through the API: reserve, then post (all or part), void, or expire,
with the pending transfer, its accounts and its post or void on different shards."""

from __future__ import annotations

import time
from typing import Any

import pytest

from tests.conftest import RunningSwitch, assert_balanced, shard_ids
from tests.switch.test_api import LIMITED, account, transfer

# (pending's home, payer, payee, post-or-void's home): shards of each.
LAYOUTS = [(0, 0, 0, 0), (0, 1, 2, 0), (1, 0, 0, 2), (2, 1, 0, 1)]


def pending(transfer_id: str, debit: str, credit: str, amount: int, **extra: Any
            ) -> dict[str, Any]:
    return {**transfer(transfer_id, debit, credit, amount), "flags": {"pending": True}, **extra}


def resolve(transfer_id: str, pending_id: str, post: bool, **extra: Any) -> dict[str, Any]:
    flag = "post_pending_transfer" if post else "void_pending_transfer"
    return {"id": transfer_id, "pending_id": pending_id, "flags": {flag: True}, **extra}


def place(switch: RunningSwitch, layout: tuple[int, int, int, int], tag: str) -> dict[str, str]:
    assert switch.router is not None
    p_home, payer, payee, q_home = layout
    names = {
        "payer": shard_ids(switch.router, payer, f"payer-{tag}-", 1)[0],
        "bank": shard_ids(switch.router, payer, f"bank-{tag}-", 1)[0],
        "payee": shard_ids(switch.router, payee, f"payee-{tag}-", 1)[0],
    }
    for key, home in (("p", p_home), ("q", q_home), ("p2", p_home), ("q2", q_home),
                      ("q3", q_home)):
        names[key] = shard_ids(switch.router, home, f"{key}-{tag}-", 1)[0]
    switch.post("/v1/accounts", [account(names["bank"]), account(names["payer"], LIMITED),
                                 account(names["payee"])])
    funded = switch.post("/v1/transfers", transfer(f"fund-{tag}", names["bank"],
                                                   names["payer"], 1_000))
    assert funded.status_code == 201
    return names


def balances(switch: RunningSwitch, name: str) -> tuple[int, int, int, int]:
    a = switch.account(name)
    return a["debits_posted"], a["credits_posted"], a["debits_pending"], a["credits_pending"]




@pytest.mark.parametrize("layout", LAYOUTS, ids=["-".join(map(str, x)) for x in LAYOUTS])
def test_reserve_then_post_part_then_void_another(shared_switch: RunningSwitch,
                                                  layout: tuple[int, int, int, int]) -> None:
    switch = shared_switch
    n = place(switch, layout, "".join(map(str, layout)))
    reserved = switch.post("/v1/transfers", pending(n["p"], n["payer"], n["payee"], 600))
    assert reserved.status_code == 201, reserved.text
    assert reserved.json()["transfer"]["flags"]["pending"] is True
    assert balances(switch, n["payer"]) == (0, 1_000, 600, 0)
    assert balances(switch, n["payee"]) == (0, 0, 0, 600)
    assert switch.get(f"/v1/transfers/{n['p']}").json()["status"] == "pending"
    over = switch.post("/v1/transfers", pending(n["p2"], n["payer"], n["payee"], 500))
    assert over.json()["result"] == "exceeds_credits"  # 600 of 1,000 already held

    posted = switch.post("/v1/transfers", resolve(n["q"], n["p"], True, amount=450))
    assert posted.status_code == 201, posted.text
    stored = posted.json()["transfer"]
    assert (stored["amount"], stored["debit_account_id"]) == (450, n["payer"])  # filled in
    deadline = time.monotonic() + 10
    while balances(switch, n["payer"]) != (450, 1_000, 0, 0):
        assert time.monotonic() < deadline, balances(switch, n["payer"])
        time.sleep(0.05)
    assert balances(switch, n["payee"]) == (0, 450, 0, 0)
    status = switch.get(f"/v1/transfers/{n['p']}").json()
    assert (status["status"], status["amount_posted"]) == ("posted", 450)
    history = switch.get(f"/v1/accounts/{n['payee']}/transfers").json()["transfers"]
    assert history[0]["id"] == n["q"] and history[0]["amount"] == 450

    repeat = switch.post("/v1/transfers", resolve(n["q"], n["p"], True, amount=450))
    assert repeat.status_code == 200 and repeat.json()["result"] == "exists"
    again = switch.post("/v1/transfers", resolve(n["q2"], n["p"], False))
    assert again.json()["result"] == "pending_transfer_already_posted"

    switch.post("/v1/transfers", pending(n["p2"], n["payer"], n["payee"], 100))
    voided = switch.post("/v1/transfers", resolve(n["q3"], n["p2"], False))
    assert voided.status_code == 201, voided.text
    deadline = time.monotonic() + 10
    while balances(switch, n["payer"]) != (450, 1_000, 0, 0) or \
            switch.get(f"/v1/transfers/{n['p2']}").json()["status"] != "voided":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    assert balances(switch, n["payee"]) == (0, 450, 0, 0)
    assert_balanced(switch.totals_at_rest())


def test_expiry_releases_the_reservation_once(shared_switch: RunningSwitch) -> None:
    switch = shared_switch
    n = place(switch, (1, 0, 2, 1), "exp")
    switch.post("/v1/transfers", pending(n["p"], n["payer"], n["payee"], 300, timeout_ms=300))
    assert balances(switch, n["payer"])[2] == 300
    deadline = time.monotonic() + 15
    while balances(switch, n["payer"]) != (0, 1_000, 0, 0) or \
            balances(switch, n["payee"]) != (0, 0, 0, 0):
        assert time.monotonic() < deadline, "the expired reservation was never released"
        time.sleep(0.1)
    assert switch.get(f"/v1/transfers/{n['p']}").json()["status"] == "expired"
    late = switch.post("/v1/transfers", resolve(n["q"], n["p"], True))
    assert late.json()["result"] == "pending_transfer_expired"
    assert_balanced(switch.totals_at_rest())


@pytest.mark.parametrize(("body", "code"), [
    (resolve("x1", "", True), "validation_error"),
    ({"id": "x2", "pending_id": "nope", "flags": {"post_pending_transfer": True,
                                                  "void_pending_transfer": True}},
     "flags_are_mutually_exclusive"),
    (resolve("x3", "nope", True), "pending_transfer_not_found"),
    (resolve("x4", "x4", True), "pending_id_must_be_different"),
    ({**transfer("x5", "a", "b", 1), "timeout_ms": 5}, "timeout_reserved_for_pending_transfer"),
    ({**transfer("x6", "a", "b", 1), "pending_id": "p"}, "pending_id_must_be_empty"),
    ({"id": "x7", "amount": 5}, "validation_error"),
])
def test_two_phase_rejections(shared_switch: RunningSwitch, body: dict[str, Any],
                              code: str) -> None:
    response = shared_switch.post("/v1/transfers", body)
    assert response.status_code == (400 if code == "validation_error" else 422), response.text
    assert response.json()["code"] == code
