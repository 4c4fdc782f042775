"""A shard link whose batches go over the shard's data port (actors/shard/data_port.py).

The control calls (status, log feed, placement) and the port's address and token go over the
shard's Ray link; only `call`, the router's batches, takes the socket. One connection per
shard, opened on first use and again after it drops; calls on it are pipelined and answered
in order. A dropped connection fails every call waiting on it with `ShardConnectionLost`,
which the router's channel answers as 503, as it does a dead actor: a batch sent before the
drop may have committed, and redrive settles what that leaves in doubt.
"""

from __future__ import annotations

import asyncio
import logging
import socket
from collections import deque
from typing import Any, Protocol

from actors.messages import LogFeed
from actors.shard.data_port import ANSWER, READY, REQUEST
from actors.shard.stats import ShardStatus

log = logging.getLogger("payswitch.router")

CONNECT_TIMEOUT_S = 10.0
ENDPOINT_TIMEOUT_S = 2.0  # a restarting shard holds the call until recovered: 503 sooner
KEEPALIVE_IDLE_S = 10
KEEPALIVE_INTERVAL_S = 5


class ControlLink(Protocol):
    """What a socket link asks of the shard's Ray link (actors.shard.actor.RayShard)."""

    index: int

    async def status(self) -> ShardStatus: ...

    async def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed: ...

    async def placement(self) -> dict[str, Any]: ...

    async def data_endpoint(self) -> tuple[str, int, bytes]: ...


class ShardConnectionLost(ConnectionError):
    """The data port's connection dropped before the answer came."""


class _Connection:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.loop = asyncio.get_running_loop()
        self._writer = writer
        self._waiting: deque[asyncio.Future[bytes]] = deque()
        self.closed = False
        self._reading = self.loop.create_task(self._read_answers(reader))

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        if self.closed:
            raise ShardConnectionLost("the shard's data connection is closed")
        future: asyncio.Future[bytes] = self.loop.create_future()
        self._waiting.append(future)
        ids = "\n".join(request_ids).encode()
        try:
            self._writer.writelines((REQUEST.pack(len(blob), len(ids)), ids, blob))
            await self._writer.drain()
        except (OSError, RuntimeError) as error:  # RuntimeError: the transport is closing
            self.close(f"the shard's data connection dropped: {error!r}")
        return await future  # `close` failed it, if the connection dropped

    async def _read_answers(self, reader: asyncio.StreamReader) -> None:
        try:
            while True:
                (size,) = ANSWER.unpack(await reader.readexactly(ANSWER.size))
                answer = await reader.readexactly(size)
                future = self._waiting.popleft()
                if not future.done():  # its caller may have gone: the answer is dropped
                    future.set_result(answer)
        except (OSError, EOFError, IndexError) as error:  # IncompleteReadError is an EOFError
            self.close(f"the shard's data connection dropped: {error!r}")

    def close(self, why: str) -> None:
        if self.closed:
            return
        self.closed = True
        while self._waiting:
            future = self._waiting.popleft()
            if not future.done():
                future.set_exception(ShardConnectionLost(why))
        if not self.loop.is_closed():
            self._writer.close()
            self._reading.cancel()
        # else its loop is gone (only tests run several): the socket closes when collected


class SocketShard:
    """`ShardLink` over a shard's data port, with its control calls over Ray."""

    def __init__(self, control: ControlLink) -> None:
        self.index = control.index
        self._control = control
        self._opening: asyncio.Task[_Connection] | None = None
        listeners = getattr(control, "on_failover", None)
        if listeners is not None:  # after a failover, calls go to the new leader's port
            listeners.append(self._drop_connection)

    def _drop_connection(self) -> None:
        """Fail what waits on the old leader's connection (a paused machine's socket stays
        open, and would hold the shard's calls until it resumes or keepalive ends it)."""
        opening = self._opening
        if opening is not None and opening.done() and not opening.cancelled() \
                and opening.exception() is None:
            opening.result().close(f"shard {self.index} failed over to a new leader")

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        connection = await self._connection()
        return await connection.call(blob, request_ids)

    async def _connection(self) -> _Connection:
        loop = asyncio.get_running_loop()
        opening = self._opening
        if opening is None or opening.get_loop() is not loop or not _usable(opening):
            if opening is not None and opening.done() and not opening.cancelled() \
                    and opening.exception() is None:
                opening.result().close("replaced")  # closed already, or of a finished loop
            opening = self._opening = loop.create_task(self._open())
        return await asyncio.shield(opening)

    async def _open(self) -> _Connection:
        try:
            host, port, token = await asyncio.wait_for(self._control.data_endpoint(),
                                                       ENDPOINT_TIMEOUT_S)
        except TimeoutError:
            raise ShardConnectionLost(f"shard {self.index} did not give its data port within "
                                      f"{ENDPOINT_TIMEOUT_S:.0f} s (restarting?)") from None
        try:
            reader, writer = await asyncio.wait_for(asyncio.open_connection(host, port),
                                                    CONNECT_TIMEOUT_S)
            _keep_alive(writer)
            writer.write(token)
            # The shard says it serves the connection: a port whose accept is stuck would
            # otherwise take the request into its backlog and never answer.
            if await asyncio.wait_for(reader.readexactly(len(READY)), CONNECT_TIMEOUT_S) \
                    != READY:
                raise ShardConnectionLost("the shard's data port did not accept the token")
        except (OSError, EOFError) as error:  # TimeoutError is an OSError
            raise ShardConnectionLost(f"shard {self.index}'s data port at {host}:{port}: "
                                      f"{error!r}") from None
        log.info("shard %d: data connection to %s:%d", self.index, host, port)
        return _Connection(reader, writer)

    async def status(self) -> ShardStatus:
        return await self._control.status()

    async def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed:
        return await self._control.read_log(from_seq, records_max, bytes_max)

    async def placement(self) -> dict[str, Any]:
        return await self._control.placement()


def _keep_alive(writer: asyncio.StreamWriter) -> None:
    """A shard's node that vanishes without closing the connection (power, network) is
    noticed in about KEEPALIVE_IDLE_S + 3 * KEEPALIVE_INTERVAL_S, not never."""
    sock = writer.get_extra_info("socket")
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL_S)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def _usable(opening: asyncio.Task[_Connection]) -> bool:
    """Still opening, or open: a failed or dropped connection is opened again."""
    if not opening.done():
        return True
    return not opening.cancelled() and opening.exception() is None \
        and not opening.result().closed
