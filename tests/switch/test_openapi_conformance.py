"""Every operation of the OpenAPI document, driven by schemathesis against a real switch over
a real socket, with every check: no server error, every answer (status, headers, body) as
the document says, schema-valid requests accepted and invalid ones refused, 405 with
`Allow`. A bounded number of examples per operation here; many more with --run-slow.

Two things the document cannot say are kept out of generation, each tested elsewhere:
cursors are opaque strings only the server mints (a made-up one answers 400 cursor_invalid:
test_hardening_api.py), and the event stream never ends (test_events.py).
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from switch.api.app import create_app
from switch.api.openapi import openapi_document
from switch.cli.settings import load_settings
from switch.read.events_api import EVENTS_PATH
from tests.conftest import RunningSwitch, switch_settings

OPAQUE = ("cursor", "after")
# Settings are fixed at import, before pytest's options are parsed: read the command line.
EXAMPLES = 300 if "--run-slow" in sys.argv else 20

LABELS = [f"{method.upper()} {path}"
          for path, methods in openapi_document(load_settings(environ={})).get("paths", {}).items()
          for method in methods if path != EVENTS_PATH + "/stream"]


@pytest.fixture(scope="module")
def running(ray_session: None, tmp_path_factory: pytest.TempPathFactory
            ) -> Iterator[RunningSwitch]:
    switch = RunningSwitch(switch_settings(tmp_path_factory.mktemp("openapi") / "data")).start()
    accounts = [{"id": name, "ledger": "USD", "code": 1, "owner": "o",
                 "flags": {"history": True}} for name in ("a", "b")]
    assert switch.client.post(switch.url + "/v1/accounts", json=accounts).status_code == 200
    transfer = {"id": "t", "debit_account_id": "a", "credit_account_id": "b", "amount": 5,
                "ledger": "USD", "code": 1}
    assert switch.client.post(switch.url + "/v1/transfers", json=transfer).status_code == 201
    yield switch
    switch.stop()


@pytest.fixture(scope="module")
def api_schema(running: RunningSwitch) -> Any:
    # 422 is the documented answer to schema-valid input that a ledger rule refuses (an
    # account not found, no funds: TigerBeetle's result codes), so valid data may get it.
    config = schemathesis.config.SchemathesisConfig.from_dict({"checks": {
        "positive_data_acceptance": {"expected-statuses": [
            "2xx", "401", "403", "404", "409", "422", "429"]}}})
    return schemathesis.openapi.from_url(running.url + "/openapi.json", config=config)


def _digits(value: Any) -> Any:
    """JSON Schema counts 2.0 as the integer 2; the API refuses it on purpose (money is integer
    minor units: test_bad_input.py), so generated integers are sent as digits."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_digits(item) for item in value]
    if isinstance(value, dict):
        return {key: _digits(item) for key, item in value.items()}
    return value


def _kept_in_bounds(case: Any) -> None:
    """Cursors only the server mints are dropped (a made-up one is refused, rightly; the
    history cursor is a position: any digits will do), long-polls kept short, integers sent
    as digits."""
    if isinstance(case.body, (dict, list)):
        case.body = _digits(case.body)
    query = case.query or {}
    history = case.path.endswith("/transfers") and "{account_id}" in case.path
    if not history and query.get("cursor") not in (None, ""):
        query.pop("cursor")
    if query.get("after") not in (None, "", "0", "latest"):
        query.pop("after")
    if case.headers:
        case.headers.pop("Last-Event-ID", None)
    if isinstance(query.get("wait_ms"), int):
        query["wait_ms"] = min(query["wait_ms"], 20)


@pytest.mark.parametrize("caller", ["operator", "anonymous"])
@pytest.mark.parametrize("label", LABELS)
def test_every_operation_answers_as_documented(running: RunningSwitch, api_schema: Any,
                                               label: str, caller: str) -> None:
    """With the operator's key, and with none: then every route but the open ones answers
    401, as documented."""
    operation = api_schema.find_operation_by_label(label)
    assert operation is not None, label
    headers = {"Authorization": f"Bearer {running.operator_key}"} if caller == "operator" \
        else {}

    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(case=operation.as_strategy())
    def answers_as_documented(case: Any) -> None:
        _kept_in_bounds(case)
        case.call_and_validate(headers=headers)

    answers_as_documented()


def test_every_route_is_documented(running: RunningSwitch) -> None:
    documented = set(httpx.get(running.url + "/openapi.json").json()["paths"])
    assert running.router is not None
    app = create_app(running.router, running.settings)  # its own list of routes
    served = {getattr(route, "path", "") for route in app.routes}
    served = {path if path != "/dashboard/static" else "/dashboard/static/{file}"
              for path in served}
    assert served == documented, served ^ documented


def test_a_wrong_method_answers_405_naming_the_allowed_ones(running: RunningSwitch) -> None:
    response = running.client.delete(running.url + "/v1/transfers")
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    allowed = set(response.headers["allow"].replace(" ", "").split(","))
    assert allowed == {"GET", "HEAD", "POST"}, allowed  # both modules' methods of the path
