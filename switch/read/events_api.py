"""GET /v1/events (long-poll) and GET /v1/events/stream (Server-Sent Events).

Waiting readers (a long-poll with `wait_ms`, a stream) have slots of their own, bounded in
total and per client (`server.streams_max`, `server.streams_per_client_max`), apart from the
requests in flight that writes use: they can never starve transfers, and a client that goes
away frees its slot at once (a long-poll checks between polls; a stream ends with its
connection).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from switch.api.auth import Principal, principal_of
from switch.api.errors import ApiError, json_response
from switch.api.params import required_int
from switch.read.events import (
    CursorInvalid,
    Delivered,
    EventStream,
    decode_cursor,
    encode_cursor,
)

EVENTS_PATH = "/v1/events"
POLL_S = 0.05
WAIT_MS_MAX = 30_000
EVENTS_PER_READ_MAX = 1000
KEEPALIVE_S = 15.0


class StreamSlots:
    """Slots for waiting readers: in total, and per client address."""

    def __init__(self, total_max: int, per_client_max: int, retry_after_seconds: int) -> None:
        self.total_max = total_max
        self.per_client_max = per_client_max
        self.retry_after_seconds = retry_after_seconds
        self.by_client: dict[str, int] = {}
        self.taken = 0

    def take(self, request: Request) -> str:
        client = request.client.host if request.client is not None else ""
        if self.taken >= self.total_max or self.by_client.get(client, 0) >= self.per_client_max:
            raise ApiError(429, "too_many_streams", "Too many waiting reads (long-polls and "
                           "streams) are open; close one or retry later.",
                           retry_after_seconds=self.retry_after_seconds)
        self.taken += 1
        self.by_client[client] = self.by_client.get(client, 0) + 1
        return client

    def give_back(self, client: str) -> None:
        self.taken -= 1
        left = self.by_client[client] - 1
        if left:
            self.by_client[client] = left
        else:
            del self.by_client[client]


# Which of these events the request's principal may see (switch/api/access.py).
Visible = Callable[[Principal, list[Delivered]], Awaitable[list[Delivered]]]


def event_routes(stream: EventStream, slots: StreamSlots, visible: Visible,
                 allows: Callable[[Principal], bool]) -> list[BaseRoute]:
    """`allows`: whether a principal's key is still in force; a stream ends once it is not
    (revoked, or its participant disabled)."""
    async def read(request: Request, cursor: str, limit: int) -> tuple[list[Delivered], str]:
        """A page of the events this principal may see (maybe none, the cursor moved on)."""
        found, following = await stream.read(cursor, limit)
        return await visible(principal_of(request), found), following

    async def start(request: Request) -> str:
        after = request.query_params.get("after") or request.headers.get("last-event-id") or "0"
        if after == "latest":
            return await stream.latest()
        try:
            decode_cursor(after, stream.shards)
        except CursorInvalid as error:
            raise ApiError(400, "cursor_invalid", str(error)) from None
        return after

    async def events(request: Request) -> Response:
        cursor = await start(request)
        limit = required_int(request, "limit", 100, 1, EVENTS_PER_READ_MAX)
        wait_ms = required_int(request, "wait_ms", 0, 0, WAIT_MS_MAX)
        if not wait_ms:  # a plain read: it counts against the in-flight limit (app.py)
            found, following = await read(request, cursor, limit)
            return json_response({"events": [d.json() for d in found], "next": following})
        client = slots.take(request)  # a read that may wait: its slot, from the start
        try:
            found, following = await read(request, cursor, limit)
            deadline = time.monotonic() + wait_ms / 1000
            while not found and time.monotonic() < deadline:
                await asyncio.sleep(POLL_S)
                if await request.is_disconnected():
                    break  # nobody to answer: free the slot now
                found, following = await read(request, following, limit)
        finally:
            slots.give_back(client)
        return json_response({"events": [d.json() for d in found], "next": following})

    async def sse(request: Request) -> Response:
        principal = principal_of(request)
        cursor = await start(request)
        client = slots.take(request)

        async def lines() -> AsyncIterator[bytes]:
            try:
                async for line in _lines():
                    yield line
            finally:  # the client went away (or the server stops): the slot is free again
                slots.give_back(client)

        async def _lines() -> AsyncIterator[bytes]:
            nonlocal cursor
            quiet_since = time.monotonic()
            while allows(principal):
                found, _ = await stream.read(cursor, EVENTS_PER_READ_MAX)
                shown = {id(d) for d in await visible(principal, found)}
                positions = decode_cursor(cursor, stream.shards)
                for delivered in found:  # the cursor passes the events not shown too
                    positions[delivered.shard] = (delivered.seq, delivered.index + 1)
                    cursor = encode_cursor(positions)
                    if id(delivered) in shown:
                        yield b"id: " + cursor.encode() + b"\ndata: " + orjson.dumps(
                            delivered.json()) + b"\n\n"
                if found:
                    quiet_since = time.monotonic()
                    continue
                if time.monotonic() - quiet_since > KEEPALIVE_S:
                    quiet_since = time.monotonic()
                    yield b": keep-alive\n\n"
                await asyncio.sleep(POLL_S * 2)

        return StreamingResponse(lines(), media_type="text/event-stream",
                                 headers={"Cache-Control": "no-store"})

    return [Route(EVENTS_PATH, events, methods=["GET"]),
            Route(EVENTS_PATH + "/stream", sse, methods=["GET"])]
