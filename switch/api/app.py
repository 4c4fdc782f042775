"""The HTTP API (v1): Starlette routes over the router.

Each POST accepts one object or an array. One object answers with its own status (201 ok,
200 exists, 409 exists with different fields, 422 another rejection); an array answers 200
with one result per item. Bad input answers 4xx before anything reaches a shard.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import msgspec
from pydantic import TypeAdapter, ValidationError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send

from actors.ledger.model import Transfer
from actors.ledger.registry import AUDITOR, OPERATOR, PARTICIPANT, Participant
from actors.messages import (
    FAILED_STORAGE_FULL,
    AccountReply,
    AccountTransfers,
    AccountView,
    GetAccount,
    GetTransfer,
    SetLimits,
    TransferPage,
    TransferView,
)
from actors.runtime import release_free_memory
from actors.shard.stats import ShardStatus
from persistence.lock import IngressLock
from persistence.topology import SavedTopology
from switch.api.access import Visibility, account_refusal, owns
from switch.api.auth import (
    Authenticate,
    Buckets,
    KeyRing,
    TokenBuckets,
    optional_principal,
    principal_of,
    require,
)
from switch.api.errors import MESSAGES, ApiError, error_response, json_response, status_of_result
from switch.api.fast_parse import AccountWire, fast_parse, fast_transfers
from switch.api.openapi import openapi_document
from switch.api.params import is_decimal, path_id, query_int, required_int
from switch.api.registry_api import (
    OPERATOR_KEY_FILE,
    bootstrap_operator_key,
    registry_routes,
)
from switch.api.schemas import ACCOUNT, LIMITS, TRANSFER, AccountIn, TransferIn, array_adapter
from switch.api.shared_buckets import SharedTokenBuckets
from switch.api.slots_api import slot_routes
from switch.api.views import (
    account_from_request,
    account_json,
    limits_of,
    transfer_from_request,
    transfer_json,
)
from switch.cli.settings import Settings
from switch.hub.model import RESERVED_PREFIX, reserved
from switch.hub.payments import Payments
from switch.hub.routes import hub_routes
from switch.hub.service import Hub
from switch.hub.settlements import Settlements
from switch.hub.signing import signing_key
from switch.hub.watch import HubCollector, HubWatch
from switch.hub.window_routes import window_routes
from switch.hub.windows import Windows
from switch.observe.cluster import cluster_endpoint
from switch.observe.dashboard import dashboard_routes
from switch.observe.metrics import MULTIPROCESS_DIR_ENV, Metrics, RequestContext
from switch.observe.monitor import Monitor
from switch.read.events import EventStream
from switch.read.events_api import EVENTS_PATH, StreamSlots, event_routes
from switch.read.query_api import query_routes
from switch.routing.channel import (
    Overloaded,
    ShardCallFailed,
    ShardUnavailable,
    SlotMoving,
    is_item_failure,
)
from switch.routing.coalesce import TransferCoalescer
from switch.routing.redrive import Redriver
from switch.routing.registry import RegistryClient
from switch.routing.router import Outcome, Router
from switch.routing.slot_move import follow_saved

log = logging.getLogger("payswitch.api")
UNAVAILABLE_LOG_EVERY_S = 5.0  # a shard down answers many 503s: their cause, now and then
TRANSFERS_PATH = "/v1/transfers"
PAYMENTS_PATH = "/v1/payments"
MEMORY_RELEASE_INTERVAL_S = 30.0

JSON_MEDIA_TYPE = "application/json"
HISTORY_LIMIT_DEFAULT = 100




class Api:
    def __init__(self, router: Router, settings: Settings, monitor: Monitor,
                 keyring: KeyRing) -> None:
        self.router = router
        self.settings = settings
        self.monitor = monitor
        self.keyring = keyring
        self.visibility = Visibility(router)
        self.coalescer = TransferCoalescer(router, settings.api.batch_items_max)
        self._accounts = array_adapter(AccountIn, settings.api.batch_items_max)
        self._transfers = array_adapter(TransferIn, settings.api.batch_items_max)

    # ---- request bodies ----

    async def _body(self, request: Request) -> bytes:
        media_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if media_type != JSON_MEDIA_TYPE:
            raise ApiError(415, "unsupported_media_type")
        limit = self.settings.server.body_bytes_max
        length = request.headers.get("content-length")
        if length is not None and is_decimal(length) and int(length) > limit:
            raise ApiError(413, "body_too_large", f"The body is larger than {limit} bytes.")
        chunks, size = [], 0
        async for chunk in request.stream():
            size += len(chunk)
            if size > limit:
                raise ApiError(413, "body_too_large", f"The body is larger than {limit} bytes.")
            chunks.append(chunk)
        return b"".join(chunks)

    async def parse_one(self, request: Request, one: TypeAdapter[Any]) -> Any:
        body = await self._body(request)
        try:
            return one.validate_json(body)
        except ValidationError as error:
            raise _validation_error(error, self.settings.api.batch_items_max) from None

    async def parse_many(self, request: Request, one: TypeAdapter[Any],
                         many: TypeAdapter[Any]) -> tuple[bool, list[Any]]:
        """One object or an array of them: whether it was an array, and the items."""
        body = await self._body(request)
        is_array = body.lstrip()[:1] == b"["
        return is_array, self._validated(body, is_array, one, many)

    def _validated(self, body: bytes, is_array: bool, one: TypeAdapter[Any],
                   many: TypeAdapter[Any]) -> list[Any]:
        try:
            return list(many.validate_json(body)) if is_array else [one.validate_json(body)]
        except ValidationError as error:
            raise _validation_error(error, self.settings.api.batch_items_max) from None

    # ---- routes ----

    async def post_accounts(self, request: Request) -> Response:
        principal = require(request, OPERATOR, PARTICIPANT)
        body = await self._body(request)
        is_array = body.lstrip()[:1] == b"["
        items: list[Any] | None = fast_parse(AccountWire, body, is_array,
                                             self.settings.api.batch_items_max)
        if items is None:  # as for transfers: pydantic decides and explains
            items = self._validated(body, is_array, ACCOUNT, self._accounts)
        accounts = [account_from_request(i) for i in items]
        limits = [limits_of(i) for i in items]
        participant = self.keyring.participants.get(principal.participant_id)
        refusals = [account_refusal(principal, participant, account, given)
                    for account, given in zip(accounts, limits, strict=True)]
        allowed = [i for i, refusal in enumerate(refusals) if refusal is None]
        created = await self.router.create_accounts(
            [accounts[i] for i in allowed], [limits[i] for i in allowed], principal.key_id,
            principal.participant_id)
        outcomes: list[Outcome] = [(refusal, None) for refusal in refusals]  # type: ignore[misc]
        for i, outcome in zip(allowed, created, strict=True):
            outcomes[i] = outcome
        return _created(is_array, items, outcomes, "account", account_json)

    async def post_transfers(self, request: Request) -> Response:
        started = time.perf_counter()
        principal = require(request, OPERATOR, PARTICIPANT)
        body = await self._body(request)
        is_array = body.lstrip()[:1] == b"["
        items: list[Any] | None = fast_transfers(body, is_array,
                                                 self.settings.api.batch_items_max)
        if items is None:  # not valid, or not valid as the fast path sees it: pydantic says
            items = self._validated(body, is_array, TRANSFER, self._transfers)
        transfers = [transfer_from_request(i, principal.key_id, principal.participant_id)
                     for i in items]
        _refuse_reserved(transfers)  # on the decoded ids: an escape spells `hub:` too
        if is_array:
            outcomes = await self.router.create_transfers(transfers)
        else:  # one per request: run with the others that came in the same turn
            outcomes = [await self.coalescer.create_transfer(transfers[0])]
        response = _created(is_array, items, outcomes, "transfer", transfer_json)
        self.monitor.count_transfers(map(_result_code, outcomes), items,
                                     time.perf_counter() - started)
        return response

    async def get_account(self, request: Request) -> Response:
        principal = principal_of(request)
        account_id = path_id(request, "account_id")
        view: AccountView = await self.router.ask(self.router.shard_of(account_id),
                                                  GetAccount(account_id))
        if view.account is None or not owns(principal, view.account):
            raise ApiError(404, "account_not_found")
        return json_response(account_json(view.account, view.limits))

    async def put_limits(self, request: Request) -> Response:
        """Set an account's limits; the same limits again change nothing (idempotent)."""
        principal = require(request, OPERATOR)
        account_id = path_id(request, "account_id")
        if reserved(account_id):  # the switch layer's accounts keep the rules it set
            raise ApiError(422, "id_reserved")
        body = await self._body(request)
        try:
            limits = LIMITS.validate_json(body)
        except ValidationError as error:
            raise _validation_error(error, self.settings.api.batch_items_max) from None
        given = limits_of(limits)
        assert given is not None
        reply: AccountReply = await self.router.ask(self.router.shard_of(account_id),
                                                    SetLimits(account_id, given,
                                                              principal.key_id))
        if reply.result == "account_not_found" or reply.account is None:
            raise ApiError(404, "account_not_found")
        if reply.result == "limits_invalid":
            return error_response(422, "limits_invalid")
        return json_response({"result": reply.result,
                              "account": account_json(reply.account, reply.limits)})

    async def get_transfer(self, request: Request) -> Response:
        principal = principal_of(request)
        transfer_id = path_id(request, "transfer_id")
        view: TransferView = await self.router.ask(self.router.shard_of(transfer_id),
                                                   GetTransfer(transfer_id))
        if view.transfer is None or not await self.visibility.sees_transfer(principal,
                                                                            view.transfer):
            raise ApiError(404, "transfer_not_found")
        return json_response(transfer_json(view.transfer, view.status))

    async def get_account_transfers(self, request: Request) -> Response:
        principal = principal_of(request)
        account_id = path_id(request, "account_id")
        page_max = self.settings.api.history_page_max
        limit = required_int(request, "limit", HISTORY_LIMIT_DEFAULT, 1, page_max)
        before = query_int(request, "cursor", None, 0, 2**63 - 1)
        shard = self.router.shard_of(account_id)
        view, page = await asyncio.gather(
            self.router.ask(shard, GetAccount(account_id)),
            self.router.ask(shard, AccountTransfers(account_id, limit, before)),
        )
        assert isinstance(view, AccountView) and isinstance(page, TransferPage)
        if view.account is None or not owns(principal, view.account):
            raise ApiError(404, "account_not_found")
        return json_response({
            "transfers": [transfer_json(transfer) for transfer in page.transfers],
            "next_cursor": None if page.next_position is None else str(page.next_position),
        })

    async def get_ledgers(self, request: Request) -> Response:
        """Per-ledger totals over every shard: the conservation check an operator can run."""
        require(request, OPERATOR, AUDITOR)
        totals = await self.router.totals()
        ledgers = []
        for code, scale in self.settings.ledgers.items():
            debits_posted, credits_posted, debits_pending, credits_pending = totals.get(
                code, [0, 0, 0, 0])
            ledgers.append({
                "ledger": code, "scale": scale,
                "debits_posted": debits_posted, "credits_posted": credits_posted,
                "debits_pending": debits_pending, "credits_pending": credits_pending,
                "balanced": debits_posted == credits_posted and debits_pending == credits_pending,
            })
        return json_response({"ledgers": ledgers})

    async def healthz(self, request: Request) -> Response:
        return json_response({"status": "ok"})

    async def readyz(self, request: Request) -> Response:
        """Open to anyone (a load balancer's probe); each shard's figures (its ledgers'
        totals among them) only with an operator's or auditor's key. A shard that does not
        answer makes it 503, naming the shard: `recovering` once its actor died and Ray
        restarts it (it answers 503 at once then), `not_answering` before that is known,
        `broken` (with its `reason`) once it could not rebuild its state: a restart is due."""
        answered = await self.router.statuses_answered(timeout_s=5)
        statuses = [status for status in answered if status is not None and not status.broken]
        if len(statuses) < len(answered):
            recovering, now_s = self.router.recovering(), time.time()
            details = [_not_serving(shard, status, recovering, now_s)
                       for shard, status in enumerate(answered)
                       if status is None or status.broken]
            names = ", ".join(str(detail["shard"]) for detail in details)
            return error_response(503, "shard_unavailable", f"shard {names} not serving",
                                  retry_after_seconds=1, details=details)
        principal = optional_principal(request)
        if principal is None or principal.role not in (OPERATOR, AUDITOR):
            return json_response({"status": "ready", "shards": len(statuses)})
        return json_response({"status": "ready",
                              "shards": [msgspec.to_builtins(s) for s in statuses]})

    async def openapi(self, request: Request) -> Response:
        return json_response(openapi_document(self.settings))


