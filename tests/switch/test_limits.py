"""Per-account limits: an overdraft, a maximum per transfer, a rolling velocity window."""

from __future__ import annotations

import time

from tests.conftest import RunningSwitch, assert_balanced, shard_ids
from tests.switch.test_api import LIMITED, account, transfer

LIMITS = {"transfer_max": 100, "overdraft": 50, "velocity_max": 150, "velocity_window_ms": 1500}


def result(switch: RunningSwitch, body: dict[str, object]) -> str:
    return str(switch.post("/v1/transfers", body).json()["result"])


def test_limits_are_checked_by_the_debit_account(switch: RunningSwitch) -> None:
    switch.post("/v1/accounts", [account("bank"), account("w", LIMITED, limits=LIMITS),
                                 account("shop")])
    assert switch.account("w")["limits"] == LIMITS
    switch.post("/v1/transfers", transfer("fund", "bank", "w", 40))
    assert result(switch, transfer("big", "w", "shop", 101)) == "exceeds_transfer_max"
    assert result(switch, transfer("t1", "w", "shop", 90)) == "ok"  # 90 <= 40 + overdraft 50
    assert result(switch, transfer("t2", "w", "shop", 1)) == "exceeds_credits"
    switch.post("/v1/transfers", transfer("fund2", "bank", "w", 500))
    assert result(switch, transfer("t3", "w", "shop", 61)) == "exceeds_velocity_limit"  # 151
    assert result(switch, transfer("t4", "w", "shop", 60)) == "ok"  # exactly 150
    assert result(switch, transfer("t5", "w", "shop", 1)) == "exceeds_velocity_limit"
    time.sleep(1.6)  # the window rolls past t1 and t4
    assert result(switch, transfer("t6", "w", "shop", 100)) == "ok"
    assert switch.account("w")["debits_posted"] == 250
    assert_balanced(switch.totals_at_rest())


def test_limits_and_the_window_survive_a_restart(switch: RunningSwitch) -> None:
    minute = {**LIMITS, "velocity_window_ms": 60_000}
    switch.post("/v1/accounts", [account("bank"), account("u", LIMITED, limits=minute),
                                 account("shop")])
    switch.post("/v1/transfers", transfer("fund", "bank", "u", 500))
    assert result(switch, transfer("u1", "u", "shop", 100)) == "ok"
    switch.restart()  # limits and the window's debits come back from the log
    assert switch.account("u")["limits"] == minute
    assert result(switch, transfer("u2", "u", "shop", 51)) == "exceeds_velocity_limit"
    assert result(switch, transfer("u3", "u", "shop", 50)) == "ok"


def test_changing_limits_is_idempotent_and_checked(switch: RunningSwitch) -> None:
    switch.post("/v1/accounts", [account("bank"), account("v", LIMITED)])
    url = switch.url + "/v1/accounts/v/limits"
    changed = switch.client.put(url, json={"transfer_max": 5})
    assert changed.status_code == 200 and changed.json()["result"] == "ok"
    assert changed.json()["account"]["limits"]["transfer_max"] == 5
    again = switch.client.put(url, json={"transfer_max": 5})
    assert again.status_code == 200 and again.json()["result"] == "unchanged"
    switch.post("/v1/transfers", transfer("f", "bank", "v", 50))
    assert result(switch, transfer("x", "v", "bank", 6)) == "exceeds_transfer_max"
    half = switch.client.put(url, json={"velocity_max": 10})
    assert half.status_code == 422 and half.json()["code"] == "limits_invalid"
    bad = switch.client.put(url, json={"transfer_max": "5"})
    assert bad.status_code == 400 and bad.json()["code"] == "validation_error"
    negative = switch.client.put(url, json={"overdraft": -1})
    assert negative.status_code == 400
    missing = switch.client.put(switch.url + "/v1/accounts/nobody/limits", json={})
    assert missing.status_code == 404
    assert switch.account("v")["limits"]["transfer_max"] == 5  # nothing bad was applied


def test_velocity_counts_what_moved_not_what_was_tried(switch: RunningSwitch) -> None:
    """A retry answered `exists`, a transfer the credit side refused, a failed chain: none
    uses velocity budget, wherever the transfer's id and accounts live."""
    assert switch.router is not None
    payer = shard_ids(switch.router, 1, "vel-payer-", 1)[0]
    shop = shard_ids(switch.router, 2, "vel-shop-", 1)[0]
    capped = shard_ids(switch.router, 2, "vel-capped-", 1)[0]
    minute = {"velocity_max": 50, "velocity_window_ms": 60_000}
    switch.post("/v1/accounts", [account("vel-bank"), account(payer, limits=minute),
                                 account(shop), account(capped, {
                                     "credits_must_not_exceed_debits": True})])
    ids = shard_ids(switch.router, 0, "vel-t-", 4)  # homed on neither account's shard
    assert result(switch, transfer(ids[0], payer, shop, 20)) == "ok"
    assert result(switch, transfer(ids[0], payer, shop, 20)) == "exists"
    assert result(switch, transfer(ids[1], payer, capped, 20)) == "exceeds_debits"
    chain = [{**transfer(ids[2], payer, shop, 5), "flags": {"linked": True}},
             transfer(ids[3], "vel-bank", capped, 1)]
    assert [r["result"] for r in switch.post("/v1/transfers", chain).json()["results"]] == [
        "linked_event_failed", "exceeds_debits"]
    assert result(switch, transfer("vel-last", payer, shop, 30)) == "ok"  # 20 + 30 = 50
    assert result(switch, transfer("vel-over", payer, shop, 1)) == "exceeds_velocity_limit"
