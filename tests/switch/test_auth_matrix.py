"""The authorization matrix: every route x every kind of caller x own and others' objects,
generated from one table, against a real switch. Every answer must be the documented status
and code, and no list answer may hold another participant's object."""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from tests.conftest import RunningSwitch

USD = "USD"
# Callers: who sends the request, and with what Authorization header.
ANONYMOUS = ("nobody", "malformed", "other-scheme", "unknown-key", "wrong-secret", "revoked")
CALLERS = (*ANONYMOUS, "operator", "auditor", "bank-a", "bank-b", "disabled")

_counter = itertools.count()


def fresh(prefix: str) -> str:
    return f"{prefix}-{next(_counter)}"


class World:
    """The switch and what the table's rows name: keys, participants, accounts, transfers."""

    def __init__(self, switch: RunningSwitch) -> None:
        self.switch = switch
        self.tokens: dict[str, str] = {"operator": switch.operator_key}
        self.prepared = itertools.count()
        for participant in ("bank-a", "bank-b", "bank-c"):
            self.op("POST", "/v1/participants", {"id": participant, "name": participant,
                                                 "ledgers": [USD]}, expect=201)
            self.tokens[participant] = self.new_key({"role": "participant",
                                                     "participant_id": participant})
        self.tokens["disabled"] = self.tokens.pop("bank-c")
        self.tokens["auditor"] = self.new_key({"role": "auditor"})
        revoked = self.new_key({"role": "operator"})
        self.op("DELETE", f"/v1/keys/{_key_id(revoked)}", expect=200)
        self.tokens["revoked"] = revoked
        known = _key_id(self.tokens["bank-a"])
        self.tokens["wrong-secret"] = f"psk_{known}_{'x' * 43}"
        self.tokens["unknown-key"] = f"psk_{'0' * 16}_{'x' * 43}"
        limited = {"debits_must_not_exceed_credits": True, "history": True}
        for account_id, owner, flags in (("acc-a", "bank-a", limited), ("acc-a2", "bank-a",
                                                                         limited),
                                         ("acc-b", "bank-b", limited), ("acc-b2", "bank-b",
                                                                        limited),
                                         ("acc-c", "bank-c", limited), ("house", "hub", {})):
            self.op("POST", "/v1/accounts", {"id": account_id, "ledger": USD, "code": 1,
                                             "owner": owner, "flags": flags}, expect=201)
        for account_id in ("acc-a", "acc-b", "acc-c"):
            self.op("POST", "/v1/transfers", _transfer(f"fund-{account_id}", "house",
                                                       account_id, 1_000_000), expect=201)
        self.as_caller("bank-a", "POST", "/v1/transfers",
                       _transfer("t-aa", "acc-a", "acc-a2", 5), expect=201)
        self.as_caller("bank-b", "POST", "/v1/transfers",
                       _transfer("t-bb", "acc-b", "acc-b2", 5), expect=201)
        self.as_caller("bank-a", "POST", "/v1/transfers",
                       _transfer("t-ab", "acc-a", "acc-b", 5), expect=201)
        self.op("POST", "/v1/participants/bank-a/funds", {"id": "funds-a", "ledger": USD,
                                                          "direction": "in", "amount": 1_000},
                expect=201)
        self.op("PUT", "/v1/participants/bank-a/ledgers/USD/net-debit-cap",
                {"net_debit_cap": 1_000}, expect=200)
        for payment_id, payee in (("pay-ab", "acc-b"), ("pay-aa", "acc-a2")):
            self.as_caller("bank-a", "POST", "/v1/payments", _payment(payment_id, "acc-a",
                                                                      payee), expect=201)
        for n in range(60):  # prepared: what fulfil and abort rows act on (one each)
            self.as_caller("bank-a", "POST", "/v1/payments", {
                **_payment(f"prep-{n}", "acc-a", "acc-b"), "mode": "two_phase",
                "timeout_ms": 3_600_000}, expect=201)
        self.as_caller("bank-b", "POST", "/v1/parties", {"type": "IBAN",
                                                         "id": "DE89370400440532013000",
                                                         "account_id": "acc-b"}, expect=201)
        self.op("POST", "/v1/settlement-windows/close", {"ledger": USD}, expect=200)
        self.op("POST", "/v1/settlements", {"id": "stl-1", "ledger": USD,
                                            "window_ids": ["USD.1"]}, expect=201)
        # bank-a pays in first: the row settling bank-b is paid from it
        self.op("PUT", "/v1/settlements/stl-1/participants/bank-a", {"state": "settled"},
                expect=200)
        self.op("PUT", "/v1/participants/bank-c", {"status": "disabled"}, expect=200)

    def new_key(self, body: dict[str, Any]) -> str:
        return str(self.op("POST", "/v1/keys", body, expect=201).json()["secret"])

    def op(self, method: str, path: str, body: Any = None, expect: int = 200
           ) -> httpx.Response:
        return self.as_caller("operator", method, path, body, expect)

    def as_caller(self, caller: str, method: str, path: str, body: Any = None,
                  expect: int | None = None) -> httpx.Response:
        response = self.switch.client.request(method, self.switch.url + path,
                                              json=body, headers=self.headers(caller))
        if expect is not None:
            assert response.status_code == expect, (caller, method, path, response.text)
        return response

    def headers(self, caller: str) -> dict[str, str]:
        if caller == "nobody":
            return {"Authorization": ""}
        if caller == "malformed":
            return {"Authorization": "Bearer"}
        if caller == "other-scheme":
            return {"Authorization": f"Token {self.tokens['operator']}"}
        return {"Authorization": f"Bearer {self.tokens[caller]}"}


