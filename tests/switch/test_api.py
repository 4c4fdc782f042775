"""The API end to end: real HTTP over a socket, real Ray shard actors, real LMDB logs."""

from __future__ import annotations

import asyncio
from typing import Any

import msgspec
import pytest

from actors.shard.stats import ShardStatus
from switch.observe.monitor import Monitor
from tests.conftest import RunningSwitch, assert_balanced


def account(account_id: str, flags: dict[str, bool] | None = None, **fields: Any) -> dict[str, Any]:
    body = {"id": account_id, "ledger": "USD", "code": 1, "owner": "psp1", **fields}
    if flags:
        body["flags"] = flags
    return body


def transfer(transfer_id: str, debit: str, credit: str, amount: int, **fields: Any
             ) -> dict[str, Any]:
    return {"id": transfer_id, "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "ledger": "USD", "code": 1, **fields}


LIMITED = {"debits_must_not_exceed_credits": True}


def open_accounts(switch: RunningSwitch, *ids: str, limited: bool = True) -> None:
    bodies = [account("bank")] + [account(i, LIMITED if limited else None) for i in ids]
    response = switch.post("/v1/accounts", bodies)
    assert response.status_code == 200
    assert {r["result"] for r in response.json()["results"]} <= {"ok", "exists"}


def test_readme_session(switch: RunningSwitch) -> None:
    open_accounts(switch, "alice", "bob")
    funded = switch.post("/v1/transfers", transfer("fund-1", "bank", "alice", 10_000))
    assert funded.status_code == 201, funded.text
    assert funded.json()["result"] == "ok" and funded.json()["transfer"]["timestamp"] > 0
    paid = switch.post("/v1/transfers", transfer("pay-1", "alice", "bob", 2_500))
    assert paid.status_code == 201
    alice, bob = switch.account("alice"), switch.account("bob")
    assert (alice["debits_posted"], alice["credits_posted"]) == (2_500, 10_000)
    assert (bob["debits_posted"], bob["credits_posted"]) == (0, 2_500)
    assert switch.get("/v1/transfers/pay-1").json()["amount"] == 2_500
    assert_balanced(switch.totals_at_rest())


def test_create_account_statuses(switch: RunningSwitch) -> None:
    created = switch.post("/v1/accounts", account("a1", user_data="first"))
    assert created.status_code == 201
    body = created.json()
    assert body["result"] == "ok" and body["account"]["id"] == "a1"
    assert body["account"]["flags"] == {"debits_must_not_exceed_credits": False,
                                        "credits_must_not_exceed_debits": False, "closed": False,
                                        "history": False}
    again = switch.post("/v1/accounts", account("a1", user_data="first"))
    assert again.status_code == 200 and again.json()["result"] == "exists"
    assert again.json()["account"]["timestamp"] == body["account"]["timestamp"]
    different = switch.post("/v1/accounts", account("a1", user_data="other"))
    assert different.status_code == 409
    assert different.json()["code"] == "exists_with_different_user_data"
    unknown = switch.post("/v1/accounts", account("a2", ledger="XYZ"))
    assert unknown.status_code == 422 and unknown.json()["code"] == "ledger_unknown"
    both = switch.post("/v1/accounts", account("a3", {"debits_must_not_exceed_credits": True,
                                                      "credits_must_not_exceed_debits": True}))
    assert both.status_code == 422 and both.json()["code"] == "flags_invalid"
    assert switch.get("/v1/accounts/a2").status_code == 404
    assert switch.get("/v1/accounts/a3").json()["code"] == "account_not_found"


def test_transfer_statuses_and_repeats_change_nothing(switch: RunningSwitch) -> None:
    open_accounts(switch, "alice", "bob")
    assert switch.post("/v1/transfers", transfer("f1", "bank", "alice", 100)).status_code == 201
    snapshot = (switch.account("alice"), switch.account("bob"))
    repeat = switch.post("/v1/transfers", transfer("f1", "bank", "alice", 100))
    assert repeat.status_code == 200 and repeat.json()["result"] == "exists"
    changed = switch.post("/v1/transfers", transfer("f1", "bank", "alice", 101))
    assert changed.status_code == 409
    assert changed.json()["code"] == "exists_with_different_amount"
    over = switch.post("/v1/transfers", transfer("p1", "alice", "bob", 101))
    assert over.status_code == 422 and over.json()["code"] == "exceeds_credits"
    missing = switch.post("/v1/transfers", transfer("p2", "alice", "nobody", 1))
    assert missing.status_code == 422 and missing.json()["code"] == "credit_account_not_found"
    assert (switch.account("alice"), switch.account("bob")) == snapshot
    assert switch.get("/v1/transfers/p1").status_code == 404


def test_batch_results_per_item(switch: RunningSwitch) -> None:
    open_accounts(switch, "alice", "bob")
    batch = [
        transfer("b1", "bank", "alice", 50),
        transfer("b2", "alice", "bob", 30),
        transfer("b3", "alice", "bob", 30),  # only 20 left
        transfer("b1", "bank", "alice", 50),  # repeat inside the batch
        transfer("b4", "alice", "alice", 1),
        transfer("b5", "bank", "bob", 0),
    ]
    response = switch.post("/v1/transfers", batch)
    assert response.status_code == 200
    results = response.json()["results"]
    assert [r["index"] for r in results] == list(range(6))
    assert [r["id"] for r in results] == ["b1", "b2", "b3", "b1", "b4", "b5"]
    by_index = [r["result"] for r in results]
    assert by_index[0] == "ok" and by_index[3] == "exists"
    assert by_index[4] == "accounts_must_be_different" and by_index[5] == "amount_invalid"
    # b2 and b3 may apply in either order when they cross shards; exactly one fits.
    assert sorted(by_index[1:3]) == ["exceeds_credits", "ok"]
    assert results[0]["timestamp"] > 0
    assert switch.account("alice")["credits_posted"] == 50
    assert switch.account("bob")["credits_posted"] == 30
    again = switch.post("/v1/transfers", batch[:2])
    assert [r["result"] for r in again.json()["results"]] == ["exists", "exists"]
    assert_balanced(switch.totals_at_rest())


def test_account_transfers_newest_first_with_cursor(switch: RunningSwitch) -> None:
    open_accounts(switch, "alice", "bob")
    ids = [f"h{i}" for i in range(7)]
    for transfer_id in ids:
        assert switch.post("/v1/transfers", transfer(transfer_id, "bank", "alice", 10)
                           ).status_code == 201
    seen, cursor = [], None
    while True:
        query = "limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = switch.get(f"/v1/accounts/alice/transfers?{query}").json()
        seen.extend(t["id"] for t in page["transfers"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == list(reversed(ids))
    assert switch.get("/v1/accounts/nobody/transfers").status_code == 404
    assert switch.get("/v1/accounts/alice/transfers?limit=0").status_code == 400
    assert switch.get("/v1/accounts/alice/transfers?cursor=x").status_code == 400


def test_health_readiness_ledgers_and_openapi(switch: RunningSwitch) -> None:
    assert switch.get("/healthz").json() == {"status": "ok"}
    ready = switch.get("/readyz")
    assert ready.status_code == 200 and len(ready.json()["shards"]) == 3
    open_accounts(switch, "alice")
    switch.post("/v1/transfers", transfer("l1", "bank", "alice", 77))
    usd = next(x for x in switch.get("/v1/ledgers").json()["ledgers"] if x["ledger"] == "USD")
    assert usd["debits_posted"] == usd["credits_posted"] == 77 and usd["balanced"]
    document = switch.get("/openapi.json").json()
    assert document["openapi"].startswith("3.1")
    assert "/v1/transfers" in document["paths"]
    schema = document["components"]["schemas"]["TransferIn"]
    assert schema["additionalProperties"] is False
    assert schema["required"] == ["id"]  # the rest is required unless posting or voiding
    assert {"pending_id", "timeout_ms", "flags"} <= set(schema["properties"])


def test_a_broken_shard_makes_readyz_503_with_its_reason(switch: RunningSwitch,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    """A shard that could not rebuild its state answers its status (it raised on its closed
    log before: `not_answering`, without why); /readyz names it broken, with the reason."""
    router = switch.router
    assert router is not None
    real = router.statuses_answered

    async def one_broken(timeout_s: float = 2.0) -> list[ShardStatus | None]:
        statuses = await real(timeout_s)
        why = "shard 1 could not rebuild its state: OSError('the disk went away')"
        return [msgspec.structs.replace(status, broken=why) if shard == 1 and status else status
                for shard, status in enumerate(statuses)]

    monkeypatch.setattr(router, "statuses_answered", one_broken)
    ready = switch.get("/readyz")
    assert ready.status_code == 503 and ready.json()["code"] == "shard_unavailable"
    assert ready.json()["details"] == [{"shard": 1, "state": "broken", "reason": (
        "shard 1 could not rebuild its state: OSError('the disk went away')")}]


def test_a_broken_shard_leaves_the_books_as_last_seen_and_is_shown_broken(
        switch: RunningSwitch, monkeypatch: pytest.MonkeyPatch) -> None:
    """The monitor (dashboard, /metrics) takes a broken shard's status, whose figures are
    zeros, as one that does not answer: the ledgers' totals stay as last seen (summed with
    its empty totals they lost its money), its row says broken."""
    router = switch.router
    assert router is not None
    open_accounts(switch, "carol")
    switch.post("/v1/transfers", transfer("mon-1", "bank", "carol", 5))
    monitor = Monitor(router)
    asyncio.run(monitor.tick())
    while monitor.totals["USD"][0] != monitor.totals["USD"][1]:  # a cross-shard one in flight
        asyncio.run(monitor.tick())
    seen = {ledger: list(sums) for ledger, sums in monitor.totals.items()}
    real = router.statuses_answered

    async def one_broken(timeout_s: float = 2.0) -> list[ShardStatus | None]:
        return [msgspec.structs.replace(status, broken="shard 1 could not rebuild")
                if shard == 1 and status else status
                for shard, status in enumerate(await real(timeout_s))]

    monkeypatch.setattr(router, "statuses_answered", one_broken)
    asyncio.run(monitor.tick())
    assert monitor.totals == seen
    assert [row["state"] for row in monitor.shards if row["shard"] == 1] == ["broken"]
