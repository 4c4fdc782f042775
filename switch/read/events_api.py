"""GET /v1/events (long-poll) and GET /v1/events/stream (Server-Sent Events)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator

import orjson
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import BaseRoute, Route

from switch.api.errors import ApiError, json_response
from switch.read.events import CursorInvalid, EventStream, decode_cursor, encode_cursor

POLL_S = 0.05
WAIT_MS_MAX = 30_000
EVENTS_PER_READ_MAX = 1000
KEEPALIVE_S = 15.0


def _query_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not raw.isdigit() or not low <= int(raw) <= high:
        raise ApiError(400, "query_invalid", f"{name} must be an integer from {low} to {high}.")
    return int(raw)


def event_routes(stream: EventStream) -> list[BaseRoute]:
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
        limit = _query_int(request, "limit", 100, 1, EVENTS_PER_READ_MAX)
        wait_ms = _query_int(request, "wait_ms", 0, 0, WAIT_MS_MAX)
        deadline = time.monotonic() + wait_ms / 1000
        while True:
            found, following = await stream.read(cursor, limit)
            if found or time.monotonic() >= deadline:
                return json_response({"events": [d.json() for d in found],
                                      "next": following})
            await asyncio.sleep(POLL_S)

    async def sse(request: Request) -> Response:
        cursor = await start(request)

        async def lines() -> AsyncIterator[bytes]:
            nonlocal cursor
            quiet_since = time.monotonic()
            while True:
                found, _ = await stream.read(cursor, EVENTS_PER_READ_MAX)
                positions = decode_cursor(cursor, stream.shards)
                for delivered in found:
                    positions[delivered.shard] = (delivered.seq, delivered.index + 1)
                    cursor = encode_cursor(positions)
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

    return [Route("/v1/events", events, methods=["GET"]),
            Route("/v1/events/stream", sse, methods=["GET"])]
