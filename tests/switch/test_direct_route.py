"""`POST /v1/transfers` bypasses Starlette's router (DirectRoute): its failures get the same
codes as on every route (a 500 here also carries its request id: Starlette's own 500s are
answered outside the middleware that adds it), and the other methods on the path still go
to Starlette."""

from __future__ import annotations

from typing import Any

import pytest

from switch.routing.channel import Overloaded, ShardUnavailable
from tests.conftest import RunningSwitch
from tests.switch.test_api import transfer


@pytest.mark.parametrize(("raised", "status", "code"), [
    (RuntimeError("a bug"), 500, "internal_error"),
    (Overloaded("shard 0 queue is full"), 429, "overloaded"),
    (ShardUnavailable("shard 0 is unavailable"), 503, "shard_unavailable"),
])
def test_a_failure_is_answered_as_on_every_route(switch: RunningSwitch, raised: Exception,
                                                 status: int, code: str,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    async def failing(*args: Any) -> Any:
        raise raised

    assert switch.router is not None
    monkeypatch.setattr(switch.router, "create_transfers", failing)
    response = switch.post("/v1/transfers", transfer("direct-1", "a", "b", 1))
    assert response.status_code == status and response.json()["code"] == code, response.text
    assert ("retry-after" in response.headers) == (status != 500)
    assert response.headers["x-request-id"]
    metrics = switch.get("/metrics").text
    assert f'payswitch_http_requests_total{{route="post_transfers",status="{status}"}}' \
        in metrics


def test_other_methods_on_the_path_are_starlettes(switch: RunningSwitch) -> None:
    response = switch.client.put(switch.url + "/v1/transfers", json={})
    assert response.status_code == 405 and response.json()["code"] == "method_not_allowed"
    assert set(response.headers["allow"].replace(" ", "").split(",")) == {"GET", "HEAD", "POST"}
    assert switch.get("/v1/transfers?limit=1").status_code == 200


def test_payments_take_the_direct_route_too(switch: RunningSwitch) -> None:
    refused = switch.post("/v1/payments", {"id": "p1"})  # no quote, no fields: 400
    assert refused.status_code == 400 and refused.json()["code"] == "validation_error"
    assert refused.headers["x-request-id"]
    metrics = switch.get("/metrics").text
    assert 'payswitch_http_requests_total{route="post_payment",status="400"}' in metrics
    other = switch.client.get(switch.url + "/v1/payments")  # other methods: Starlette's
    assert other.status_code == 405 and other.headers["allow"] == "POST"
