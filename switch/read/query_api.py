"""GET /v1/transfers, GET /v1/accounts (filtered, cursor-paged) and
GET /v1/accounts/{id}/balances: answered by the read replica (switch/query.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import ray
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from actors.ledger.model import CODE_MAX, HISTORY, ID_RE, USER_DATA_LENGTH_MAX
from actors.messages import BalanceHistory, BalancePage
from switch.api.access import owns
from switch.api.auth import principal_of
from switch.api.errors import ApiError, json_response
from switch.api.params import query_int, query_moment, required_int
from switch.api.views import account_json, transfer_json
from switch.read.query import QueryInvalid, decode_cursor, encode_cursor
from switch.routing.router import Router

QUERY_TIMEOUT_S = 10.0  # the read model catches up first: a recovering shard holds it
PENDING_STATUSES = ("pending", "posted", "voided", "expired")
BALANCE_FIELDS = ("timestamp", "debits_posted", "credits_posted", "debits_pending",
                  "credits_pending")


def _text(request: Request, name: str, check: Any = None) -> str | None:
    value = request.query_params.get(name)
    if value is not None and check is not None and not check(value):
        raise ApiError(400, "query_invalid", f"{name} is not valid.")
    return value


def _ident(value: str) -> bool:
    return bool(ID_RE.fullmatch(value))


def query_routes(query_actor: Any, router: Router, page_max: int) -> list[BaseRoute]:
    async def ask(kind: str, *args: Any) -> Any:
        if query_actor is None:
            raise ApiError(503, "shard_unavailable", "Queries are not served here.")
        try:
            # What this process answered is in the logs the model reads, then the model.
            async with asyncio.timeout(QUERY_TIMEOUT_S):
                await router.barrier()
                status, answer = await query_actor.query.remote(kind, *args)
        except ray.exceptions.RayActorError:  # died (Ray restarts it) or restarting
            raise ApiError(503, "read_model_unavailable", retry_after_seconds=1) from None
        except TimeoutError:  # catching up behind a shard that is recovering
            raise ApiError(503, "read_model_unavailable", "The read model did not answer in "
                           f"{QUERY_TIMEOUT_S:.0f} s (a shard recovering?); retry after "
                           "Retry-After.", retry_after_seconds=1) from None
        if status != "ok":
            raise ApiError(400, "cursor_invalid", answer)
        return answer

    def common(request: Request) -> tuple[int, str | None]:
        return (required_int(request, "limit", 100, 1, page_max),
                _text(request, "cursor"))

    async def transfers(request: Request) -> Response:
        principal = principal_of(request)
        limit, cursor = common(request)
        filters = {
            # a participant's: only those it sent or that are on one of its accounts
            "party": principal.participant_id or None,
            "account_id": _text(request, "account_id", _ident),
            "code": query_int(request, "code", None, 0, CODE_MAX),
            "user_data": _text(request, "user_data",
                               lambda v: len(v) <= USER_DATA_LENGTH_MAX),
            "ledger": _text(request, "ledger"),
            "pending_status": _text(request, "pending_status", PENDING_STATUSES.__contains__),
            "from_ns": query_moment(request, "from", 0),
            "to_ns": query_moment(request, "to", 2**64),
        }
        found, following = await ask("transfers", filters, limit, cursor)
        return json_response({"transfers": [transfer_json(transfer, status)
                                            for transfer, status in found],
                              "next_cursor": following})

    async def accounts(request: Request) -> Response:
        principal = principal_of(request)
        limit, cursor = common(request)
        owner = _text(request, "owner", _ident)
        if principal.is_participant:  # only its own: another owner asked finds nothing
            if owner not in (None, principal.participant_id):
                return json_response({"accounts": [], "next_cursor": None})
            owner = principal.participant_id
        filters = {
            "owner": owner,
            "code": query_int(request, "code", None, 0, CODE_MAX),
            "user_data": _text(request, "user_data",
                               lambda v: len(v) <= USER_DATA_LENGTH_MAX),
            "ledger": _text(request, "ledger"),
        }
        found, following = await ask("accounts", filters, limit, cursor)
        return json_response({"accounts": [account_json(account) for account in found],
                              "next_cursor": following})

    async def balances(request: Request) -> Response:
        account_id = str(request.path_params["account_id"])
        if not _ident(account_id):
            raise ApiError(400, "id_invalid")
        limit, cursor = common(request)
        since_ns = query_moment(request, "from", 0)
        try:
            after = decode_cursor(cursor)
        except QueryInvalid as error:
            raise ApiError(400, "cursor_invalid", str(error)) from None
        if after is not None:
            since_ns = max(since_ns - 1, after[0])
        else:
            since_ns -= 1  # `from` is inclusive; the shard's bound is exclusive
        principal = principal_of(request)
        page: BalancePage = await router.ask(router.shard_of(account_id), BalanceHistory(
            account_id, max(0, since_ns), min(query_moment(request, "to", 2**64), 2**64 - 1),
            limit))
        if page.account is None or not page.account.flags & HISTORY \
                or not owns(principal, page.account):
            raise ApiError(404, "history_not_kept", "No account with this id keeps its "
                                                    "history (flags.history).")
        following = None if page.next_since_ns is None else encode_cursor(
            [page.next_since_ns, ""])
        return json_response({"balances": [
            {name: getattr(point, name) for name in BALANCE_FIELDS} for point in page.balances],
            "next_cursor": following})

    return [
        Route("/v1/transfers", transfers, methods=["GET"]),
        Route("/v1/accounts", accounts, methods=["GET"]),
        Route("/v1/accounts/{account_id}/balances", balances, methods=["GET"]),
    ]
