"""The shard's data port on a real shard actor: only the token opens it, calls on one
connection are pipelined and answered in order, and a dropped connection fails what waited
on it and is opened again for the next call."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import ray

from actors.codec import decode_reply, encode_commands
from actors.ledger.model import Account, Transfer
from actors.messages import AccountView, Commit, CreateAccount, GetAccount
from actors.shard import data_port
from actors.shard.actor import RayShard, RayShards, ShardOptions
from actors.shard.data_port import ANSWER, READY, REQUEST, TOKEN_BYTES, DataPort
from actors.shard.host import ShardConfig
from actors.topology import round_robin
from persistence.layout import shard_directory
from persistence.lock import is_locked
from switch.routing import socket_link
from switch.routing.socket_link import ShardConnectionLost, SocketShard

CONFIG = ShardConfig(0, ("USD",), snapshot_every_events=1_000_000)
ONE_SHARD = round_robin(1, 64, switch_id="test", shards_created=False)


def options(tmp_path: Path) -> ShardOptions:
    return ShardOptions(str(tmp_path), 1 << 24, 1024, "off", 2.0)


@pytest.fixture
def fleet(ray_session: Any, tmp_path: Path) -> Iterator[RayShards]:
    shards = RayShards.start([CONFIG], options(tmp_path), ONE_SHARD)
    yield shards
    shards.kill()


def _raw_call(host: str, port: int, opening: bytes, blob: bytes) -> bytes:
    """One request on a fresh connection that opens with `opening`; b"" if it is cut."""
    with socket.create_connection((host, port), timeout=10) as connection:
        connection.sendall(opening + REQUEST.pack(len(blob), 0) + blob)
        received = b""
        if connection.recv(len(READY)) != READY:
            return b""
        while chunk := connection.recv(1 << 16):
            received += chunk
            if len(received) >= ANSWER.size and \
                    len(received) >= ANSWER.size + ANSWER.unpack_from(received)[0]:
                break
        return received


def test_only_the_token_opens_the_port(fleet: RayShards) -> None:
    link = fleet.links[0]
    host, port, token = asyncio.run(link.data_endpoint())
    assert len(token) == TOKEN_BYTES
    create = encode_commands([CreateAccount(Account("a", "USD", 1, "o", 0, ""))])
    wrong = bytes([token[0] ^ 1]) + token[1:]
    assert _raw_call(host, port, wrong, create) == b""  # cut, and nothing applied
    assert _raw_call(host, port, b"", create) == b""
    read = encode_commands([GetAccount("a")])
    answer = _raw_call(host, port, token, read)
    (reply,) = decode_reply(answer[ANSWER.size:]).replies
    assert isinstance(reply, AccountView) and reply.account is None  # nothing was created
    created = decode_reply(_raw_call(host, port, token, create)[ANSWER.size:])
    assert [r.result for r in created.replies] == ["ok"]


def test_calls_on_one_connection_are_pipelined_and_answered_in_order(fleet: RayShards) -> None:
    shard = SocketShard(fleet.links[0])

    async def many() -> list[Any]:
        await shard.call(encode_commands([CreateAccount(Account("a", "USD", 1, "o", 0, "")),
                                          CreateAccount(Account("b", "USD", 1, "o", 0, ""))]),
                         [])
        calls = [shard.call(encode_commands([Commit(Transfer(f"t{n}", "a", "b", n + 1, "USD",
                                                              1), 3)]), [f"request-{n}"])
                 for n in range(50)]
        return [decode_reply(blob).replies[0] for blob in await asyncio.gather(*calls)]

    replies = asyncio.run(many())
    assert [(r.result, r.transfer.id) for r in replies] == [("ok", f"t{n}") for n in range(50)]


def test_a_dropped_connection_fails_its_waiters_and_is_opened_again(fleet: RayShards) -> None:
    shard = SocketShard(fleet.links[0])
    read = encode_commands([GetAccount("a")])

    async def scenario() -> None:
        await shard.call(read, [])
        connection = await shard._connection()
        connection._writer.transport.abort()  # the socket drops under a waiting call
        with pytest.raises(ShardConnectionLost):
            await connection.call(read, [])
        assert decode_reply(await shard.call(read, [])).replies  # a new connection

    asyncio.run(scenario())


def test_a_shard_restarted_by_ray_never_makes_its_directory_again(fleet: RayShards,
                                                                  tmp_path: Path) -> None:
    """Ray restarts a dead shard with the arguments it was first made with: on the first run
    of a directory those allow making it. A restart must not: its directory gone (a node
    back without its disk), it refuses instead of serving an empty shard."""
    pid = int(fleet.placements()[0]["pid"])
    directory = tmp_path / "shard-0000"
    directory.rename(tmp_path / "moved-away")
    os.kill(pid, signal.SIGKILL)
    with pytest.raises(ray.exceptions.RayActorError, match="will not start"):
        ray.get(fleet.actors[0].status.remote(), timeout=60)
    assert not directory.exists()


def test_a_restarted_shard_is_reached_at_its_new_port(fleet: RayShards, tmp_path: Path) -> None:
    """The port is asked of the actor each time a connection opens: a shard started again
    (here: another actor on the same data) is found where it now listens."""
    first = SocketShard(fleet.links[0])
    create = encode_commands([CreateAccount(Account("a", "USD", 1, "o", 0, ""))])
    assert decode_reply(asyncio.run(first.call(create, []))).replies[0].result == "ok"
    fleet.close()
    ray.kill(fleet.actors[0], no_restart=True)
    again = RayShards.start([CONFIG], options(tmp_path), ONE_SHARD)
    try:
        first._control = again.links[0]
        (view,) = decode_reply(asyncio.run(first.call(encode_commands([GetAccount("a")]),
                                                      []))).replies
        assert isinstance(view, AccountView) and view.account.id == "a"
    finally:
        again.kill()


def test_the_port_listens_on_the_address_ray_knows_the_node_by(fleet: RayShards) -> None:
    """(The switch binds its embedded Ray to loopback: tests/test_exposure.py checks that
    nothing of it, data ports included, listens elsewhere.)"""
    link = fleet.links[0]
    assert isinstance(link, RayShard)
    host, port, _ = asyncio.run(link.data_endpoint())
    assert host == ray.util.get_node_ip_address() and port > 0


def test_a_closed_shard_takes_no_batch_and_keeps_its_directory_closed(fleet: RayShards,
                                                                      tmp_path: Path) -> None:
    """After a clean stop nothing reaches the log: not a batch already read from the port,
    not a new connection (the review found the log reopened by the retry of such a batch)."""
    host, port, token = asyncio.run(fleet.links[0].data_endpoint())
    with socket.create_connection((host, port), timeout=10) as early:
        early.sendall(token)
        assert early.recv(1) == READY
        fleet.close()
        create = encode_commands([CreateAccount(Account("a", "USD", 1, "o", 0, ""))])
        early.sendall(REQUEST.pack(len(create), 0) + create)
        assert early.recv(1 << 16) == b""  # cut, unanswered
    with pytest.raises(OSError):  # nobody listens any more
        _raw_call(host, port, token, create)
    with pytest.raises(ray.exceptions.RayTaskError):
        ray.get(fleet.actors[0].handle.remote(create, []))
    assert not is_locked(shard_directory(tmp_path, 0))


def _served(port: DataPort) -> bytes:
    """What a well-behaved client gets for "ping" (b"" if the port cuts it)."""
    expected = len(READY) + ANSWER.size + 4
    with socket.create_connection((port.host, port.port), timeout=10) as connection:
        connection.sendall(port.token + REQUEST.pack(4, 0) + b"ping")
        received = b""
        with contextlib.suppress(ConnectionResetError):  # cut with the request unread
            while len(received) < expected and (chunk := connection.recv(1 << 16)):
                received += chunk
        return received


def test_the_port_outlives_silent_clients_and_failed_accepts(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(data_port, "HANDSHAKE_TIMEOUT_S", 0.3)
    monkeypatch.setattr(data_port, "CONNECTIONS_MAX", 4)
    port = DataPort("127.0.0.1", lambda blob, ids: blob[::-1])
    try:
        silent = [socket.create_connection((port.host, port.port)) for _ in range(6)]
        over = silent[-1]  # beyond the cap: closed at once
        assert over.recv(1) == b""
        assert _served(port) in (b"", READY + ANSWER.pack(4) + b"gnip")
        for connection in silent[:4]:  # no token within the handshake timeout: closed
            connection.settimeout(5)
            assert connection.recv(1) == b""
        assert _served(port) == READY + ANSWER.pack(4) + b"gnip"
        failing = iter([RuntimeError("can't start new thread")])
        serve = port._start_serving
        monkeypatch.setattr(port, "_start_serving",
                            lambda connection: serve(connection) if (error := next(failing, None))
                            is None else (_ for _ in ()).throw(error))
        with socket.create_connection((port.host, port.port), timeout=5) as unlucky:
            assert unlucky.recv(1) == b""
        assert _served(port) == READY + ANSWER.pack(4) + b"gnip"  # the accept loop lives on
        for connection in silent:
            connection.close()
    finally:
        port.close()


def test_a_port_that_never_serves_fails_the_connect_instead_of_hanging(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(socket_link, "CONNECT_TIMEOUT_S", 0.5)
    stuck = socket.create_server(("127.0.0.1", 0))  # listens, never accepts
    endpoint = ("127.0.0.1", stuck.getsockname()[1], b"t" * TOKEN_BYTES)

    class Control:
        index = 0

        async def data_endpoint(self) -> tuple[str, int, bytes]:
            return endpoint

    try:
        with pytest.raises(ShardConnectionLost):
            asyncio.run(SocketShard(Control()).call(b"blob", []))  # type: ignore[arg-type]
    finally:
        stuck.close()