def _not_serving(shard: int, status: ShardStatus | None, recovering: dict[int, float],
                 now_s: float) -> dict[str, Any]:
    """What /readyz says of a shard that does not serve."""
    if status is not None and status.broken:
        return {"shard": shard, "state": "broken", "reason": status.broken}
    if shard in recovering:
        return {"shard": shard, "state": "recovering",
                "recovering_for_ms": int(1000 * (now_s - recovering[shard]))}
    return {"shard": shard, "state": "not_answering"}


def _created(
    is_array: bool,
    items: list[Any],
    outcomes: list[Outcome],
    kind: str,
    render: Callable[[Any], dict[str, Any]],
) -> Response:
    for outcome in outcomes:
        # In an array, a command its shard refused (a bug: internal_error; a full log:
        # storage_full) is that item's answer; anything else fails the request (429, 503).
        if isinstance(outcome, BaseException) and not (is_array and is_item_failure(outcome)):
            raise outcome
    if not is_array:
        result, row = outcomes[0]  # type: ignore[misc]
        status = status_of_result(result)
        body: dict[str, Any] = {"result": result}
        if status >= 400:
            body.update(code=result, message=MESSAGES[result])
        if row is not None and (status < 400 or status == 409):
            body[kind] = render(row)
        return json_response(body, status, 1 if status == 503 else None)
    results = []
    for index, (item, outcome) in enumerate(zip(items, outcomes, strict=True)):
        result = _result_code(outcome)
        row = None if isinstance(outcome, BaseException) else outcome[1]
        entry: dict[str, Any] = {"index": index, "id": item.id, "result": result}
        if row is not None and (result == "ok" or result == "exists"):
            entry["timestamp"] = row.timestamp
        results.append(entry)
    return json_response({"results": results})


