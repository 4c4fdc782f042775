"""Transfers whose home, debit and credit accounts sit on different shards."""

from __future__ import annotations

import random
import threading
import time
from typing import Any

import pytest

from actors.ledger.model import Transfer
from actors.messages import Commit, Reserve
from tests.conftest import RunningSwitch, assert_balanced, shard_ids
from tests.switch.test_api import LIMITED, account, transfer

# (home, debit, credit) shard of each transfer: every way three roles can share 3 shards.
LAYOUTS = [(0, 0, 0), (0, 0, 1), (0, 1, 0), (0, 1, 1), (1, 0, 0), (0, 1, 2)]


def placed(switch: RunningSwitch, layout: tuple[int, int, int], tag: str) -> dict[str, str]:
    assert switch.router is not None
    home, debit, credit = layout
    names = {
        "transfer": shard_ids(switch.router, home, f"t-{tag}-", 1)[0],
        "retry": shard_ids(switch.router, home, f"r-{tag}-", 1)[0],
        "payer": shard_ids(switch.router, debit, f"payer-{tag}-", 1)[0],
        "bank": shard_ids(switch.router, debit, f"bank-{tag}-", 1)[0],
        "payee": shard_ids(switch.router, credit, f"payee-{tag}-", 1)[0],
        "closed": shard_ids(switch.router, credit, f"closed-{tag}-", 1)[0],
    }
    bodies = [account(names["bank"]), account(names["payer"], LIMITED),
              account(names["payee"]), account(names["closed"], {"closed": True})]
    assert all(r["result"] == "ok"
               for r in switch.post("/v1/accounts", bodies).json()["results"])
    fund = transfer(f"fund-{tag}", names["bank"], names["payer"], 1_000)
    assert switch.post("/v1/transfers", fund).status_code == 201
    switch.wait_for_credits(names["payer"], 1_000)  # some tests call its shard directly
    return names


@pytest.mark.parametrize("layout", LAYOUTS, ids=[f"home{h}-debit{d}-credit{c}" for h, d, c in
                                                 LAYOUTS])
def test_transfer_in_every_layout(shared_switch: RunningSwitch,
                                  layout: tuple[int, int, int]) -> None:
    switch = shared_switch
    names = placed(switch, layout, "".join(map(str, layout)))
    body = transfer(names["transfer"], names["payer"], names["payee"], 600)
    created = switch.post("/v1/transfers", body)
    assert created.status_code == 201, created.text
    stamped = created.json()["transfer"]
    payer, payee = switch.account(names["payer"]), switch.account(names["payee"])
    assert (payer["debits_posted"], payer["credits_posted"], payer["debits_pending"]) == \
        (600, 1_000, 0)
    assert (payee["credits_posted"], payee["credits_pending"]) == (600, 0)
    assert switch.get(f"/v1/transfers/{names['transfer']}").json() == stamped
    for side in ("payer", "payee"):
        history = switch.get(f"/v1/accounts/{names[side]}/transfers").json()["transfers"]
        assert history[0] == stamped
    assert switch.post("/v1/transfers", body).json()["result"] == "exists"
    assert switch.post("/v1/transfers", {**body, "amount": 5}).status_code == 409
    # Rejections leave nothing behind, whichever shard found the problem.
    over = switch.post("/v1/transfers", transfer(names["retry"], names["payer"], names["payee"],
                                                 401))
    assert over.json()["result"] == "exceeds_credits"
    closed = switch.post("/v1/transfers", transfer(names["retry"], names["payer"],
                                                   names["closed"], 1))
    assert closed.json()["result"] == "credit_account_closed"
    assert switch.account(names["payer"])["debits_pending"] == 0
    assert switch.account(names["payer"])["debits_posted"] == 600
    assert switch.get(f"/v1/transfers/{names['retry']}").status_code == 404
    assert switch.in_doubt() == 0
    assert_balanced(switch.totals_at_rest())


def test_concurrent_clients_keep_the_books_balanced(switch: RunningSwitch) -> None:
    accounts = [f"w{i}" for i in range(24)]
    switch.post("/v1/accounts", [account("bank")] + [account(a, LIMITED) for a in accounts])
    switch.post("/v1/transfers", [transfer(f"seed-{a}", "bank", a, 500) for a in accounts])
    outcomes: list[tuple[dict[str, Any], str]] = []
    statuses: list[tuple[int, str | None]] = []
    lock = threading.Lock()

    def client(seed: int) -> None:
        rng = random.Random(seed)
        for n in range(60):
            debit, credit = rng.sample(accounts, 2)
            body = transfer(f"c{seed}-{n}", debit, credit, rng.randint(1, 200))
            response = switch.post("/v1/transfers", body)
            with lock:  # checked after the threads: an assertion in a thread only warns
                outcomes.append((body, response.json().get("result", response.text)))
                statuses.append((response.status_code, response.json().get("result")))

    threads = [threading.Thread(target=client, args=(seed,)) for seed in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(statuses) == 8 * 60
    assert set(statuses) <= {(201, "ok"), (422, "exceeds_credits")}, set(statuses)
    for thread in threads:
        thread.join()
    assert len(outcomes) == 480
    assert {result for _, result in outcomes} <= {"ok", "exceeds_credits"}
    expected = {a: 500 for a in accounts}
    for body, result in outcomes:
        if result == "ok":
            expected[body["debit_account_id"]] -= body["amount"]
            expected[body["credit_account_id"]] += body["amount"]
    for name in accounts:
        state = switch.account(name)
        assert state["credits_posted"] - state["debits_posted"] == expected[name]
        assert state["debits_posted"] <= state["credits_posted"]
        assert state["debits_pending"] == state["credits_pending"] == 0
    assert_balanced(switch.totals_at_rest())


def test_redrive_voids_a_reservation_whose_home_never_committed(switch: RunningSwitch) -> None:
    names = placed(switch, (0, 1, 2), "v")
    fields = Transfer(names["transfer"], names["payer"], names["payee"], 300, "USD", 1)
    assert switch.shard_call(1, [Reserve(fields, 1, 12345)])[0].result == "ok"
    assert switch.account(names["payer"])["debits_pending"] == 300
    deadline = time.monotonic() + 10
    while switch.account(names["payer"])["debits_pending"]:
        assert time.monotonic() < deadline, "redrive did not void the reservation"
        time.sleep(0.1)
    assert switch.account(names["payer"])["debits_posted"] == 0
    assert switch.get(f"/v1/transfers/{names['transfer']}").status_code == 404
    assert_balanced(switch.totals_at_rest())


def test_redrive_posts_a_reservation_whose_home_committed(quiet_switch: RunningSwitch
                                                          ) -> None:
    switch = quiet_switch
    names = placed(switch, (0, 1, 2), "q")
    fields = Transfer(names["transfer"], names["payer"], names["payee"], 300, "USD", 1)
    # A crash after the home committed and before the parts were finalized looks like this:
    assert switch.shard_call(1, [Reserve(fields, 1, 777)])[0].result == "ok"
    assert switch.shard_call(2, [Reserve(fields, 2, 777)])[0].result == "ok"
    assert switch.shard_call(0, [Commit(fields, 0, "ok", 777)])[0].result == "ok"
    switch.restart()
    assert switch.in_doubt() == 0  # resolved before the API took traffic
    payer, payee = switch.account(names["payer"]), switch.account(names["payee"])
    assert (payer["debits_posted"], payer["debits_pending"]) == (300, 0)
    assert (payee["credits_posted"], payee["credits_pending"]) == (300, 0)
    assert_balanced(switch.totals_at_rest())
