"""`AsyncClient`: one call per payment in the application, arrays on the wire.

    async with AsyncClient("http://127.0.0.1:8080", key) as client:
        created = await client.create_transfer(Transfer("pay-1", "alice", "bob", 2500, "USD", 1))
        if created.result != TransferResult.ok: ...

Concurrent calls are coalesced into arrays (switch/client/batcher.py). A request that fails
in a way that may or may not have applied it (a timeout, a dropped connection, 429, 503, an
item answering `in_flight`) is sent again with the same ids, with jittered exponential
backoff, until the call's deadline: what was applied answers `exists`, which the server only
says when every field is the same, so it counts as done. A retried item answering
`exists_with_different_*` raises IdConflict. Nothing is logged; `on_batch` and `on_retry`
observe.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import httpx
import msgspec
import orjson

from actors.ledger.model import Account, Transfer
from switch.client.batcher import Batcher
from switch.client.errors import DeadlineExceeded, IdConflict, error_for
from switch.client.wire import account_body, account_of, transfer_body, transfer_of

BATCH_ITEMS_MAX = 8190
RETRY_STATUSES = (429, 503)
# An item's result that is not final: sent again (a window closing meanwhile: a payment).
RETRY_RESULTS = ("in_flight", "window_draining")
PAYMENTS, FULFILS, ABORTS = "payments", "payments/fulfil", "payments/abort"
JSON = {"content-type": "application/json"}


class Created(msgspec.Struct, frozen=True, gc=False):
    """One item's answer: its id, its result code, and its timestamp when it exists (a
    payment's: also its state, `prepared`, `committed`, `aborted` or `expired`). (A struct:
    one is made per call, and a frozen dataclass took 4% of a busy client's CPU to build.)"""

    id: str
    result: str
    timestamp: int | None = None
    state: str | None = None

    @property
    def ok(self) -> bool:
        """Created now, or already with the same fields (a retry's `exists`)."""
        return self.result in ("ok", "exists")


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    deadline_s: float = 60.0  # per call, from its first try
    backoff_first_ms: float = 50.0
    backoff_max_ms: float = 2000.0

    def delay_s(self, attempt: int, retry_after_s: float) -> float:
        """Jittered exponential backoff, never less than the server's Retry-After."""
        ceiling = min(self.backoff_max_ms, self.backoff_first_ms * 2 ** attempt) / 1000
        return float(max(retry_after_s, ceiling * random.uniform(0.5, 1.0)))


def _units(items: list[dict[str, Any]]) -> list[list[int]]:
    """The array's units: each item alone, or a linked chain's items together."""
    units: list[list[int]] = []
    chain: list[int] = []
    for place, item in enumerate(items):
        chain.append(place)
        if not item.get("flags", {}).get("linked"):
            units.append(chain)
            chain = []
    if chain:
        units.append(chain)
    return units


class _Retry(Exception):
    def __init__(self, reason: str, retry_after_s: float = 0.0) -> None:
        super().__init__(reason)
        self.reason = reason
        self.retry_after_s = retry_after_s