def _refuse_reserved(transfers: list[Transfer]) -> None:
    """The switch layer's accounts and transfers move only through its own routes (a
    payment, funds, a cap): a request naming one is refused whole, nothing applied."""
    for index, transfer in enumerate(transfers):
        if (transfer.id.startswith(RESERVED_PREFIX)
                or transfer.pending_id.startswith(RESERVED_PREFIX)
                or transfer.debit_account_id.startswith(RESERVED_PREFIX)
                or transfer.credit_account_id.startswith(RESERVED_PREFIX)):
            raise ApiError(422, "id_reserved", f"Item {index} names an id under "
                           f"{RESERVED_PREFIX!r}: the switch layer's own; use its routes "
                           "(/v1/payments, /v1/participants/{id}/funds).")


def _result_code(outcome: Outcome) -> str:
    """An item's result: its reply's code, or the code of the shard's refusal (see
    `_created` for those an array answers with)."""
    if isinstance(outcome, ShardCallFailed):
        return outcome.code
    return outcome[0]  # type: ignore[index]


def _validation_error(error: ValidationError, batch_items_max: int) -> ApiError:
    errors = error.errors(include_url=False, include_context=False, include_input=False)
    if any(e["type"] == "json_invalid" for e in errors):
        return ApiError(400, "invalid_json", f"The body is not valid JSON: {errors[0]['msg']}.")
    if errors and errors[0]["loc"] == () and errors[0]["type"] == "too_short":
        return ApiError(400, "batch_empty")
    if errors and errors[0]["loc"] == () and errors[0]["type"] == "too_long":
        return ApiError(400, "batch_too_large", f"At most {batch_items_max} items per request.")
    details = [{"loc": list(e["loc"]), "type": e["type"], "msg": e["msg"]} for e in errors[:20]]
    return ApiError(400, "validation_error", details=details)


