"""The switch layer against a real switch (3 shards): participants' positions under net debit
caps, funds in and out, immediate payments between participants (docs/SWITCH.md)."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest

from tests.conftest import RunningSwitch, assert_balanced, switch_settings

USD = "USD"
_ids = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}"


class Switch:
    """A running switch with participants, their keys and wallets made on demand."""

    def __init__(self, running: RunningSwitch) -> None:
        self.running = running
        self.keys: dict[str, str] = {}
        assert self.op("POST", "/v1/accounts", {"id": "house", "ledger": USD, "code": 1,
                                                "owner": "house"}).status_code == 201

    def op(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.running.client.request(method, self.running.url + path, json=body)

    def as_(self, participant: str, method: str, path: str, body: Any = None
            ) -> httpx.Response:
        return self.running.client.request(
            method, self.running.url + path, json=body,
            headers={"Authorization": f"Bearer {self.keys[participant]}"})

    def participant(self, prefix: str = "bank") -> str:
        participant_id = fresh(prefix)
        created = self.op("POST", "/v1/participants",
                          {"id": participant_id, "name": participant_id, "ledgers": [USD]})
        assert created.status_code == 201, created.text
        key = self.op("POST", "/v1/keys", {"role": "participant",
                                           "participant_id": participant_id})
        self.keys[participant_id] = key.json()["secret"]
        return participant_id

    def wallet(self, owner: str, balance: int = 0) -> str:
        wallet_id = fresh(f"w-{owner}")
        assert self.op("POST", "/v1/accounts", {
            "id": wallet_id, "ledger": USD, "code": 1, "owner": owner,
            "flags": {"debits_must_not_exceed_credits": True}}).status_code == 201
        if balance:
            assert self.op("POST", "/v1/transfers", {
                "id": fresh("fund"), "debit_account_id": "house", "credit_account_id": wallet_id,
                "amount": balance, "ledger": USD, "code": 1}).status_code == 201
        return wallet_id

    def position(self, participant_id: str) -> dict[str, Any]:
        answer = self.op("GET", f"/v1/participants/{participant_id}/positions")
        assert answer.status_code == 200, answer.text
        (position,) = answer.json()["positions"]
        return dict(position)

    def funds(self, participant_id: str, amount: int, direction: str = "in",
              funds_id: str | None = None) -> httpx.Response:
        return self.op("POST", f"/v1/participants/{participant_id}/funds",
                       {"id": funds_id or fresh("funds"), "ledger": USD,
                        "direction": direction, "amount": amount})

    def cap(self, participant_id: str, cap: int) -> httpx.Response:
        return self.op("PUT", f"/v1/participants/{participant_id}/ledgers/{USD}/net-debit-cap",
                       {"net_debit_cap": cap})

    def ready(self, participant_id: str, cap: int, liquidity: int | None = None) -> None:
        assert self.funds(participant_id, liquidity or cap).status_code == 201
        assert self.cap(participant_id, cap).status_code == 200

    def pay(self, payer_wallet: str, payee_wallet: str, amount: int, payer: str | None = None,
            payment_id: str | None = None) -> httpx.Response:
        body = {"id": payment_id or fresh("pay"), "payer_account_id": payer_wallet,
                "payee_account_id": payee_wallet, "amount": amount, "ledger": USD}
        return (self.op("POST", "/v1/payments", body) if payer is None
                else self.as_(payer, "POST", "/v1/payments", body))

    def balance(self, account_id: str) -> int:
        account = self.running.account(account_id)
        return int(account["credits_posted"] - account["debits_posted"])


@pytest.fixture(scope="module")
def hub(ray_session: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    running = RunningSwitch(switch_settings(tmp_path_factory.mktemp("hub") / "data")).start()
    yield Switch(running)
    running.stop()


def test_a_new_participant_stands_at_zero(hub: Switch) -> None:
    bank = hub.participant()
    assert hub.position(bank) == {"ledger": USD, "position": 0, "net_debit_cap": 0,
                                  "headroom": 0, "settlement_balance": 0}


def test_funds_in_and_out(hub: Switch) -> None:
    bank = hub.participant()
    first = hub.funds(bank, 1_000, funds_id="f1-" + bank)
    assert first.status_code == 201 and first.json()["position"]["settlement_balance"] == 1_000
    assert hub.funds(bank, 1_000, funds_id="f1-" + bank).json()["result"] == "exists"
    assert hub.funds(bank, 999, funds_id="f1-" + bank).status_code == 409
    assert hub.funds(bank, 1_001, "out").json()["code"] == "settlement_below_position"
    out = hub.funds(bank, 400, "out", funds_id="o1-" + bank)
    assert out.status_code == 201, out.text
    again = hub.funds(bank, 400, "out", funds_id="o1-" + bank)  # a retry: as sent, not re-checked
    assert again.status_code == 200 and again.json()["result"] == "exists"
    assert hub.position(bank)["settlement_balance"] == 600


def test_a_cap_is_at_most_the_settlement_balance(hub: Switch) -> None:
    bank = hub.participant()
    assert hub.funds(bank, 500).status_code == 201
    assert hub.cap(bank, 501).json()["code"] == "net_debit_cap_above_settlement"
    set_ = hub.cap(bank, 500)
    assert set_.status_code == 200 and set_.json()["position"]["headroom"] == 500
    assert hub.cap(bank, 500).json()["result"] == "unchanged"
    assert hub.cap(bank, 200).json()["position"] == {
        "ledger": USD, "position": 0, "net_debit_cap": 200, "headroom": 200,
        "settlement_balance": 500}


def test_a_payment_moves_wallets_and_positions(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    alice, bob = hub.wallet(payer, 300), hub.wallet(payee)
    paid = hub.pay(alice, bob, 120, payer=payer)
    assert paid.status_code == 201, paid.text
    payment = paid.json()["payment"]
    assert (payment["payer_participant_id"], payment["payee_participant_id"],
            payment["state"]) == (payer, payee, "committed")
    assert (hub.balance(alice), hub.balance(bob)) == (180, 120)
    assert hub.position(payer)["position"] == 120
    assert hub.position(payer)["headroom"] == 880
    assert hub.position(payee)["position"] == -120
    # both participants see it; a third does not
    third = hub.participant()
    path = f"/v1/payments/{payment['id']}"
    assert hub.as_(payer, "GET", path).json() == payment
    assert hub.as_(payee, "GET", path).status_code == 200
    assert hub.as_(third, "GET", path).status_code == 404


def test_the_cap_refuses_exactly_and_nothing_moves(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 100)
    alice, bob = hub.wallet(payer, 1_000), hub.wallet(payee)
    assert hub.pay(alice, bob, 60).status_code == 201
    refused = hub.pay(alice, bob, 50)
    assert refused.status_code == 422 and refused.json()["code"] == "exceeds_net_debit_cap"
    assert (hub.balance(alice), hub.balance(bob)) == (940, 60)
    assert hub.pay(alice, bob, 40).status_code == 201
    assert hub.position(payer) == {"ledger": USD, "position": 100, "net_debit_cap": 100,
                                   "headroom": 0, "settlement_balance": 100}
    assert hub.cap(payer, 99).json()["code"] == "net_debit_cap_below_position"
    assert hub.funds(payer, 1, "out").json()["code"] == "settlement_below_position"


def test_concurrent_payments_never_pass_the_cap(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    wallets = [hub.wallet(payer, 1_000) for _ in range(10)]
    bob = hub.wallet(payee)
    with ThreadPoolExecutor(16) as pool:
        answers = list(pool.map(lambda n: hub.pay(wallets[n % 10], bob, 30).json()["result"],
                                range(50)))
    assert answers.count("ok") == 33 and answers.count("exceeds_net_debit_cap") == 17
    assert hub.position(payer)["position"] == 990
    assert hub.position(payee)["position"] == -990
    assert hub.balance(bob) == 990
    assert_balanced(hub.running.totals_at_rest())


def test_a_payment_is_idempotent(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    alice, bob = hub.wallet(payer, 500), hub.wallet(payee)
    assert hub.pay(alice, bob, 10, payment_id="p-" + payer).status_code == 201
    again = hub.pay(alice, bob, 10, payment_id="p-" + payer)
    assert again.status_code == 200 and again.json()["result"] == "exists"
    other = hub.pay(alice, bob, 11, payment_id="p-" + payer)
    assert other.status_code == 409 and other.json()["result"] == "exists_with_different_amount"
    assert hub.position(payer)["position"] == 10 and hub.balance(bob) == 10


def test_within_one_participant_no_position_moves(hub: Switch) -> None:
    bank = hub.participant()
    hub.ready(bank, 50)
    alice, carol = hub.wallet(bank, 500), hub.wallet(bank)
    assert hub.pay(alice, carol, 400).status_code == 201  # beyond the cap: no position moves
    assert hub.position(bank)["position"] == 0 and hub.balance(carol) == 400


def test_who_may_pay_from_which_wallet(hub: Switch) -> None:
    payer, payee = hub.participant(), hub.participant()
    hub.ready(payer, 1_000)
    hub.ready(payee, 1_000)
    alice, bob = hub.wallet(payer, 100), hub.wallet(payee, 100)
    stolen = hub.pay(bob, alice, 5, payer=payer)  # bob is the payee's
    assert stolen.status_code == 422 and stolen.json()["code"] == "payer_account_not_found"
    assert hub.pay(alice, "nope", 5).json()["code"] == "payee_account_not_found"
    assert hub.pay(alice, "house", 5).json()["code"] == "payee_not_enabled"
    assert hub.pay("house", alice, 5).json()["code"] == "payer_not_enabled"
    assert hub.as_(payer, "GET", f"/v1/participants/{payee}/positions").status_code == 404
    assert hub.as_(payer, "PUT", f"/v1/participants/{payer}/ledgers/USD/net-debit-cap",
                   {"net_debit_cap": 1}).status_code == 403
    assert (hub.balance(alice), hub.balance(bob)) == (100, 100)


def test_the_switch_layers_ids_are_its_own(hub: Switch) -> None:
    bank = hub.participant()
    hub.ready(bank, 1_000)
    position = f"hub:position:USD:{bank}:0"
    moved = hub.op("POST", "/v1/transfers", {"id": fresh("t"), "debit_account_id": "house",
                                             "credit_account_id": position, "amount": 5,
                                             "ledger": USD, "code": 1})
    assert moved.status_code == 422 and moved.json()["code"] == "id_reserved"
    made = hub.op("POST", "/v1/accounts", {"id": "hub:mine", "ledger": USD, "code": 1,
                                           "owner": "house"})
    assert made.status_code == 422 and made.json()["result"] == "id_reserved"
    named = hub.op("POST", "/v1/participants", {"id": "hub:x", "name": "x", "ledgers": [USD]})
    assert named.status_code == 422 and named.json()["code"] == "id_reserved"
    assert hub.position(bank)["headroom"] == 1_000
