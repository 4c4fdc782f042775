"""Bad input: each case answers a clear 4xx with a stable code, and changes nothing."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.conftest import RunningSwitch
from tests.switch.test_api import open_accounts, transfer

GOOD = transfer("bad-1", "bank", "alice", 100)


def with_field(**changes: Any) -> dict[str, Any]:
    return {**GOOD, **changes}


def without(field: str) -> dict[str, Any]:
    return {k: v for k, v in GOOD.items() if k != field}


# (name, body bytes or JSON value, content type, status, code)
CASES: list[tuple[str, Any, str, int, str]] = [
    ("float amount", with_field(amount=100.0), "application/json", 400, "validation_error"),
    ("fractional amount", with_field(amount=10.5), "application/json", 400, "validation_error"),
    ("numeric string amount", with_field(amount="100"), "application/json", 400,
     "validation_error"),
    ("boolean amount", with_field(amount=True), "application/json", 400, "validation_error"),
    ("null amount", with_field(amount=None), "application/json", 400, "validation_error"),
    ("negative amount", with_field(amount=-1), "application/json", 422, "amount_invalid"),
    ("zero amount", with_field(amount=0), "application/json", 422, "amount_invalid"),
    ("amount 2^63", with_field(amount=2**63), "application/json", 422, "amount_invalid"),
    ("amount 2^64", with_field(amount=2**64), "application/json", 422, "amount_invalid"),
    ("amount 2^70", b'{"id":"bad-1","debit_account_id":"bank","credit_account_id":"alice",'
     b'"amount":1180591620717411303424,"ledger":"USD","code":1}', "application/json", 422,
     "amount_invalid"),
    ("missing field", without("amount"), "application/json", 400, "validation_error"),
    ("unknown field", with_field(currency="USD"), "application/json", 400, "validation_error"),
    ("code as string", with_field(code="1"), "application/json", 400, "validation_error"),
    ("negative code", with_field(code=-1), "application/json", 400, "validation_error"),
    ("id too long", with_field(id="x" * 65), "application/json", 400, "validation_error"),
    ("id with a space", with_field(id="bad 1"), "application/json", 400, "validation_error"),
    ("id with a slash", with_field(id="bad/1"), "application/json", 400, "validation_error"),
    ("empty id", with_field(id=""), "application/json", 400, "validation_error"),
    ("ledger lowercase", with_field(ledger="usd"), "application/json", 400, "validation_error"),
    ("unknown ledger", with_field(ledger="XYZ"), "application/json", 422, "ledger_mismatch"),
    ("user_data too long", with_field(user_data="u" * 129), "application/json", 400,
     "validation_error"),
    ("empty batch", [], "application/json", 400, "batch_empty"),
    ("batch over the maximum", [with_field(id=f"bad-{i}") for i in range(8191)],
     "application/json", 400, "batch_too_large"),
    ("one bad item sinks a batch", [GOOD, with_field(id="bad-2", amount="5")],
     "application/json", 400, "validation_error"),
    ("invalid JSON", b'{"id": "bad-1", ', "application/json", 400, "invalid_json"),
    ("empty body", b"", "application/json", 400, "invalid_json"),
    ("a JSON string", b'"transfer"', "application/json", 400, "validation_error"),
    ("text/plain", GOOD, "text/plain", 415, "unsupported_media_type"),
    ("form", GOOD, "application/x-www-form-urlencoded", 415, "unsupported_media_type"),
    ("no content type", GOOD, "", 415, "unsupported_media_type"),
    ("body over the limit", b"[" + b" " * (4 * 1024 * 1024) + b"]", "application/json", 413,
     "body_too_large"),
]


@pytest.mark.parametrize(("name", "body", "content_type", "status", "code"), CASES,
                         ids=[c[0] for c in CASES])
def test_bad_transfer_changes_nothing(shared_switch: RunningSwitch, name: str, body: Any,
                                      content_type: str, status: int, code: str) -> None:
    open_accounts(shared_switch, "alice")
    before = (shared_switch.account("bank"), shared_switch.account("alice"),
              shared_switch.totals())
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"content-type": content_type} if content_type else {}
    response = shared_switch.client.post(shared_switch.url + "/v1/transfers", content=raw,
                                         headers=headers)
    assert response.status_code == status, response.text
    error = response.json()
    assert error["code"] == code and error["message"]
    after = (shared_switch.account("bank"), shared_switch.account("alice"), shared_switch.totals())
    assert after == before
    assert shared_switch.get("/v1/transfers/bad-1").status_code == 404


ACCOUNT_CASES: list[tuple[str, Any, int, str]] = [
    ("flags as list", {"id": "x", "ledger": "USD", "code": 1, "owner": "o",
                       "flags": ["closed"]}, 400, "validation_error"),
    ("unknown flag", {"id": "x", "ledger": "USD", "code": 1, "owner": "o",
                      "flags": {"frozen": True}}, 400, "validation_error"),
    ("flag as 1", {"id": "x", "ledger": "USD", "code": 1, "owner": "o",
                   "flags": {"closed": 1}}, 400, "validation_error"),
    ("missing owner", {"id": "x", "ledger": "USD", "code": 1}, 400, "validation_error"),
    ("float code", {"id": "x", "ledger": "USD", "code": 1.0, "owner": "o"}, 400,
     "validation_error"),
    ("code too large", {"id": "x", "ledger": "USD", "code": 2**32, "owner": "o"}, 400,
     "validation_error"),
]


@pytest.mark.parametrize(("name", "body", "status", "code"), ACCOUNT_CASES,
                         ids=[c[0] for c in ACCOUNT_CASES])
def test_bad_account_changes_nothing(shared_switch: RunningSwitch, name: str, body: Any,
                                     status: int, code: str) -> None:
    response = shared_switch.post("/v1/accounts", body)
    assert response.status_code == status, response.text
    assert response.json()["code"] == code
    assert shared_switch.get("/v1/accounts/x").status_code == 404


@pytest.mark.parametrize(("path", "status", "code"), [
    ("/v1/accounts/has%20space", 400, "id_invalid"),
    ("/v1/accounts/" + "x" * 65, 400, "id_invalid"),
    ("/v1/transfers/%00", 400, "id_invalid"),
    ("/v1/accounts/a%0A", 400, "id_invalid"),  # Python's $ also matches before a final \n
    ("/v1/transfers/t%0A", 400, "id_invalid"),
    ("/v1/accounts?owner=o%0A", 400, "query_invalid"),
    ("/v1/nothing", 404, "not_found"),
])
def test_bad_paths(shared_switch: RunningSwitch, path: str, status: int, code: str) -> None:
    response = shared_switch.get(path)
    assert response.status_code == status and response.json()["code"] == code


def test_wrong_method(shared_switch: RunningSwitch) -> None:
    response = shared_switch.client.delete(shared_switch.url + "/v1/accounts/alice")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
