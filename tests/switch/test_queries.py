"""Queries answered by the read replica: filters, cursors across shards, balance history."""

from __future__ import annotations

import time
from typing import Any

from tests.conftest import RunningSwitch
from tests.switch.test_api import account, transfer


def pages(switch: RunningSwitch, path: str, key: str, limit: int = 3) -> list[Any]:
    found: list[Any] = []
    cursor = None
    while True:
        sep = "&" if "?" in path else "?"
        url = f"{path}{sep}limit={limit}" + (f"&cursor={cursor}" if cursor else "")
        response = switch.get(url)
        assert response.status_code == 200, response.text
        found.extend(response.json()[key])
        cursor = response.json()["next_cursor"]
        if cursor is None:
            return found


def test_transfer_and_account_queries(switch: RunningSwitch) -> None:
    switch.post("/v1/accounts", [account("bank", owner="op"), account("qa", owner="psp-a"),
                                 account("qb", owner="psp-a", code=7),
                                 account("qc", owner="psp-b")])
    bodies = [transfer(f"q{i}", "bank", ["qa", "qb", "qc"][i % 3], 10 + i,
                       code=1 + i % 2, user_data="salary" if i < 4 else "") for i in range(9)]
    assert switch.post("/v1/transfers", bodies).status_code == 200
    switch.post("/v1/transfers", {**transfer("qp", "qa", "qc", 5), "flags": {"pending": True}})
    everything = pages(switch, "/v1/transfers", "transfers")
    ids = [t["id"] for t in everything]
    assert len(ids) == len(set(ids)) == 10  # each once, though copies sit on several shards
    stamps = [t["timestamp"] for t in everything]
    assert stamps == sorted(stamps)
    to_qa = pages(switch, "/v1/transfers?account_id=qa", "transfers")
    assert {t["id"] for t in to_qa} == {"q0", "q3", "q6", "qp"}
    assert {t["id"] for t in pages(switch, "/v1/transfers?code=2", "transfers")} == \
        {"q1", "q3", "q5", "q7"}
    assert {t["id"] for t in pages(switch, "/v1/transfers?user_data=salary", "transfers")} == \
        {"q0", "q1", "q2", "q3"}
    pending = pages(switch, "/v1/transfers?pending_status=pending", "transfers")
    assert [t["id"] for t in pending] == ["qp"] and pending[0]["status"] == "pending"
    middle = everything[4]["timestamp"]
    later = pages(switch, f"/v1/transfers?from={middle}", "transfers")
    assert [t["id"] for t in later] == ids[4:]
    owned = pages(switch, "/v1/accounts?owner=psp-a", "accounts", limit=1)
    assert [a["id"] for a in owned] == ["qa", "qb"]
    assert [a["id"] for a in pages(switch, "/v1/accounts?code=7", "accounts")] == ["qb"]


def test_balance_history_of_an_account_that_keeps_it(switch: RunningSwitch) -> None:
    switch.post("/v1/accounts", [account("bank"), account("h", {"history": True}),
                                 account("plain")])
    for i, amount in enumerate((100, 50, 25)):
        switch.post("/v1/transfers", transfer(f"h{i}", "bank", "h", amount))
    switch.post("/v1/transfers", transfer("h-out", "h", "plain", 30))
    deadline = time.monotonic() + 10
    while True:  # the cross-shard parts settle right after the answers
        entries = pages(switch, "/v1/accounts/h/balances", "balances", limit=2)
        if entries and entries[-1]["credits_posted"] == 175 and entries[-1]["debits_posted"]:
            break
        assert time.monotonic() < deadline, entries
        time.sleep(0.1)
    credits = [e["credits_posted"] for e in entries]
    assert credits == sorted(credits) and {100, 150, 175} <= set(credits)
    assert entries[-1]["debits_posted"] == 30
    assert switch.account("h")["credits_posted"] == 175
    since = entries[2]["timestamp"]
    assert pages(switch, f"/v1/accounts/h/balances?from={since}", "balances") == entries[2:]
    assert switch.get("/v1/accounts/plain/balances").status_code == 404
    assert switch.get("/v1/accounts/nobody/balances").json()["code"] == "history_not_kept"


def test_bad_queries(switch: RunningSwitch) -> None:
    for query, code in (("/v1/transfers?limit=0", "query_invalid"),
                        ("/v1/transfers?code=x", "query_invalid"),
                        ("/v1/transfers?cursor=zz", "cursor_invalid"),
                        ("/v1/transfers?pending_status=maybe", "query_invalid"),
                        ("/v1/transfers?from=yesterday", "query_invalid"),
                        ("/v1/accounts?owner=a%20b", "query_invalid"),
                        ("/v1/accounts/bad%20id/balances", "id_invalid")):
        response = switch.get(query)
        assert response.status_code == 400, query
        assert response.json()["code"] == code, (query, response.text)
