"""A reference model of the switch layer under hypothesis, against a real switch (real Ray,
LMDB and HTTP; the router over three shards): payments immediate and two-phase, fees, net
debit caps, funds in and out. After every step, each wallet, position, cap, headroom and
settlement balance is what the model says, and the positions sum to zero."""

from __future__ import annotations

import itertools
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tests.conftest import RunningSwitch, switch_settings

LEDGER = "EUR"
FEE = {"fixed": 2, "basis_points": 500, "min": 3, "max": 40}  # 2 + 5%, from 3 to 40
BANKS = 3
WALLETS_PER_BANK = 2
_ids = itertools.count()


def fee_of(amount: int) -> int:
    return min(max(FEE["fixed"] + amount * FEE["basis_points"] // 10_000, FEE["min"]),
               FEE["max"])


@dataclass
class Bank:
    id: str
    liquidity: int = 0
    cap: int = 0
    position: int = 0  # committed
    reserved: int = 0  # prepared payments not yet fulfilled or aborted

    @property
    def headroom(self) -> int:
        return self.cap - self.position - self.reserved


@dataclass
class Wallet:
    id: str
    bank: int
    balance: int = 0
    held: int = 0  # prepared payments' amounts and fees


@dataclass
class Prepared:
    id: str
    payer: int
    payee: int
    amount: int
    fee: int


@dataclass
class World:
    banks: list[Bank] = field(default_factory=list)
    wallets: list[Wallet] = field(default_factory=list)
    prepared: list[Prepared] = field(default_factory=list)
    fees: int = 0


@pytest.fixture(scope="module")
def running(ray_session: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningSwitch]:
    switch = RunningSwitch(switch_settings(tmp_path_factory.mktemp("hub-model") / "data",
                                           **{"hub.fees": {LEDGER: [FEE]}})).start()
    switch.post("/v1/accounts", {"id": "cash", "ledger": LEDGER, "code": 1, "owner": "op"})
    yield switch
    switch.stop()


class SwitchLayer(RuleBasedStateMachine):
    switch: RunningSwitch

    def call(self, method: str, path: str, body: Any = None) -> httpx.Response:
        return self.switch.client.request(method, self.switch.url + path, json=body)

    @initialize()
    def participants(self) -> None:
        self.world = World()
        for n in range(BANKS):
            bank = f"m{next(_ids)}"
            assert self.call("POST", "/v1/participants", {"id": bank, "name": bank,
                                                          "ledgers": [LEDGER]}).status_code == 201
            self.world.banks.append(Bank(bank))
            for _ in range(WALLETS_PER_BANK):
                wallet = f"{bank}-w{len(self.world.wallets)}"
                self.call("POST", "/v1/accounts", {
                    "id": wallet, "ledger": LEDGER, "code": 1, "owner": bank,
                    "flags": {"debits_must_not_exceed_credits": True}})
                self.call("POST", "/v1/transfers", {
                    "id": f"load-{wallet}", "debit_account_id": "cash",
                    "credit_account_id": wallet, "amount": 1_000, "ledger": LEDGER, "code": 1})
                self.world.wallets.append(Wallet(wallet, n, balance=1_000))
        self.fees_before = self.switch.account(f"hub:fees:{LEDGER}")["credits_posted"]

    # ---- operator ----

    @rule(bank=st.integers(0, BANKS - 1), amount=st.integers(1, 800),
          out=st.booleans())
    def funds(self, bank: int, amount: int, out: bool) -> None:
        model = self.world.banks[bank]
        answer = self.call("POST", f"/v1/participants/{model.id}/funds", {
            "id": f"f{next(_ids)}", "ledger": LEDGER, "direction": "out" if out else "in",
            "amount": amount})
        if not out:
            expected = "ok"
            model.liquidity += amount
        elif model.liquidity - amount < model.position + model.reserved:
            expected = "settlement_below_position"
        elif model.liquidity - amount < model.cap:
            expected = "settlement_below_net_debit_cap"
        else:
            expected = "ok"
            model.liquidity -= amount
        assert _code(answer) == expected, answer.text

    @rule(bank=st.integers(0, BANKS - 1), cap=st.integers(0, 1_500))
    def set_cap(self, bank: int, cap: int) -> None:
        model = self.world.banks[bank]
        answer = self.call("PUT", f"/v1/participants/{model.id}/ledgers/{LEDGER}/net-debit-cap",
                           {"net_debit_cap": cap})
        if cap > model.liquidity:
            expected = "net_debit_cap_above_settlement"
        elif cap == model.cap:
            expected = "unchanged"
        elif cap < model.position + model.reserved:
            expected = "net_debit_cap_below_position"
        else:
            expected = "ok"
            model.cap = cap
        assert _code(answer) == expected, answer.text

    # ---- payments ----

    @rule(payer=st.integers(0, BANKS * WALLETS_PER_BANK - 1),
          payee=st.integers(0, BANKS * WALLETS_PER_BANK - 1), amount=st.integers(1, 600),
          two_phase=st.booleans())
    def pay(self, payer: int, payee: int, amount: int, two_phase: bool) -> None:
        if payer == payee:
            return
        payment_id = f"pay{next(_ids)}"
        body: dict[str, Any] = {"id": payment_id, "payer_account_id": self.world.wallets[payer].id,
                                "payee_account_id": self.world.wallets[payee].id,
                                "amount": amount, "ledger": LEDGER}
        if two_phase:
            body.update(mode="two_phase", timeout_ms=3_600_000)
        answer = self.call("POST", "/v1/payments", body)
        fee = fee_of(amount)
        source, target = self.world.wallets[payer], self.world.wallets[payee]
        bank = self.world.banks[source.bank]
        crosses = source.bank != target.bank
        if source.balance - source.held < amount + fee:
            expected = "exceeds_credits"
        elif crosses and bank.headroom < amount:
            expected = "exceeds_net_debit_cap"
        else:
            expected = "ok"
        assert _code(answer) == expected, (answer.text, source, bank)
        if expected != "ok":
            return
        if two_phase:
            source.held += amount + fee
            if crosses:
                bank.reserved += amount
            self.world.prepared.append(Prepared(payment_id, payer, payee, amount, fee))
        else:
            self._commit(payer, payee, amount, fee)

    @precondition(lambda self: bool(self.world.prepared))
    @rule(index=st.integers(0, 100), fulfil=st.booleans())
    def resolve(self, index: int, fulfil: bool) -> None:
        payment = self.world.prepared.pop(index % len(self.world.prepared))
        answer = self.call("POST", f"/v1/payments/{payment.id}/"
                                   f"{'fulfil' if fulfil else 'abort'}")
        assert answer.status_code == 200 and answer.json()["payment"]["state"] == (
            "committed" if fulfil else "aborted"), answer.text
        source, target = self.world.wallets[payment.payer], self.world.wallets[payment.payee]
        source.held -= payment.amount + payment.fee
        if source.bank != target.bank:
            self.world.banks[source.bank].reserved -= payment.amount
        if fulfil:
            self._commit(payment.payer, payment.payee, payment.amount, payment.fee)

    def _commit(self, payer: int, payee: int, amount: int, fee: int) -> None:
        source, target = self.world.wallets[payer], self.world.wallets[payee]
        source.balance -= amount + fee
        target.balance += amount
        self.world.fees += fee
        if source.bank != target.bank:
            self.world.banks[source.bank].position += amount
            self.world.banks[target.bank].position -= amount

    # ---- what must hold ----

    @invariant()
    def books_agree(self) -> None:
        if not hasattr(self, "world"):
            return
        for wallet in self.world.wallets:
            account = self.switch.account(wallet.id)
            assert account["credits_posted"] - account["debits_posted"] == wallet.balance, wallet
            assert account["debits_pending"] == wallet.held, wallet
        total = 0
        for bank in self.world.banks:
            answer = self.call("GET", f"/v1/participants/{bank.id}/positions").json()
            (shown,) = answer["positions"]
            assert shown == {"ledger": LEDGER, "position": bank.position + bank.reserved,
                             "net_debit_cap": bank.cap, "headroom": bank.headroom,
                             "settlement_balance": bank.liquidity,
                             "alarm_percent": 80}, (shown, bank)
            total += bank.position
        assert total == 0
        fees = self.switch.account(f"hub:fees:{LEDGER}")["credits_posted"] - self.fees_before
        assert fees == self.world.fees


def _code(answer: httpx.Response) -> str:
    body = answer.json()
    return str(body.get("code") or body.get("result"))


def test_the_switch_layer_follows_its_model(running: RunningSwitch) -> None:
    SwitchLayer.switch = running
    runner = SwitchLayer.TestCase()
    runner.settings = settings(max_examples=10, stateful_step_count=25, deadline=None,
                               suppress_health_check=list(HealthCheck))
    runner.runTest()
