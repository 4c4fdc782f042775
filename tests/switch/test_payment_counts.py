"""The payments' counts on /metrics when a shard fails part of an array (a unit test of the
routes over a stand-in for the payments: a real switch's overload is not made at will).
Found by review: items made before the array was answered 429 went uncounted."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx
import orjson
from pydantic import TypeAdapter
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.types import Receive, Scope, Send

from actors.ledger.registry import OPERATOR
from switch.api.auth import Principal
from switch.api.errors import ApiError
from switch.hub.payments import PaymentTerms
from switch.hub.routes import hub_routes
from switch.routing.channel import Overloaded, ShardCallFailed


class _Payments:
    async def pay(self, terms: PaymentTerms, participant: str, key_id: str) -> Any:
        if terms.id == "busy":
            raise Overloaded("a shard's queue is full")
        if terms.id == "full":
            raise ShardCallFailed("storage_full", "its log is full")
        if terms.id == "quote":
            raise ApiError(422, "quote_invalid")
        return "ok", None


async def _parse_many(request: Request, one: TypeAdapter[Any], many: TypeAdapter[Any]
                      ) -> tuple[bool, list[Any]]:
    body = await request.body()
    return (True, many.validate_json(body)) if body.startswith(b"[") else (
        False, [one.validate_json(body)])


def _post(counted: list[tuple[str, list[str]]], bodies: list[Any]) -> list[int]:
    """Each body POSTed to /v1/payments as the operator, over ASGI: the statuses."""
    routes = hub_routes(None, _Payments(), None, _parse_many, 10, 1,  # type: ignore[arg-type]
                        lambda action, results: counted.append((action, list(results))))
    app = Starlette(routes=routes)

    async def as_operator(scope: Scope, receive: Receive, send: Send) -> None:
        scope["principal"] = Principal("k", OPERATOR, "")
        await app(scope, receive, send)

    async def post_all() -> list[int]:
        transport = httpx.ASGITransport(app=as_operator, raise_app_exceptions=False)
        async with httpx.AsyncClient(transport=transport, base_url="http://switch") as client:
            return [(await client.post("/v1/payments", content=orjson.dumps(body))).status_code
                    for body in bodies]
    return asyncio.run(post_all())


def _payment(payment_id: str) -> dict[str, Any]:
    return {"id": payment_id, "payer_account_id": "a", "payee_account_id": "b", "amount": 1,
            "ledger": "USD"}


def test_every_item_is_counted_also_when_the_array_is_answered_429() -> None:
    counted: list[tuple[str, list[str]]] = []
    statuses = _post(counted, [[_payment(i) for i in ("made", "busy", "full", "quote")]])
    assert statuses == [500]  # (no error handlers here; the switch answers it 429)
    assert counted == [("pay", ["ok", "overloaded", "storage_full", "quote_invalid"])]


def test_one_object_failing_is_counted() -> None:
    counted: list[tuple[str, list[str]]] = []
    _post(counted, [_payment(payment_id) for payment_id in ("full", "busy", "quote", "made")])
    assert counted == [("pay", ["storage_full"]), ("pay", ["overloaded"]),
                       ("pay", ["quote_invalid"]), ("pay", ["ok"])]
