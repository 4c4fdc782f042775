"""One write per response: the coalescing transport under uvicorn's httptools protocol, alone
(writes counted) and in a real uvicorn server over a real socket."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest
import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.routing import Route

from switch.api.http_protocol import CoalescingHttpToolsProtocol, _CoalescingTransport


class RecordingTransport:
    def __init__(self) -> None:
        self.writes: list[bytes] = []
        self.closed = self.aborted = False

    def write(self, data: bytes) -> None:
        self.writes.append(data)

    def is_closing(self) -> bool:
        return self.closed or self.aborted

    def close(self) -> None:
        self.closed = True

    def abort(self) -> None:
        self.aborted = True

    def get_write_buffer_size(self) -> int:
        return 0

    def get_extra_info(self, name: str) -> str:
        return f"extra {name}"


def test_writes_in_one_turn_leave_as_one_at_its_end() -> None:
    async def scenario() -> None:
        inner = RecordingTransport()
        transport = _CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"HTTP/1.1 200 OK\r\n\r\n")
        transport.write(b"body")
        assert inner.writes == [] and transport.get_write_buffer_size() == 23
        await asyncio.sleep(0)
        assert inner.writes == [b"HTTP/1.1 200 OK\r\n\r\nbody"]
        transport.writelines([b"li", b"nes"])
        transport.write(b"next")
        transport.close()  # what is held leaves before the close
        assert inner.writes[-1] == b"linesnext" and inner.closed
        assert transport.get_extra_info("socket") == "extra socket"

    asyncio.run(scenario())


def test_an_abort_drops_what_is_held() -> None:
    async def scenario() -> None:
        inner = RecordingTransport()
        transport = _CoalescingTransport(inner, asyncio.get_running_loop())  # type: ignore[arg-type]
        transport.write(b"held")
        transport.abort()
        await asyncio.sleep(0)
        assert inner.writes == [] and inner.aborted

    asyncio.run(scenario())


async def _echo(request: Request) -> Response:
    return Response(await request.body() or b"empty", media_type="text/plain")


async def _slow_stream(request: Request) -> StreamingResponse:
    async def chunks() -> Any:
        await asyncio.sleep(1.0)
        yield b"late"

    return StreamingResponse(chunks(), media_type="text/plain")


@pytest.fixture(scope="module")
def server() -> Iterator[int]:
    app = Starlette(routes=[Route("/echo", _echo, methods=["GET", "POST", "HEAD"]),
                            Route("/stream", _slow_stream)])
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    config = uvicorn.Config(app, loop="uvloop", http=CoalescingHttpToolsProtocol,
                            log_level="warning", lifespan="off")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    while not running.started:
        time.sleep(0.01)
    yield sock.getsockname()[1]
    running.should_exit = True
    thread.join(timeout=10)


def _exchange(port: int, raw: bytes, until: bytes, timeout_s: float = 5) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout_s) as connection:
        connection.sendall(raw)
        received = b""
        while until not in received:
            chunk = connection.recv(65536)
            if not chunk:
                break
            received += chunk
        return received


def test_pipelined_requests_each_get_their_whole_answer(server: int) -> None:
    raw = b"".join(b"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nbody" +
                   str(n).encode() for n in range(3))
    received = _exchange(server, raw, b"body2")
    assert received.count(b"HTTP/1.1 200 OK") == 3
    assert [b"body0" in received, b"body1" in received, b"body2" in received] == [True] * 3


def test_a_head_request_and_a_malformed_one_are_answered(server: int) -> None:
    head = _exchange(server, b"HEAD /echo HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and head.endswith(b"\r\n\r\n")
    bad = _exchange(server, b"NOT HTTP AT ALL\r\n\r\n", b"Invalid")
    assert bad.startswith(b"HTTP/1.1 400")  # written, then the connection closed: it left


def test_a_streaming_answer_sends_its_head_before_its_first_chunk(server: int) -> None:
    started = time.monotonic()
    head = _exchange(server, b"GET /stream HTTP/1.1\r\nHost: x\r\n\r\n", b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK") and time.monotonic() - started < 0.9