# ---- error handling and limits ----

async def _api_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, ApiError)
    return error_response(error.status, error.code, error.message, details=error.details,
                          retry_after_seconds=error.retry_after_seconds)


def _error_handlers(retry_after_seconds: int) -> dict[Any, Callable[..., Any]]:
    async def overloaded(request: Request, error: Exception) -> Response:
        return error_response(429, "overloaded", retry_after_seconds=retry_after_seconds)

    unlogged = {"since_s": 0.0, "count": 0}  # 503s not logged since the last line

    async def unavailable(request: Request, error: Exception) -> Response:
        message = None
        if isinstance(error, SlotMoving):
            moving = f"Account {error.account}" if error.account else f"Slot {error.slot}"
            message = (f"{moving} is being moved to another shard; retry in a moment with "
                       "the same ids.")
        else:  # the cause, which the answer does not tell: at most a line every few seconds
            now_s = time.monotonic()
            if now_s - unlogged["since_s"] >= UNAVAILABLE_LOG_EVERY_S:
                log.warning("answered 503 shard_unavailable: %s (and %d more since the last "
                            "such line)", str(error) or type(error).__name__, unlogged["count"])
                unlogged.update(since_s=now_s, count=0)
            else:
                unlogged["count"] += 1
        return error_response(503, "shard_unavailable", message,
                              retry_after_seconds=retry_after_seconds)

    async def call_failed(request: Request, error: Exception) -> Response:
        assert isinstance(error, ShardCallFailed)
        if error.code == FAILED_STORAGE_FULL:
            return error_response(503, "storage_full", retry_after_seconds=retry_after_seconds)
        log.error("%s %s answered internal_error: %s", request.method, request.url.path, error,
                  exc_info=error)
        return error_response(500, "internal_error")

    async def http_error(request: Request, error: Exception) -> Response:
        assert isinstance(error, HTTPException)
        code = {404: "not_found", 405: "method_not_allowed"}.get(error.status_code, "http_error")
        response = error_response(error.status_code, code, str(error.detail))
        response.headers.update(error.headers or {})  # 405: Allow names the methods there are
        return response

    async def internal(request: Request, error: Exception) -> Response:
        # Starlette raises it on after this answer: uvicorn logs the traceback.
        return error_response(500, "internal_error")

    return {
        ApiError: _api_error,
        Overloaded: overloaded,
        ShardUnavailable: unavailable,
        ShardCallFailed: call_failed,
        HTTPException: http_error,
        Exception: internal,
    }


