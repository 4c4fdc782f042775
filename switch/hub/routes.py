"""The switch layer's HTTP routes: parties, quotes, payments, positions, net debit caps and
funds (docs/API.md, docs/SWITCH.md). Who may do what:
- parties: a participant registers aliases for its own accounts; anyone with a key looks
  one up (and learns only what a payer needs);
- quotes and payments: the operator, or a participant from its own wallets (auditors only
  read); a two-phase payment is fulfilled or aborted by its payee's participant;
- a participant reads its own positions and payments (payer or payee); the operator and
  auditors read all; caps and funds are the operator's.
An object a participant may not see answers as if it did not exist (404).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterable, Sequence
from typing import Any

from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from actors.ledger.registry import AUDITOR, OPERATOR, PARTICIPANT
from switch.api.auth import Principal, principal_of, require
from switch.api.errors import MESSAGES, ApiError, json_response, status_of_result
from switch.api.params import path_id
from switch.api.registry_api import Parse, ParseMany
from switch.api.schemas import array_adapter
from switch.hub.model import POST, VOID, Position, normalized, party_valid
from switch.hub.payments import Payments, PaymentTerms, PaymentView
from switch.hub.quotes import Quote
from switch.hub.schemas import (
    FUNDS,
    NET_DEBIT_CAP,
    PARTY,
    PAYMENT,
    PAYMENT_REF,
    QUOTE,
    PaymentIn,
    PaymentRefIn,
)
from switch.hub.service import Hub
from switch.hub.signing import public_key_hex
from switch.routing.channel import (
    Overloaded,
    ShardCallFailed,
    ShardUnavailable,
    is_item_failure,
)

Answer = tuple[str, PaymentView | None]
ACTIONS = {POST: "fulfil", VOID: "abort"}


def position_json(position: Position) -> dict[str, Any]:
    return {"ledger": position.ledger, "position": position.position,
            "net_debit_cap": position.net_debit_cap, "headroom": position.headroom,
            "settlement_balance": position.settlement_balance,
            "alarm_percent": position.alarm_percent}


def payment_json(view: PaymentView) -> dict[str, Any]:
    payment = view.payment
    return {"id": payment.id, "payer_account_id": payment.payer_account_id,
            "payee_account_id": payment.payee_account_id, "amount": payment.amount,
            "fee": payment.fee, "ledger": payment.ledger,
            "payer_participant_id": payment.payer_participant,
            "payee_participant_id": payment.payee_participant, "state": view.state,
            "timestamp": view.timestamp}


def quote_json(quote_id: str, quote: Quote) -> dict[str, Any]:
    return {"quote_id": quote_id, "payer_account_id": quote.payer_account_id,
            "payee_account_id": quote.payee_account_id,
            "payee_participant_id": quote.payee_participant, "ledger": quote.ledger,
            "send_amount": quote.send_amount, "receive_amount": quote.amount, "fee": quote.fee,
            "expires_at": quote.expires_at}


def hub_routes(hub: Hub, payments: Payments, parse: Parse, parse_many: ParseMany,
               batch_items_max: int, retry_after_seconds: int,
               count: Callable[[str, Iterable[str]], None]) -> list[BaseRoute]:
    """`count(action, results)`: each payment's, fulfil's or abort's result (the metrics)."""
    payments_array = array_adapter(PaymentIn, batch_items_max)
    refs_array = array_adapter(PaymentRefIn, batch_items_max)

    async def post_payment(request: Request) -> Response:
        """One payment, or an array of them (bulk): each item is its own payment, answered
        by its own result; the payments of one array go to the router together."""
        principal = require(request, OPERATOR, PARTICIPANT)
        is_array, bodies = await parse_many(request, PAYMENT, payments_array)
        calls = [payments.pay(_terms(body), principal.participant_id, principal.key_id)
                 for body in bodies]
        if not is_array:
            result, made = await _counted("pay", calls[0])
            return await _payment_answer(principal, bodies[0].id, result, created=True,
                                         made=made)
        return await _array_answer("pay", bodies, calls)

    async def resolve(request: Request, how: str) -> Response:
        principal = require(request, OPERATOR, PARTICIPANT)
        payment_id = path_id(request, "payment_id")
        result, after = await _counted(ACTIONS[how], payments.resolve(
            payment_id, how, principal.participant_id, principal.key_id))
        return await _payment_answer(principal, payment_id, result, created=False, made=after)

    async def resolve_many(request: Request, how: str) -> Response:
        """`POST /v1/payments/fulfil` (or `/abort`) with `{"id"}` or an array of them."""
        principal = require(request, OPERATOR, PARTICIPANT)
        is_array, refs = await parse_many(request, PAYMENT_REF, refs_array)
        calls = [payments.resolve(ref.id, how, principal.participant_id, principal.key_id)
                 for ref in refs]
        if not is_array:
            result, after = await _counted(ACTIONS[how], calls[0])
            return await _payment_answer(principal, refs[0].id, result, created=False,
                                         made=after)
        return await _array_answer(ACTIONS[how], refs, calls)

    async def _counted(action: str, call: Awaitable[Answer]) -> Answer:
        """One object's answer, counted (a refusal or failure too, then raised)."""
        try:
            answer = await call
        except Exception as failed:  # (a request cancelled, its client gone: not counted)
            count(action, [_code_of(failed)])
            raise
        count(action, [answer[0]])
        return answer

    async def fulfil(request: Request) -> Response:
        return await resolve(request, POST)

    async def abort(request: Request) -> Response:
        return await resolve(request, VOID)

    async def fulfil_many(request: Request) -> Response:
        return await resolve_many(request, POST)

    async def abort_many(request: Request) -> Response:
        return await resolve_many(request, VOID)

    async def _payment_answer(principal: Principal, payment_id: str, result: str,
                              created: bool, made: PaymentView | None = None) -> Response:
        """`made`: the payment as just made (then it is not read back from its shard)."""
        status = status_of_result(result)
        if not created and status == 201:
            status = 200
        shown = None
        if status < 400 or status == 409:
            view = made or await payments.view(payment_id)
            if view is not None and _sees(principal, view):  # a 409 tells no one else's
                shown = payment_json(view)
        answer: dict[str, Any] = {"result": result, "payment": shown}
        if status >= 400:
            answer.update(code=result, message=MESSAGES.get(result, result))
        return json_response(answer, status, retry_after_seconds if status == 503 else None)

    async def _array_answer(action: str, items: Sequence[PaymentIn | PaymentRefIn],
                            calls: Sequence[Awaitable[Answer]]) -> Response:
        """Every item's result, in order. What refuses one item (a rule, a quote, a full log)
        is that item's result; a shard overloaded or unavailable is the whole request's
        (429/503: resend the same array, the items made answer exists), once every item has
        had its turn."""
        answers: list[Answer | BaseException] = list(
            await asyncio.gather(*calls, return_exceptions=True))
        repeats = [place for place, answer in enumerate(answers) if isinstance(answer, tuple)
                   and answer[0] == "exists" and answer[1] is None]
        found = await asyncio.gather(*(payments.view(items[place].id) for place in repeats))
        for place, view in zip(repeats, found, strict=True):  # made before: as it is now
            answers[place] = ("exists", view)
        count(action, [_code_of(answer) for answer in answers])
        failures = [answer for answer in answers if isinstance(answer, BaseException)
                    and not isinstance(answer, ApiError) and not is_item_failure(answer)]
        if failures:  # a bug first (500, logged), else overloaded or unavailable (429, 503)
            raise next((failure for failure in failures
                        if not isinstance(failure, Overloaded | ShardUnavailable)), failures[0])
        results = []
        for index, (item, answer) in enumerate(zip(items, answers, strict=True)):
            results.append({"index": index, "id": item.id, **_item_result(answer)})
        return json_response({"results": results})

    async def get_payment(request: Request) -> Response:
        principal = principal_of(request)
        view = await payments.view(path_id(request, "payment_id"))
        if view is None or not _sees(principal, view):
            raise ApiError(404, "payment_not_found")
        return json_response(payment_json(view))

    async def post_party(request: Request) -> Response:
        principal = require(request, OPERATOR, PARTICIPANT)
        body = await parse(request, PARTY)
        result = await payments.register_party(body.type, body.id, body.account_id,
                                               principal.participant_id, principal.key_id)
        status = {"ok": 201, "exists": 200, "party_taken": 409}.get(result, 422)
        answer: dict[str, Any] = {"result": result, "party": None}
        if status < 400:
            answer["party"] = await _party_json(body.type, body.id)
        else:
            answer.update(code=result, message=MESSAGES.get(result, result))
        return json_response(answer, status)

    async def get_party(request: Request) -> Response:
        principal_of(request)
        party_type, value = request.path_params["party_type"], request.path_params["party_id"]
        if not party_valid(party_type, value):
            raise ApiError(404, "party_not_found")
        shown = await _party_json(party_type, value)
        if shown is None:
            raise ApiError(404, "party_not_found")
        return json_response(shown)

    async def _party_json(party_type: str, value: str) -> dict[str, Any] | None:
        """What a payer needs of an alias: whose, and which account on which ledger."""
        account = await payments.party(party_type, value)
        if account is None:
            return None
        return {"type": party_type, "id": normalized(party_type, value),
                "participant_id": account.owner, "account_id": account.id,
                "ledger": account.ledger}

    async def post_quote(request: Request) -> Response:
        principal = require(request, OPERATOR, PARTICIPANT)
        body = await parse(request, QUOTE)
        quote_id, quote = await payments.quote(
            body.payer_account_id, body.payee.type, body.payee.id, body.amount,
            body.amount_type, body.ledger, principal.participant_id)
        return json_response(quote_json(quote_id, quote), 201)

    async def public_key(request: Request) -> Response:
        principal_of(request)
        return json_response({"algorithm": "Ed25519",
                              "public_key": public_key_hex(payments.key)})

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
        if body.alarm_percent is not None:
            alarm = await hub.set_alarm(participant_id, ledger, body.alarm_percent,
                                        principal.key_id)
            if alarm == "ok":  # the cap unchanged, its alarm changed: a change all the same
                result = "ok"
                position = await hub.position(participant_id, ledger)
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
            raise ApiError(status, result,
                           retry_after_seconds=retry_after_seconds if status == 503 else None)
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
        Route("/v1/payments/fulfil", fulfil_many, methods=["POST"]),
        Route("/v1/payments/abort", abort_many, methods=["POST"]),
        Route("/v1/payments/{payment_id}", get_payment, methods=["GET"]),
        Route("/v1/payments/{payment_id}/fulfil", fulfil, methods=["POST"]),
        Route("/v1/payments/{payment_id}/abort", abort, methods=["POST"]),
        Route("/v1/parties", post_party, methods=["POST"]),
        Route("/v1/parties/{party_type}/{party_id}", get_party, methods=["GET"]),
        Route("/v1/quotes", post_quote, methods=["POST"]),
        Route("/v1/hub/public-key", public_key, methods=["GET"]),
        Route("/v1/participants/{participant_id}/positions", get_positions, methods=["GET"]),
        Route("/v1/participants/{participant_id}/ledgers/{ledger}/net-debit-cap", put_cap,
              methods=["PUT"]),
        Route("/v1/participants/{participant_id}/funds", post_funds, methods=["POST"]),
    ]


def _terms(body: PaymentIn) -> PaymentTerms:
    return PaymentTerms(body.id, body.quote_id, body.payer_account_id, body.payee_account_id,
                        body.amount, body.ledger, body.mode == "two_phase", body.timeout_ms)


def _code_of(answer: Answer | BaseException) -> str:
    """What the metrics count an answer as: its result, or what failed it."""
    if isinstance(answer, ApiError | ShardCallFailed):
        return answer.code
    if isinstance(answer, Overloaded):
        return "overloaded"
    if isinstance(answer, ShardUnavailable):
        return "shard_unavailable"
    if isinstance(answer, BaseException):
        return "internal_error"
    return answer[0]


def _item_result(answer: Answer | BaseException) -> dict[str, Any]:
    """One array item's result: its code, and when made or found, its state and time."""
    if isinstance(answer, ApiError | ShardCallFailed):  # a rule, or a shard's refusal of it
        return {"result": answer.code}
    assert not isinstance(answer, BaseException)  # (the others fail the whole request)
    result, view = answer
    if view is None:
        return {"result": result}
    return {"result": result, "state": view.state, "timestamp": view.timestamp}
