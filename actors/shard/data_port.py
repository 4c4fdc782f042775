"""The shard's data port: batches of commands over a plain TCP connection.

A Ray actor call costs the caller about 0.4-0.7 ms of CPU and the actor about 0.3-0.6 ms,
against about 0.04 ms each for a round trip over a socket on this kind of machine (see
bench/RESULTS.md, "Shard calls over a socket"). Ray still starts, names, places and
supervises the shard actors and carries their control calls (status, log feed, close); the
router's batches, the hot path, go over this port instead.

The protocol, all integers little-endian:
  - the client opens with the shard's token (TOKEN_BYTES, given out by the actor over Ray),
    within HANDSHAKE_TIMEOUT_S; the shard answers READY. A connection that does not is
    closed without an answer;
  - then each request is a header (blob length, request-id bytes length), the request ids
    (UTF-8, joined by newlines) and the encoded commands; each answer is its length and the
    encoded BatchReply. Answers come in the order of the requests (the shard runs one batch
    at a time).

One thread per connection (one per ingress process and tool); every batch, from any
connection or from Ray, runs under the actor's one write lock, so the shard stays the single
writer of its accounts, and batches that queue meanwhile are committed together
(actors/shard/combine.py).
"""

from __future__ import annotations

import contextlib
import hmac
import logging
import secrets
import socket
import struct
import threading
import time
from collections.abc import Callable

log = logging.getLogger("payswitch.shard")

TOKEN_BYTES = 32
READY = b"\x01"  # sent once the token is accepted: the client knows the port is served
REQUEST = struct.Struct("<II")  # blob length, request-id bytes length
ANSWER = struct.Struct("<I")  # reply length
FRAME_BYTES_MAX = 64 << 20  # a batch of 8,190 commands is a few MB
HANDSHAKE_TIMEOUT_S = 5.0  # a connection that does not send its token by then is closed
CONNECTIONS_MAX = 64  # ingress processes and tools; beyond it a connection is closed at once
ACCEPT_RETRY_S = 0.1  # after a failed accept (out of descriptors): try again, never give up

Handle = Callable[[bytes, list[str]], bytes]


def decode_request_ids(raw: bytes) -> list[str]:
    return raw.decode().split("\n") if raw else []


class DataPort:
    """Listens on `host` (port chosen by the system) and runs each batch through `handle`."""

    def __init__(self, host: str, handle: Handle) -> None:
        self.token = secrets.token_bytes(TOKEN_BYTES)
        self._handle = handle
        self._listener = socket.create_server((host, 0))
        self.host, self.port = self._listener.getsockname()[:2]
        self._closed = False
        self._connections: set[socket.socket] = set()
        self._lock = threading.Lock()  # guards _connections
        threading.Thread(target=self._accept_forever, name="data-port", daemon=True).start()

    def _accept_forever(self) -> None:
        while not self._closed:
            try:
                connection, _ = self._listener.accept()
            except OSError as error:
                if not self._closed:  # out of descriptors, a connection aborted: go on
                    log.warning("data port: accept failed: %r", error)
                    time.sleep(ACCEPT_RETRY_S)
                continue
            try:
                self._start_serving(connection)
            except (OSError, RuntimeError) as error:  # RuntimeError: no thread to be had
                log.warning("data port: a connection could not be served: %r", error)
                self._forget(connection)

    def _start_serving(self, connection: socket.socket) -> None:
        with self._lock:
            if len(self._connections) >= CONNECTIONS_MAX:
                raise RuntimeError(f"{CONNECTIONS_MAX} connections already")
            self._connections.add(connection)
        connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        connection.settimeout(HANDSHAKE_TIMEOUT_S)
        threading.Thread(target=self._serve, args=(connection,), name="data-connection",
                         daemon=True).start()

    def _forget(self, connection: socket.socket) -> None:
        with self._lock:
            self._connections.discard(connection)
        connection.close()

    def _serve(self, connection: socket.socket) -> None:
        reader = connection.makefile("rb", buffering=1 << 16)
        try:
            if not hmac.compare_digest(reader.read(TOKEN_BYTES), self.token):
                log.warning("data port: a connection without the shard's token was closed")
                return
            connection.settimeout(None)  # batches may be far apart
            connection.sendall(READY)
            while True:
                header = reader.read(REQUEST.size)
                if len(header) < REQUEST.size:
                    return  # the client went away
                blob_bytes, ids_bytes = REQUEST.unpack(header)
                if blob_bytes + ids_bytes > FRAME_BYTES_MAX:
                    log.warning("data port: a request of %d bytes was refused", blob_bytes)
                    return
                request_ids = decode_request_ids(reader.read(ids_bytes))
                blob = reader.read(blob_bytes)
                if len(blob) < blob_bytes:
                    return
                reply = self._handle(blob, request_ids)
                connection.sendall(ANSWER.pack(len(reply)) + reply)
        except OSError:
            return  # reset by the client, timed out before its token, or cut by `close`
        except Exception:  # a bug, a closed shard, ids that are not UTF-8: the caller sees it
            log.exception("data port: the connection was cut")
        finally:
            reader.close()
            self._forget(connection)

    def close(self) -> None:
        """Stop accepting, and cut open connections (a batch under way finishes first: the
        caller holds the write lock while closing the shard)."""
        self._closed = True
        with contextlib.suppress(OSError):  # wakes the accept (a close alone does not)
            self._listener.shutdown(socket.SHUT_RDWR)
        self._listener.close()
        with self._lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):  # already gone
                connection.shutdown(socket.SHUT_RDWR)