class DirectRoute:
    """Pure ASGI: the hot paths, `POST /v1/transfers` and `POST /v1/payments`, go straight to
    their handlers, past Starlette's route matching and exception middleware (about a tenth
    of the ingress's CPU per single-transfer request, bench/RESULTS.md); their errors are
    answered by the same handlers as every other route's. Anything else goes on to
    Starlette (which also has these routes: the OpenAPI document, 405s)."""

    def __init__(self, app: ASGIApp,
                 posts: dict[str, Callable[[Request], Awaitable[Response]]],
                 handlers: dict[Any, Callable[..., Any]]) -> None:
        self.app = app
        self.posts = posts  # path -> its POST handler
        self.handlers = handlers

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        handler = self.posts.get(scope["path"]) if scope["type"] == "http" and \
            scope["method"] == "POST" else None
        if handler is None:
            await self.app(scope, receive, send)
            return
        scope["endpoint"] = handler  # as Starlette's router sets it: metrics name it
        request = Request(scope, receive, send)
        try:
            response = await handler(request)
        except Exception as error:
            response = await self._handler_of(error)(request, error)
            if not isinstance(error, ApiError | Overloaded | ShardUnavailable | ShardCallFailed):
                log.error("POST %s failed", scope["path"], exc_info=error)
        await response(scope, receive, send)

    def _handler_of(self, error: Exception) -> Callable[..., Any]:
        for kind in type(error).__mro__:  # the nearest registered class, as Starlette looks
            if kind in self.handlers:
                return self.handlers[kind]
        raise error


class InFlightLimit:
    """Answer 503 with Retry-After beyond a bound on concurrent requests (pure ASGI: cheap).
    Waiting reads of the event stream are bounded apart (switch/read/events_api.py)."""

    def __init__(self, app: ASGIApp, requests_max: int, retry_after_seconds: int) -> None:
        self.app = app
        self.requests_max = requests_max
        self.retry_after_seconds = retry_after_seconds
        self.in_flight = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or _waits(scope):
            await self.app(scope, receive, send)
            return
        if self.in_flight >= self.requests_max:
            response = error_response(503, "too_many_requests_in_flight",
                                      retry_after_seconds=self.retry_after_seconds)
            await response(scope, receive, send)
            return
        self.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.in_flight -= 1


async def _release_free_memory_forever(interval_s: float = MEMORY_RELEASE_INTERVAL_S) -> None:
    """Arrays of 8,190 items parse into tens of MB that are freed once answered; glibc keeps
    what it cannot return from the top of the heap. Give it back now and then."""
    while True:
        await asyncio.sleep(interval_s)
        await asyncio.to_thread(release_free_memory)


