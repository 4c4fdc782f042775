"""Settlement windows and settlements over HTTP: close a window (operator), read a window's
report; make a settlement of closed windows and settle each participant (operator), read a
settlement. The operator and auditors read every row; a participant its own. docs/SWITCH.md."""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from actors.ledger.registry import OPERATOR
from switch.api.auth import principal_of, require
from switch.api.errors import ApiError, json_response
from switch.api.params import path_id
from switch.api.registry_api import Parse
from switch.hub.schemas import SETTLED, SETTLEMENT, WINDOW_CLOSE
from switch.hub.settlements import Settlements, settlement_json
from switch.hub.window_model import parse_window_id, window_id
from switch.hub.windows import Report, Windows


def report_json(report: Report, participant_id: str | None) -> dict[str, Any]:
    """`participant_id`: a participant's view (its row only); None: every row."""
    rows = [row for row in report.rows if participant_id in (None, row.participant_id)]
    return {"id": window_id(report.ledger, report.number), "ledger": report.ledger,
            "state": report.state, "opened_at": report.opened_at,
            "closed_at": report.closed_at,
            "participants": [{"participant_id": row.participant_id, "sent": row.sent,
                              "received": row.received, "fees": row.fees, "net": row.net}
                             for row in rows],
            "payments": report.payments, "merkle_root": report.root,
            "signature": report.signature}


def window_routes(windows: Windows, settlements: Settlements, parse: Parse
                  ) -> list[BaseRoute]:
    async def close(request: Request) -> Response:
        principal = require(request, OPERATOR)
        body = await parse(request, WINDOW_CLOSE)
        if not windows.hub.known_ledger(body.ledger):
            raise ApiError(404, "window_not_found")
        number = await windows.open_window(body.ledger)
        if body.id is not None:
            parsed = parse_window_id(body.id)
            if parsed is None or parsed[0] != body.ledger:
                raise ApiError(404, "window_not_found")
            number = parsed[1]
        result = await windows.close(body.ledger, number, principal.key_id)
        return json_response({"result": result, "closed": window_id(body.ledger, number),
                              "open": window_id(body.ledger,
                                                await windows.open_window(body.ledger))})

    async def report(request: Request) -> Response:
        principal = principal_of(request)
        parsed = parse_window_id(request.path_params["window_id"])
        if parsed is None or not windows.hub.known_ledger(parsed[0]) or (
                principal.is_participant
                and not windows.hub.enabled(principal.participant_id, parsed[0])):
            raise ApiError(404, "window_not_found")
        found = await windows.report(*parsed)
        return json_response(report_json(found, principal.participant_id
                                         if principal.is_participant else None))

    async def create_settlement(request: Request) -> Response:
        principal = require(request, OPERATOR)
        body = await parse(request, SETTLEMENT)
        numbers = []
        for text in body.window_ids:
            parsed = parse_window_id(text)
            if parsed is None or parsed[0] != body.ledger or not windows.hub.known_ledger(
                    body.ledger):
                raise ApiError(404, "window_not_found")
            numbers.append(parsed[1])
        result = await settlements.create(body.id, body.ledger, numbers, principal.key_id)
        status = {"ok": 201, "exists": 200}.get(result, 409 if "exists" in result or
                                               "other" in result else 422)
        if status >= 400:
            raise ApiError(status, result)
        found = await settlements.get(body.id)
        assert found is not None
        return json_response({"result": result, "settlement": settlement_json(found)}, status)

    async def get_settlement(request: Request) -> Response:
        principal = principal_of(request)
        found = await settlements.get(path_id(request, "settlement_id"))
        if found is None or (principal.is_participant and not windows.hub.enabled(
                principal.participant_id, found.ledger)):
            raise ApiError(404, "settlement_not_found")
        return json_response(settlement_json(found, principal.participant_id
                                             if principal.is_participant else None))

    async def settle(request: Request) -> Response:
        principal = require(request, OPERATOR)
        settlement = path_id(request, "settlement_id")
        await parse(request, SETTLED)
        result = await settlements.settle(settlement, path_id(request, "participant_id"),
                                          principal.key_id)
        if result not in ("ok", "exists"):
            raise ApiError(422, result)
        found = await settlements.get(settlement)
        assert found is not None
        return json_response({"result": result, "settlement": settlement_json(found)})

    return [
        Route("/v1/settlements", create_settlement, methods=["POST"]),
        Route("/v1/settlements/{settlement_id}", get_settlement, methods=["GET"]),
        Route("/v1/settlements/{settlement_id}/participants/{participant_id}", settle,
              methods=["PUT"]),
        Route("/v1/settlement-windows/close", close, methods=["POST"]),
        Route("/v1/settlement-windows/{window_id}/report", report, methods=["GET"]),
    ]
