"""docs/SWITCH.md's worked example, step by step, against a real switch: the figures it
states are what the switch answers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import RunningSwitch

DOC = Path(__file__).resolve().parents[2] / "docs" / "SWITCH.md"


def test_the_worked_example(switch: RunningSwitch) -> None:
    def call(method: str, path: str, body: Any = None, key: str | None = None,
             expect: int = 200) -> Any:
        headers = None if key is None else {"Authorization": f"Bearer {key}"}
        answer = switch.client.request(method, switch.url + path, json=body, headers=headers)
        assert answer.status_code == expect, (path, answer.text)
        return answer.json()

    keys = {}
    for bank, name in (("bank-a", "Bank A"), ("bank-b", "Bank B")):  # step 1
        call("POST", "/v1/participants", {"id": bank, "name": name, "ledgers": ["USD"]},
             expect=201)
        keys[bank] = call("POST", "/v1/keys", {"role": "participant", "participant_id": bank},
                          expect=201)["secret"]
    call("POST", "/v1/participants/bank-a/funds", {  # step 2
        "id": "f1", "ledger": "USD", "direction": "in", "amount": 1_000_000}, expect=201)
    call("PUT", "/v1/participants/bank-a/ledgers/USD/net-debit-cap", {"net_debit_cap": 500_000})
    for wallet, bank in (("alice-a", "bank-a"), ("bob-b", "bank-b")):  # step 3
        call("POST", "/v1/accounts", {"id": wallet, "ledger": "USD", "code": 1, "owner": bank,
                                      "flags": {"debits_must_not_exceed_credits": True}},
             key=keys[bank], expect=201)
    call("POST", "/v1/accounts", {"id": "cash", "ledger": "USD", "code": 1, "owner": "hub"},
         expect=201)
    call("POST", "/v1/transfers", {"id": "load", "debit_account_id": "cash",
                                   "credit_account_id": "alice-a", "amount": 1_000_000,
                                   "ledger": "USD", "code": 1}, expect=201)
    call("POST", "/v1/parties", {"type": "MSISDN", "id": "+254700000001", "account_id": "bob-b"},
         key=keys["bank-b"], expect=201)
    quote = call("POST", "/v1/quotes", {  # step 4
        "payer_account_id": "alice-a", "payee": {"type": "MSISDN", "id": "+254700000001"},
        "amount": 12_000, "amount_type": "RECEIVE", "ledger": "USD"}, key=keys["bank-a"],
        expect=201)
    call("POST", "/v1/payments", {"id": "p1", "quote_id": quote["quote_id"]},
         key=keys["bank-a"], expect=201)
    fee = quote["fee"]
    assert switch.account("alice-a")["debits_posted"] == 12_000 + fee
    assert switch.account("bob-b")["credits_posted"] == 12_000
    positions = {bank: call("GET", f"/v1/participants/{bank}/positions")["positions"][0]
                 for bank in keys}
    assert (positions["bank-a"]["position"], positions["bank-a"]["headroom"]) == (12_000,
                                                                                  488_000)
    assert positions["bank-b"]["position"] == -12_000
    refused = switch.client.post(switch.url + "/v1/payments", json={  # step 5
        "id": "p2", "payer_account_id": "alice-a", "payee_account_id": "bob-b", "amount": 488_001,
        "ledger": "USD"})
    assert refused.json()["code"] == "exceeds_net_debit_cap"
    assert switch.account("bob-b")["credits_posted"] == 12_000  # it moved nothing
    call("POST", "/v1/settlement-windows/close", {"ledger": "USD"})  # step 6
    found = call("GET", "/v1/settlement-windows/USD.1/report")
    nets = {row["participant_id"]: row["net"] for row in found["participants"]}
    assert nets == {"bank-a": 12_000, "bank-b": -12_000} and found["signature"]
    call("POST", "/v1/settlements", {"id": "day-1", "ledger": "USD",  # step 7
                                     "window_ids": ["USD.1"]}, expect=201)
    for bank in keys:
        call("PUT", f"/v1/settlements/day-1/participants/{bank}", {"state": "settled"})
    after = {bank: call("GET", f"/v1/participants/{bank}/positions")["positions"][0]
             for bank in keys}
    assert after["bank-a"]["position"] == after["bank-b"]["position"] == 0
    assert after["bank-a"]["headroom"] == 500_000
    assert after["bank-a"]["settlement_balance"] == 1_000_000 - 12_000
    text = DOC.read_text()
    for stated in ("10,000.00", "5,000.00", "120.00", "4,880.00", "exceeds_net_debit_cap",
                   "\u2212120.00", "USD.1", "day-1"):  # a minus sign, as the doc writes it
        assert stated in text