def _one_route_per_path(routes: list[BaseRoute]) -> list[BaseRoute]:
    """Starlette answers 405 from the first route whose path matches, and its Allow header
    names that route's methods only: one route per path, dispatching on the method, names
    them all (GET and POST /v1/transfers come from two modules)."""
    groups: dict[str, list[Route]] = {}
    for route in routes:
        if isinstance(route, Route):
            groups.setdefault(route.path, []).append(route)
    merged: list[BaseRoute] = []
    for route in routes:
        group = groups.get(route.path) if isinstance(route, Route) else None
        if group is None or len(group) == 1:
            merged.append(route)
        elif route is group[0]:
            merged.append(_dispatching(route.path, {method: r.endpoint for r in group
                                                    for method in r.methods or ()}))
    return merged


def _dispatching(path: str, handlers: dict[str, Callable[[Request], Awaitable[Response]]]
                 ) -> Route:
    async def endpoint(request: Request) -> Response:
        handler = handlers[request.method]
        request.scope["endpoint"] = handler  # metrics and the access log name the handler
        return await handler(request)
    return Route(path, endpoint, methods=sorted(handlers))


def _waits(scope: Scope) -> bool:
    """A read that may wait (an event stream, a long-poll): it has slots of its own."""
    path = scope["path"]
    if path == EVENTS_PATH + "/stream":
        return True
    if path != EVENTS_PATH:
        return False
    wait_ms = parse_qs(scope.get("query_string", b"").decode("latin-1")).get("wait_ms", ["0"])
    return wait_ms[-1] not in ("", "0")


# In the data directory: the ingress processes of a machine take turns at the switch layer's
# read-then-move operator actions (caps, funds out, window closes, settlements).
HUB_CONTROL_LOCK_FILE = "hub-control.lock"


def rate_buckets(settings: Settings) -> Buckets:
    """The rate limits: shared by the workers of `payswitch serve --workers N` (through the
    directory their supervisor made), else this process's own."""
    shared_dir = os.environ.get(MULTIPROCESS_DIR_ENV)
    if settings.server.workers > 1 and shared_dir:
        return SharedTokenBuckets(Path(shared_dir), settings.auth.requests_per_second,
                                  settings.auth.burst, settings.server.workers)
    return TokenBuckets(settings.auth.requests_per_second, settings.auth.burst,
                        settings.server.workers)