class AsyncClient:
    def __init__(self, url: str, key: str, *, timeout_s: float = 30.0,
                 retry: RetryPolicy | None = None, batch_items_max: int = BATCH_ITEMS_MAX,
                 requests_in_flight_max: int = 2,
                 on_batch: Callable[[str, int], None] | None = None,
                 on_retry: Callable[[str, str], None] | None = None,
                 transport: httpx.AsyncBaseTransport | None = None) -> None:
        """`on_batch(kind, size)` sees each array sent; `on_retry(kind, reason)` each retry."""
        self.retry = retry or RetryPolicy()
        self.on_retry = on_retry
        limits = httpx.Limits(max_connections=requests_in_flight_max + 4)
        self._http = httpx.AsyncClient(base_url=url, timeout=timeout_s, limits=limits,
                                       headers={"Authorization": f"Bearer {key}"},
                                       transport=transport)
        self._on_batch = on_batch
        self._batchers = {kind: Batcher(self._sender(kind), batch_items_max,
                                        requests_in_flight_max, self._batch_observer(kind))
                          for kind in ("transfers", "accounts", PAYMENTS, FULFILS, ABORTS)}

    def _sender(self, kind: str) -> Callable[[list[dict[str, Any]]],
                                             Awaitable[list[dict[str, Any]]]]:
        async def send(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
            return await self._post_array(kind, items)
        return send

    def _batch_observer(self, kind: str) -> Callable[[int], None] | None:
        observer = self._on_batch
        if observer is None:
            return None
        return lambda size: observer(kind, size)

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        await self._http.aclose()

    # ---- writes: one call, one item (or one chain) ----

    async def create_transfer(self, transfer: Transfer) -> Created:
        (created,) = await self._submit("transfers", [transfer_body(transfer)])
        return created

    async def create_transfer_chain(self, transfers: list[Transfer]) -> list[Created]:
        """A linked chain: all applied or none, sent in one array, never split. The flags
        `linked` are set here (on every member but the last)."""
        bodies = [transfer_body(t) for t in transfers]
        for position, body in enumerate(bodies):
            flags = body.setdefault("flags", {})
            flags.pop("linked", None)
            if position < len(bodies) - 1:
                flags["linked"] = True
            if not flags:
                del body["flags"]
        return await self._submit("transfers", bodies)

    async def create_account(self, account: Account) -> Created:
        (created,) = await self._submit("accounts", [account_body(account)])
        return created

    async def create_payment(self, payment_id: str, payer_account_id: str | None = None,
                             payee_account_id: str | None = None, amount: int | None = None,
                             ledger: str | None = None, *, quote_id: str | None = None,
                             two_phase: bool = False, timeout_ms: int | None = None
                             ) -> Created:
        """A payment between participants' wallets (docs/SWITCH.md): from a quote, or with
        its fields in full; `two_phase` prepares it (then `fulfil_payment` or
        `abort_payment`). Concurrent calls travel as one array of payments."""
        body: dict[str, Any] = {"id": payment_id}
        for name, value in (("quote_id", quote_id), ("payer_account_id", payer_account_id),
                            ("payee_account_id", payee_account_id), ("amount", amount),
                            ("ledger", ledger), ("timeout_ms", timeout_ms)):
            if value is not None:
                body[name] = value
        if two_phase:
            body["mode"] = "two_phase"
        (created,) = await self._submit(PAYMENTS, [body])
        return created

    async def fulfil_payment(self, payment_id: str) -> Created:
        """Commit a prepared payment (its payee's participant)."""
        (created,) = await self._submit(FULFILS, [{"id": payment_id}])
        return created

    async def abort_payment(self, payment_id: str) -> Created:
        (created,) = await self._submit(ABORTS, [{"id": payment_id}])
        return created

    async def _submit(self, kind: str, bodies: list[dict[str, Any]]) -> list[Created]:
        entries = await self._batchers[kind].submit(bodies)
        created = []
        for entry in entries:
            if entry["retried"] and entry["result"].startswith("exists_with_different_"):
                raise IdConflict(entry["result"], f"{entry['id']} was used with other "
                                 "fields by another request")
            created.append(Created(entry["id"], entry["result"], entry.get("timestamp"),
                                   entry.get("state")))
        return created

    async def _post_array(self, kind: str, items: list[dict[str, Any]]
                          ) -> list[dict[str, Any]]:
        """POST one array until every item has a final answer (or the deadline passes).
        A retry sends again only the units (an item, or a linked chain whole) without one:
        an item refused already, sent again, could be made after its caller was told no."""
        deadline = time.monotonic() + self.retry.deadline_s
        answers: list[dict[str, Any] | None] = [None] * len(items)
        units = _units(items)
        waiting = units
        attempt = 0
        while True:
            places = [place for unit in waiting for place in unit]
            try:
                results = await self._post(f"/v1/{kind}", orjson.dumps(
                    [items[place] for place in places]))
                self._note(answers, waiting, places, results, attempt)
                waiting = [unit for unit in waiting if answers[unit[0]] is None]
                if not waiting:
                    return [answer for answer in answers if answer is not None]
                retry = _Retry(next((entry["result"] for entry in results
                                     if entry["result"] in RETRY_RESULTS), "in_flight"))
            except _Retry as refused:
                retry = refused
            attempt += 1
            delay_s = self.retry.delay_s(attempt, retry.retry_after_s)
            if time.monotonic() + delay_s > deadline:
                raise DeadlineExceeded(retry.reason, f"still {retry.reason} after "
                                       f"{self.retry.deadline_s} s: send it again, same ids")
            if self.on_retry is not None:
                self.on_retry(kind, retry.reason)
            await asyncio.sleep(delay_s)

    async def _post(self, path: str, body: bytes) -> list[dict[str, Any]]:
        answer = await self._request("POST", path, content=body, headers=JSON)
        return list(answer["results"])

    @staticmethod
    def _note(answers: list[dict[str, Any] | None], sent: list[list[int]], places: list[int],
              results: list[dict[str, Any]], attempt: int) -> None:
        """A unit's answers, if final for all its items (`in_flight` is not): taken from one
        response, so a chain's members agree. After a first attempt whose outcome was
        unknown, an answer is a retry's. `places`: each sent item's place in the array."""
        entries = {places[entry["index"]]: entry for entry in results}
        retried = attempt > 0
        for unit in sent:
            if len(unit) == 1:  # most are: the same as below, without the lists
                place = unit[0]
                entry = entries.get(place)
                if entry is not None and entry["result"] not in RETRY_RESULTS:
                    entry["retried"] = retried
                    entry["index"] = place
                    answers[place] = entry
                continue
            found = [entries.get(place) for place in unit]
            if any(entry is None or entry["result"] in RETRY_RESULTS for entry in found):
                continue
            for place, entry in zip(unit, found, strict=True):
                assert entry is not None
                entry["retried"] = retried  # the entry is this call's own, decoded here
                entry["index"] = place
                answers[place] = entry

    # ---- reads (retried like writes: they change nothing) ----

    async def get_account(self, account_id: str) -> Account:
        """The account now; raises NotFound (also for another participant's)."""
        return account_of(await self._read(f"/v1/accounts/{account_id}"))

    async def get_transfer(self, transfer_id: str) -> Transfer:
        return transfer_of(await self._read(f"/v1/transfers/{transfer_id}"))

    async def transfers(self, **filters: str | int) -> AsyncIterator[Transfer]:
        """Every transfer matching the filters of GET /v1/transfers, page by page."""
        cursor = ""
        while True:
            page = await self._read("/v1/transfers", {**filters, "cursor": cursor,
                                                      "limit": 1000})
            for shown in page["transfers"]:
                yield transfer_of(shown)
            if page["next_cursor"] is None:
                return
            cursor = page["next_cursor"]

    async def event_pages(self, after: str = "0", wait_ms: int = 5000
                          ) -> AsyncIterator[tuple[list[dict[str, Any]], str]]:
        """Pages of events after the cursor, for ever, each with the cursor after it (keep
        it to resume later). A dropped connection or an unavailable shard is retried from
        the last cursor given, however long it takes."""
        attempt = 0
        while True:
            try:
                page = await self._get("/v1/events", {"after": after, "wait_ms": wait_ms,
                                                      "limit": 1000})
            except _Retry as retry:
                attempt += 1
                await asyncio.sleep(self.retry.delay_s(attempt, retry.retry_after_s))
                continue
            attempt = 0
            after = page["next"]
            if page["events"]:
                yield page["events"], after

    async def events(self, after: str = "0") -> AsyncIterator[dict[str, Any]]:
        """Every event after the cursor, one at a time (see `event_pages` to keep cursors)."""
        async for events, _ in self.event_pages(after):
            for delivered in events:
                yield delivered

    async def _read(self, path: str, params: dict[str, Any] | None = None) -> Any:
        deadline = time.monotonic() + self.retry.deadline_s
        attempt = 0
        while True:
            try:
                return await self._get(path, params)
            except _Retry as retry:
                attempt += 1
                delay_s = self.retry.delay_s(attempt, retry.retry_after_s)
                if time.monotonic() + delay_s > deadline:
                    raise DeadlineExceeded(retry.reason, f"still {retry.reason} after "
                                           f"{self.retry.deadline_s} s") from None
                await asyncio.sleep(delay_s)

    async def _get(self, path: str, params: dict[str, Any] | None = None) -> Any:
        return await self._request("GET", path, params=params)

    async def _request(self, method: str, path: str, **options: Any) -> Any:
        """The answer's body; _Retry when it may be retried, the error for the rest."""
        try:
            response = await self._http.request(method, path, **options)
        except httpx.TransportError as error:  # timeouts and dropped connections included
            raise _Retry(type(error).__name__) from error
        if response.status_code in RETRY_STATUSES:
            raise _Retry(str(response.status_code),
                         float(response.headers.get("retry-after") or 0))
        answer = orjson.loads(response.content)
        if response.status_code != 200:
            raise error_for(response.status_code, answer)
        return answer