def _key_id(token: str) -> str:
    return token.split("_")[1]


def _transfer(transfer_id: str, debit: str, credit: str, amount: int) -> dict[str, Any]:
    return {"id": transfer_id, "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "ledger": USD, "code": 1}


def _payment(payment_id: str, payer: str, payee: str) -> dict[str, Any]:
    return {"id": payment_id, "payer_account_id": payer, "payee_account_id": payee,
            "amount": 1, "ledger": USD}


def _account(owner: str, flags: dict[str, bool] | None = None, ledger: str = USD
             ) -> Callable[[], dict[str, Any]]:
    return lambda: {"id": fresh("new"), "ledger": ledger, "code": 1, "owner": owner,
                    "flags": {"debits_must_not_exceed_credits": True} if flags is None
                    else flags}


def _pay(debit: str, credit: str) -> Callable[[], dict[str, Any]]:
    return lambda: _transfer(fresh("pay"), debit, credit, 1)


# ---- the table: (method, path, body, {caller or role group: status}) ----
# Groups: "staff" = operator and auditor; "parties" = bank-a and bank-b. A caller not named
# answers 401 when anonymous, 403 when disabled; `DENY` marks rows only the operator passes.

Row = tuple[str, str, Any, dict[str, int]]
OPEN = {"operator": 200, "auditor": 200, "bank-a": 200, "bank-b": 200}
STAFF = {"operator": 200, "auditor": 200, "bank-a": 403, "bank-b": 403}
OWN_A = {"operator": 200, "auditor": 200, "bank-a": 200, "bank-b": 404}
OWN_B = {"operator": 200, "auditor": 200, "bank-a": 404, "bank-b": 200}
HIDDEN = {"operator": 200, "auditor": 200, "bank-a": 404, "bank-b": 404}
MISSING = {"operator": 404, "auditor": 404, "bank-a": 404, "bank-b": 404}
OPERATOR_ONLY_201 = {"operator": 201, "auditor": 403, "bank-a": 403, "bank-b": 403}
OPERATOR_ONLY_200 = {"operator": 200, "auditor": 403, "bank-a": 403, "bank-b": 403}

ROWS: list[Row] = [
    # accounts
    ("GET", "/v1/accounts/acc-a", None, OWN_A),
    ("GET", "/v1/accounts/acc-b", None, OWN_B),
    ("GET", "/v1/accounts/house", None, HIDDEN),
    ("GET", "/v1/accounts/acc-c", None, HIDDEN),
    ("GET", "/v1/accounts/nope", None, MISSING),
    ("GET", "/v1/accounts/acc-a/transfers", None, OWN_A),
    ("GET", "/v1/accounts/acc-b/transfers", None, OWN_B),
    ("GET", "/v1/accounts/house/transfers", None, HIDDEN),
    ("GET", "/v1/accounts/acc-a/balances", None, OWN_A),
    ("GET", "/v1/accounts/acc-b/balances", None, OWN_B),
    ("GET", "/v1/accounts", None, OPEN),
    ("GET", "/v1/accounts?owner=bank-a", None, OPEN),
    ("GET", "/v1/accounts?owner=bank-b", None, OPEN),
    ("GET", "/v1/accounts?owner=hub", None, OPEN),
    ("POST", "/v1/accounts", _account("bank-a"), {"operator": 201, "auditor": 403,
                                                  "bank-a": 201, "bank-b": 403}),
    ("POST", "/v1/accounts", _account("bank-b"), {"operator": 201, "auditor": 403,
                                                  "bank-a": 403, "bank-b": 201}),
    ("POST", "/v1/accounts", _account("bank-a", {}), {"operator": 201, "auditor": 403,
                                                      "bank-a": 403, "bank-b": 403}),
    ("POST", "/v1/accounts", _account("bank-a", {"credits_must_not_exceed_debits": True}),
     {"operator": 201, "auditor": 403, "bank-a": 403, "bank-b": 403}),
    ("POST", "/v1/accounts", _account("bank-a", ledger="EUR"),
     {"operator": 201, "auditor": 403, "bank-a": 403, "bank-b": 403}),
    ("POST", "/v1/accounts", _account("hub", {}), OPERATOR_ONLY_201),
    # another's id: nothing of the stored account is told (was: 409 with its balances)
    ("POST", "/v1/accounts", {"id": "acc-b", "ledger": USD, "code": 9, "owner": "bank-a",
                              "flags": {"debits_must_not_exceed_credits": True}},
     {"operator": 409, "auditor": 403, "bank-a": 403, "bank-b": 403}),
    ("POST", "/v1/accounts", {"id": "acc-a", "ledger": USD, "code": 1, "owner": "bank-a",
                              "flags": {"debits_must_not_exceed_credits": True,
                                        "history": True}},
     {"operator": 200, "auditor": 403, "bank-a": 200, "bank-b": 403}),
    ("PUT", "/v1/accounts/acc-a/limits", {"overdraft": 10}, OPERATOR_ONLY_200),
    ("PUT", "/v1/accounts/acc-b/limits", {"overdraft": 10}, OPERATOR_ONLY_200),
    # transfers
    ("GET", "/v1/transfers/t-aa", None, OWN_A),
    ("GET", "/v1/transfers/t-bb", None, OWN_B),
    ("GET", "/v1/transfers/t-ab", None, OPEN),
    ("GET", "/v1/transfers/fund-acc-a", None, OWN_A),
    ("GET", "/v1/transfers/fund-acc-c", None, HIDDEN),
    ("GET", "/v1/transfers/nope", None, MISSING),
    ("GET", "/v1/transfers", None, OPEN),
    ("GET", "/v1/transfers?account_id=acc-b", None, OPEN),
    ("GET", "/v1/transfers?account_id=house", None, OPEN),
    ("POST", "/v1/transfers", _pay("acc-a", "acc-b"), {"operator": 201, "auditor": 403,
                                                       "bank-a": 201, "bank-b": 403}),
    ("POST", "/v1/transfers", _pay("acc-b", "acc-a"), {"operator": 201, "auditor": 403,
                                                       "bank-a": 403, "bank-b": 201}),
    ("POST", "/v1/transfers", _pay("house", "acc-a"), OPERATOR_ONLY_201),
    ("POST", "/v1/transfers", _pay("acc-a", "acc-c"), {"operator": 201, "auditor": 403,
                                                       "bank-a": 201, "bank-b": 403}),
    ("POST", "/v1/transfers", _pay("acc-c", "acc-a"), {"operator": 422, "auditor": 403,
                                                       "bank-a": 403, "bank-b": 403}),
    # the switch layer: payments, positions, caps, funds
    ("GET", "/v1/payments/pay-ab", None, OPEN),
    ("GET", "/v1/payments/pay-aa", None, OWN_A),
    ("GET", "/v1/payments/nope", None, MISSING),
    ("POST", "/v1/payments", lambda: _payment(fresh("pay"), "acc-a", "acc-b"),
     {"operator": 201, "auditor": 403, "bank-a": 201, "bank-b": 422}),
    ("POST", "/v1/payments/prep-{n}/fulfil", None,
     {"operator": 200, "auditor": 403, "bank-a": 404, "bank-b": 200}),
    ("POST", "/v1/payments/prep-{n}/abort", None,
     {"operator": 200, "auditor": 403, "bank-a": 404, "bank-b": 200}),
    ("POST", "/v1/payments/nope/fulfil", None,
     {"operator": 404, "auditor": 403, "bank-a": 404, "bank-b": 404}),
    # arrays answer 200 with each item's result (who may do what: tests/switch/test_hub.py)
    ("POST", "/v1/payments", lambda: [_payment(fresh("pay"), "acc-a", "acc-b")],
     {"operator": 200, "auditor": 403, "bank-a": 200, "bank-b": 200}),
    ("POST", "/v1/payments/fulfil", [{"id": "nope"}],
     {"operator": 200, "auditor": 403, "bank-a": 200, "bank-b": 200}),
    ("POST", "/v1/payments/abort", [{"id": "nope"}],
     {"operator": 200, "auditor": 403, "bank-a": 200, "bank-b": 200}),
    ("POST", "/v1/parties", lambda: {"type": "EMAIL", "id": f"{fresh('alias')}@example.com",
                                     "account_id": "acc-a"},
     {"operator": 201, "auditor": 403, "bank-a": 201, "bank-b": 422}),
    ("GET", "/v1/parties/IBAN/DE89370400440532013000", None, OPEN),
    ("GET", "/v1/parties/IBAN/DE00000000000000000000", None, MISSING),
    ("POST", "/v1/quotes", {"payer_account_id": "acc-a", "payee": {
        "type": "IBAN", "id": "DE89370400440532013000"}, "amount": 1, "amount_type": "SEND",
        "ledger": USD}, {"operator": 201, "auditor": 403, "bank-a": 201, "bank-b": 422}),
    ("GET", "/v1/hub/public-key", None, OPEN),
    ("GET", "/v1/settlement-windows/USD.1/report", None, OPEN),
    ("GET", "/v1/settlement-windows/USD.999999/report", None, MISSING),
    ("POST", "/v1/settlement-windows/close", {"ledger": USD, "id": "USD.1"}, OPERATOR_ONLY_200),
    ("POST", "/v1/settlements", {"id": "stl-1", "ledger": USD, "window_ids": ["USD.1"]},
     {"operator": 200, "auditor": 403, "bank-a": 403, "bank-b": 403}),
    ("GET", "/v1/settlements/stl-1", None, OPEN),
    ("GET", "/v1/settlements/nope", None, MISSING),
    ("PUT", "/v1/settlements/stl-1/participants/bank-b", {"state": "settled"},
     OPERATOR_ONLY_200),
    ("GET", "/v1/participants/bank-a/positions", None, OWN_A),
    ("GET", "/v1/participants/bank-b/positions", None, OWN_B),
    ("GET", "/v1/participants/nope/positions", None, MISSING),
    ("PUT", "/v1/participants/bank-a/ledgers/USD/net-debit-cap", {"net_debit_cap": 999},
     OPERATOR_ONLY_200),  # its cap came down to its balance when it settled (1 paid)
    ("POST", "/v1/participants/bank-b/funds",
     lambda: {"id": fresh("funds"), "ledger": USD, "direction": "in", "amount": 1},
     OPERATOR_ONLY_201),
    # everything else
    ("GET", "/v1/ledgers", None, STAFF),
    ("GET", "/v1/events?limit=1000", None, OPEN),
    ("GET", "/metrics", None, STAFF),
    ("GET", "/dashboard/data", None, STAFF),
    ("GET", "/v1/cluster", None, STAFF),
    ("POST", "/v1/cluster/slot-moves", {"slot": 0, "to_shard": 99},
     {"operator": 422, "auditor": 403, "bank-a": 403, "bank-b": 403}),  # no shard 99
    ("POST", "/v1/cluster/pins", {"account_id": "nope", "to_shard": 99},
     {"operator": 422, "auditor": 403, "bank-a": 403, "bank-b": 403}),
    ("GET", "/dashboard", None, STAFF),
    ("GET", "/v1/participants", None, OPEN),
    ("GET", "/v1/participants/bank-a", None, {"operator": 200, "auditor": 200, "bank-a": 200,
                                              "bank-b": 404}),
    ("GET", "/v1/participants/bank-b", None, OWN_B),
    ("GET", "/v1/participants/nope", None, MISSING),
    ("POST", "/v1/participants", lambda: {"id": fresh("psp"), "name": "n", "ledgers": [USD]},
     OPERATOR_ONLY_201),
    ("PUT", "/v1/participants/bank-b", {"status": "active"}, OPERATOR_ONLY_200),
    ("GET", "/v1/keys", None, STAFF),
    ("POST", "/v1/keys", {"role": "auditor"}, OPERATOR_ONLY_201),
    ("POST", "/v1/keys", {"role": "participant", "participant_id": "nope"},
     {"operator": 404, "auditor": 403, "bank-a": 403, "bank-b": 403}),
    ("DELETE", "/v1/keys/0000000000000000", None,
     {"operator": 404, "auditor": 403, "bank-a": 403, "bank-b": 403}),
]
CODES = {401: "unauthenticated", 403: "forbidden"}


def _cases() -> Iterator[Any]:
    for (method, path, body, statuses), caller in itertools.product(ROWS, CALLERS):
        if caller in ANONYMOUS:
            expected = 401
        elif caller == "disabled":
            expected = 403
        else:
            expected = statuses[caller]
        yield pytest.param(method, path, body, caller, expected,
                           id=f"{method} {path} as {caller}")


CASES = list(_cases())
assert len(CASES) >= 500, len(CASES)


@pytest.fixture(scope="module")
def world(shared_switch: RunningSwitch) -> World:
    return World(shared_switch)


@pytest.mark.parametrize("method,path,body,caller,expected", CASES)
def test_matrix(world: World, method: str, path: str, body: Any, caller: str,
                expected: int) -> None:
    sent = body() if callable(body) else body
    if "{n}" in path:  # each case its own prepared payment
        path = path.replace("{n}", str(next(world.prepared)))
    response = world.as_caller(caller, method, path, sent)
    assert response.status_code == expected, response.text
    if expected in CODES:
        assert response.json()["code"] == CODES[expected]
        assert "account" not in response.json() and "transfer" not in response.json()
    elif expected == 404:
        assert response.json()["code"].endswith("not_found") or \
            response.json()["code"] == "history_not_kept"
    if caller in ("bank-a", "bank-b") and expected == 200 and method == "GET":
        _assert_nothing_of_others(world, caller, response)
    if expected == 401:
        assert "WWW-Authenticate" in response.headers


def _assert_nothing_of_others(world: World, caller: str, response: httpx.Response) -> None:
    body = response.json()
    if not isinstance(body, dict):
        return
    for account in body.get("accounts", []):
        assert account["owner"] == caller, account
    mine = {"bank-a": {"acc-a", "acc-a2"}, "bank-b": {"acc-b", "acc-b2"}}[caller]
    for transfer in body.get("transfers", []):
        assert {transfer["debit_account_id"], transfer["credit_account_id"]} & mine \
            or transfer["participant_id"] == caller, transfer
    for participant in body.get("participants", []):  # a list, or a window's rows
        assert participant.get("id", participant.get("participant_id")) == caller
    for delivered in body.get("events", []):
        event = delivered["event"]
        shown = str(event)
        transfer_id = event.get("transfer_id") or event.get("pending_id") or (
            event["pending_ids"][0] if len(event.get("pending_ids", ())) == 1 else None)
        if transfer_id and not event.get("transfer"):  # naming only its transfer: as stored
            shown = str(world.op("GET", f"/v1/transfers/{transfer_id}").json())
        assert any(account in shown for account in mine) or caller in shown, delivered
