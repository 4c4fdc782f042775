"""The switch layer's HTTP routes: payments, positions, net debit caps and funds
(docs/API.md, docs/SWITCH.md). Who may do what:
- payments: the operator, or a participant from its own wallets (auditors only read);
- a participant reads its own positions and payments (payer or payee); the operator and
  auditors read all; caps and funds are the operator's.
An object a participant may not see answers as if it did not exist (404).
"""

from __future__ import annotations

from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from actors.ledger.registry import AUDITOR, OPERATOR, PARTICIPANT
from switch.api.auth import Principal, principal_of, require
from switch.api.errors import MESSAGES, ApiError, json_response, status_of_result
from switch.api.params import path_id
from switch.api.registry_api import Parse
from switch.hub.model import Payment, Position
from switch.hub.schemas import FUNDS, NET_DEBIT_CAP, PAYMENT
from switch.hub.service import Hub, PaymentView


def position_json(position: Position) -> dict[str, Any]:
    return {"ledger": position.ledger, "position": position.position,
            "net_debit_cap": position.net_debit_cap, "headroom": position.headroom,
            "settlement_balance": position.settlement_balance}


def payment_json(payment: Payment, timestamp: int | None) -> dict[str, Any]:
    return {"id": payment.id, "payer_account_id": payment.payer_account_id,
            "payee_account_id": payment.payee_account_id, "amount": payment.amount,
            "ledger": payment.ledger, "payer_participant_id": payment.payer_participant,
            "payee_participant_id": payment.payee_participant, "state": "committed",
            "timestamp": timestamp}


def hub_routes(hub: Hub, parse: Parse) -> list[BaseRoute]:
    async def post_payment(request: Request) -> Response:
        principal = require(request, OPERATOR, PARTICIPANT)
        body = await parse(request, PAYMENT)
        result = await hub.pay(body.id, body.payer_account_id,
                                        body.payee_account_id, body.amount, body.ledger,
                                        principal.participant_id, principal.key_id)
        status = status_of_result(result)
        shown = None
        if status < 400 or status == 409:
            view = await hub.payment(body.id)
            if view is not None and _sees(principal, view):  # a 409 tells no one else's
                shown = payment_json(view.payment, view.timestamp)
        answer: dict[str, Any] = {"result": result, "payment": shown}
        if status >= 400:
            answer.update(code=result, message=MESSAGES.get(result, result))
        return json_response(answer, status)

    async def get_payment(request: Request) -> Response:
        principal = principal_of(request)
        view = await hub.payment(path_id(request, "payment_id"))
        if view is None or not _sees(principal, view):
            raise ApiError(404, "payment_not_found")
        return json_response(payment_json(view.payment, view.timestamp))

    async def get_positions(request: Request) -> Response:
        principal = principal_of(request)
        participant_id = _readable_participant(request, principal)
        participant = hub.keyring.participants[participant_id]
        positions = [position_json(await hub.position(participant_id, ledger))
                     for ledger in participant.ledgers]
        return json_response({"participant_id": participant_id, "positions": positions})

    async def put_cap(request: Request) -> Response:
        principal = require(request, OPERATOR)
        participant_id = _readable_participant(request, principal)
        ledger = path_id(request, "ledger")
        body = await parse(request, NET_DEBIT_CAP)
        result, position = await hub.set_cap(participant_id, ledger, body.net_debit_cap,
                                             principal.key_id)
        return json_response({"result": result, "position": position_json(position)})

    async def post_funds(request: Request) -> Response:
        principal = require(request, OPERATOR)
        participant_id = _readable_participant(request, principal)
        body = await parse(request, FUNDS)
        if not hub.enabled(participant_id, body.ledger):
            raise ApiError(404, "ledger_not_enabled")
        result, position = await hub.move_funds(participant_id, body.ledger, body.id,
                                                body.direction, body.amount,
                                                principal.key_id)
        status = status_of_result(result)
        if status >= 400 and status != 409:
            raise ApiError(status, result)
        return json_response({"result": result, "position": position_json(position)},
                              status)

    def _readable_participant(request: Request, principal: Principal) -> str:
        participant_id = path_id(request, "participant_id")
        if participant_id not in hub.keyring.participants or (
                principal.is_participant and principal.participant_id != participant_id):
            raise ApiError(404, "participant_not_found")
        return participant_id

    def _sees(principal: Principal, view: PaymentView) -> bool:
        if principal.role in (OPERATOR, AUDITOR):
            return True
        return principal.participant_id in (view.payment.payer_participant,
                                            view.payment.payee_participant)

    return [
        Route("/v1/payments", post_payment, methods=["POST"]),
        Route("/v1/payments/{payment_id}", get_payment, methods=["GET"]),
        Route("/v1/participants/{participant_id}/positions", get_positions, methods=["GET"]),
        Route("/v1/participants/{participant_id}/ledgers/{ledger}/net-debit-cap", put_cap,
              methods=["PUT"]),
        Route("/v1/participants/{participant_id}/funds", post_funds, methods=["POST"]),
    ]