def create_app(router: Router, settings: Settings, ray_dashboard_url: str | None = None,
               placements: list[dict[str, Any]] | None = None,
               on_tick: Callable[[Monitor], None] | None = None,
               query_actor: Any = None,
               list_nodes: Callable[[], list[dict[str, Any]]] | None = None,
               worker_index: int | None = None) -> Starlette:
    """`placements`: where each shard runs (node, pid), for the dashboard; `on_tick`: called
    with the monitor after each of its polls (the server publishes Ray metrics there);
    `list_nodes`: the cluster's nodes now, for `GET /v1/cluster`; `worker_index`: None for
    the one ingress process, else which of the `server.workers` this is: the supervisor ran
    the start-up (`app.state.start_up`) before any, and the first runs the scheduled work."""
    monitor = Monitor(router, settings.monitor.interval_ms, settings.monitor.window_s,
                      placements or [])
    monitor.on_tick = on_tick
    metrics = Metrics(monitor)
    registry = RegistryClient(router)
    keyring = KeyRing(registry, settings.auth.refresh_interval_ms)
    api = Api(router, settings, monitor, keyring)
    hub = Hub(router, api.visibility, keyring,
              IngressLock(Path(settings.data.dir) / HUB_CONTROL_LOCK_FILE),
              settings.hub.alarm_percent)
    key = signing_key(Path(settings.data.dir))
    windows = Windows(hub, key)
    payments = Payments(hub, windows, settings.hub, key, api.coalescer)
    watch = HubWatch(hub, windows, settings.monitor.interval_ms,
                     records_alarms=not worker_index)  # one ingress records each crossing
    if not worker_index:  # and counts it: with --workers N, /metrics sums the workers'
        watch.on_alarm = metrics.count_alarm
    metrics.register(HubCollector(watch))

    async def enable(participant: Participant, key_id: str) -> None:
        async with hub.control_lock.held():  # not while a window closes (it lists them)
            await hub.enable([participant], key_id)
            for ledger in participant.ledgers:  # its account in each ledger's open window
                await windows.ensure_accounts(ledger, await windows.open_window_now(ledger),
                                              [participant.id], key_id)

    async def start_up() -> None:
        """Before any ingress serves: what a crash left in doubt, the operator's first key,
        participants' statuses, accounts and windows a crash left unmade."""
        await Redriver(router).run_once()
        key_file = await bootstrap_operator_key(registry, keyring, Path(settings.data.dir))
        await registry.reconcile_statuses(list(keyring.participants.values()))
        await hub.enable(keyring.participants.values())
        await windows.prepare()
        if key_file is not None:  # its path only: the secret is never logged
            log.warning("a new operator key was written to %s (mode 0600); send it as "
                        "Authorization: Bearer <key>", key_file)
        elif (Path(settings.data.dir) / OPERATOR_KEY_FILE).exists():
            log.info("the operator key is in %s", Path(settings.data.dir) / OPERATOR_KEY_FILE)

    several = worker_index is not None
    redriver = Redriver(router, settings.router.foreign_redrive_age_ms if several else 0)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        if several:
            await keyring.refresh()  # the supervisor's start-up made what it reads
        else:
            await start_up()
        tasks = [asyncio.create_task(redriver.forever(settings.router.redrive_interval_ms)),
                 asyncio.create_task(keyring.refresh_forever()),
                 asyncio.create_task(monitor.run()),
                 asyncio.create_task(follow_saved(
                     router.placement, SavedTopology(Path(settings.data.dir)).changed,
                     settings.monitor.interval_ms / 1000)),
                 asyncio.create_task(watch.run()),
                 *([asyncio.create_task(windows.close_forever(
                     settings.hub.window_close_interval_s))]
                   if settings.hub.window_close_interval_s and not worker_index else []),
                 asyncio.create_task(_release_free_memory_forever())]
        yield
        for task in tasks:
            task.cancel()

    switch_layer = hub_routes(hub, payments, api.parse_one, api.parse_many,
                              settings.api.batch_items_max, settings.server.retry_after_seconds,
                              metrics.count_payments)
    routes = [
        Route("/v1/accounts", api.post_accounts, methods=["POST"]),
        Route("/v1/accounts/{account_id}", api.get_account, methods=["GET"]),
        Route("/v1/accounts/{account_id}/transfers", api.get_account_transfers, methods=["GET"]),
        Route("/v1/accounts/{account_id}/limits", api.put_limits, methods=["PUT"]),
        Route(TRANSFERS_PATH, api.post_transfers, methods=["POST"]),  # served by DirectRoute
        Route("/v1/transfers/{transfer_id}", api.get_transfer, methods=["GET"]),
        Route("/v1/ledgers", api.get_ledgers, methods=["GET"]),
        Route("/healthz", api.healthz, methods=["GET"]),
        Route("/readyz", api.readyz, methods=["GET"]),
        Route("/openapi.json", api.openapi, methods=["GET"]),
        *dashboard_routes(monitor, metrics, ray_dashboard_url, watch.data),
        Route("/v1/cluster", cluster_endpoint(monitor, list_nodes), methods=["GET"]),
        *slot_routes(router, Path(settings.data.dir), api.parse_one),
        *event_routes(EventStream(router.links), StreamSlots(
            settings.server.streams_max, settings.server.streams_per_client_max,
            settings.server.retry_after_seconds), api.visibility.visible_events,
            keyring.allows),
        *query_routes(query_actor, router, settings.api.history_page_max),
        *registry_routes(registry, keyring, api.parse_one, enable),
        *switch_layer,
        *window_routes(windows, Settlements(hub, windows), api.parse_one),
    ]
    handlers = _error_handlers(settings.server.retry_after_seconds)
    app = Starlette(routes=_one_route_per_path(routes), lifespan=lifespan,
                    exception_handlers=handlers)
    app.state.start_up = start_up
    app.state.windows = windows  # (tests make its idea of the open window stale)
    app.add_middleware(DirectRoute, posts={
        TRANSFERS_PATH: api.post_transfers,
        PAYMENTS_PATH: next(route.endpoint for route in switch_layer if isinstance(route, Route)
                            and route.path == PAYMENTS_PATH)}, handlers=handlers)
    app.add_middleware(InFlightLimit, requests_max=settings.server.requests_in_flight_max,
                       retry_after_seconds=settings.server.retry_after_seconds)
    app.add_middleware(Authenticate, keyring=keyring,  # before a request takes a slot
                       buckets=rate_buckets(settings),
                       failures=metrics.auth_failures)
    app.add_middleware(RequestContext, metrics=metrics,  # outermost: sees every answer
                       access_log=settings.server.access_log)
    return app
