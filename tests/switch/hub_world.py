"""A switch with the switch layer's helpers (participants with keys, wallets, funds, caps,
payments), for the switch layer's tests; the `hub` fixture is in tests/switch/conftest.py."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from switch.hub.signing import signing_key
from tests.conftest import RunningSwitch, switch_settings

USD = "USD"
GROSS = "GBP"  # the fixture's gross ledger: payments settle at once
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

    def participant(self, prefix: str = "bank", ledgers: tuple[str, ...] = (USD,)) -> str:
        participant_id = fresh(prefix)
        created = self.op("POST", "/v1/participants", {"id": participant_id,
                                                       "name": participant_id,
                                                       "ledgers": list(ledgers)})
        assert created.status_code == 201, created.text
        key = self.op("POST", "/v1/keys", {"role": "participant",
                                           "participant_id": participant_id})
        self.keys[participant_id] = key.json()["secret"]
        return participant_id

    def wallet(self, owner: str, balance: int = 0, ledger: str = USD) -> str:
        wallet_id = fresh(f"w-{owner}")
        assert self.op("POST", "/v1/accounts", {
            "id": wallet_id, "ledger": ledger, "code": 1, "owner": owner,
            "flags": {"debits_must_not_exceed_credits": True}}).status_code == 201
        if balance:
            house = self.house(ledger)
            assert self.op("POST", "/v1/transfers", {
                "id": fresh("fund"), "debit_account_id": house, "credit_account_id": wallet_id,
                "amount": balance, "ledger": ledger, "code": 1}).status_code == 201
        return wallet_id

    def house(self, ledger: str) -> str:
        house = "house" if ledger == USD else f"house-{ledger}"
        self.op("POST", "/v1/accounts", {"id": house, "ledger": ledger, "code": 1,
                                         "owner": "house"})
        return house

    def position(self, participant_id: str, ledger: str = USD) -> dict[str, Any]:
        answer = self.op("GET", f"/v1/participants/{participant_id}/positions")
        assert answer.status_code == 200, answer.text
        (position,) = [p for p in answer.json()["positions"] if p["ledger"] == ledger]
        return dict(position)

    def funds(self, participant_id: str, amount: int, direction: str = "in",
              funds_id: str | None = None, ledger: str = USD) -> httpx.Response:
        return self.op("POST", f"/v1/participants/{participant_id}/funds",
                       {"id": funds_id or fresh("funds"), "ledger": ledger,
                        "direction": direction, "amount": amount})

    def cap(self, participant_id: str, cap: int, ledger: str = USD) -> httpx.Response:
        return self.op("PUT", f"/v1/participants/{participant_id}/ledgers/{ledger}/"
                       "net-debit-cap", {"net_debit_cap": cap})

    def ready(self, participant_id: str, cap: int, liquidity: int | None = None,
              ledger: str = USD) -> None:
        assert self.funds(participant_id, liquidity or cap, ledger=ledger).status_code == 201
        assert self.cap(participant_id, cap, ledger).status_code == 200

    def pay(self, payer_wallet: str, payee_wallet: str, amount: int, payer: str | None = None,
            payment_id: str | None = None, ledger: str = USD, **more: Any) -> httpx.Response:
        body = {"id": payment_id or fresh("pay"), "payer_account_id": payer_wallet,
                "payee_account_id": payee_wallet, "amount": amount, "ledger": ledger, **more}
        return self.post_payment(body, payer)

    def post_payment(self, body: dict[str, Any], payer: str | None = None) -> httpx.Response:
        return (self.op("POST", "/v1/payments", body) if payer is None
                else self.as_(payer, "POST", "/v1/payments", body))

    def key(self) -> Ed25519PrivateKey:
        return signing_key(Path(self.running.settings.data.dir))

    def balance(self, account_id: str) -> int:
        account = self.running.account(account_id)
        return int(account["credits_posted"] - account["debits_posted"])


FEES = {USD: [{"fixed": 0, "basis_points": 0}],  # the ledger's own: none
        "EUR": [{"fixed": 10, "basis_points": 100, "min": 15, "max": 500}]}


def hub_switch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Switch]:
    running = RunningSwitch(switch_settings(tmp_path_factory.mktemp("hub") / "data",
                                            **{"hub.fees": FEES,
                                               "hub.gross_ledgers": [GROSS],
                                               "auth.accounts_per_participant_max": 8}
                                            )).start()
    yield Switch(running)
    running.stop()
