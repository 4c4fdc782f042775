"""The transport seam's contract: the Ray link (a real shard actor) and the in-process twin
(LocalShard) answer every part of `ShardLink` alike, and so does the socket link (batches
over the shard's data port, the rest over Ray)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from actors.codec import decode_events, decode_reply, encode_commands
from actors.ledger.events import AccountCreated, TransferCommitted
from actors.ledger.model import Account, Transfer
from actors.messages import AccountView, Commit, CreateAccount, GetAccount, TransferReply
from actors.shard.actor import RayShards, ShardOptions
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import round_robin
from persistence.layout import shard_directory
from persistence.lmdb_log import LmdbLog
from switch.routing.socket_link import SocketShard
from switch.routing.transport import LocalShard, ShardLink

CONFIG = ShardConfig(0, ("USD",), snapshot_every_events=1_000_000)
ONE_SHARD = round_robin(1, 64, switch_id="test", shards_created=False)


def options(tmp_path: Path) -> ShardOptions:
    return ShardOptions(str(tmp_path), 1 << 24, 1024, "off", 2.0)


@pytest.fixture(params=["local", "ray", "socket"])
def link(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[ShardLink, Any]]:
    """A link to a fresh shard, and how to make the shard go away."""
    if request.param == "local":
        host = ShardHost(CONFIG, lambda: LmdbLog(shard_directory(tmp_path, 0), 1 << 24))
        local = LocalShard(0, host)
        yield local, local.close
        local.close()
        return
    request.getfixturevalue("ray_session")
    fleet = RayShards.start([CONFIG], options(tmp_path), ONE_SHARD)
    yield (fleet.links[0] if request.param == "ray" else SocketShard(fleet.links[0])), fleet.kill
    fleet.kill()


def run(coroutine: Any) -> Any:
    return asyncio.run(coroutine)


def batch(shard: ShardLink, commands: list[Any]) -> list[Any]:
    reply = decode_reply(run(shard.call(encode_commands(commands), ["request-1"])))
    assert not reply.failed, reply
    return list(reply.replies)


def test_a_batch_answers_in_order_and_later_commands_see_earlier_ones(
        link: tuple[ShardLink, Any]) -> None:
    shard, _ = link
    replies = batch(shard, [CreateAccount(Account("a", "USD", 1, "o", 0, "")),
                            CreateAccount(Account("b", "USD", 1, "o", 0, "")),
                            Commit(Transfer("t", "a", "b", 5, "USD", 1), 3),
                            GetAccount("b")])
    assert [r.result for r in replies[:3]] == ["ok", "ok", "ok"]
    assert isinstance(replies[2], TransferReply) and replies[2].transfer.amount == 5
    assert isinstance(replies[3], AccountView) and replies[3].account.credits_posted == 5


def test_status_reports_the_shard_and_its_books(link: tuple[ShardLink, Any]) -> None:
    shard, _ = link
    batch(shard, [CreateAccount(Account("a", "USD", 1, "o", 0, "")),
                  CreateAccount(Account("b", "USD", 1, "o", 0, "")),
                  Commit(Transfer("t", "a", "b", 7, "USD", 1), 3)])
    status = run(shard.status())
    assert (status.shard, status.accounts, status.transfers, status.last_seq) == (0, 2, 1, 1)
    assert [(t.ledger, t.debits_posted, t.credits_posted) for t in status.totals] == [
        ("USD", "7", "7")]
    assert "pid" in run(shard.placement())


def test_the_log_feed_serves_committed_records_from_a_position(
        link: tuple[ShardLink, Any]) -> None:
    shard, _ = link
    batch(shard, [CreateAccount(Account("a", "USD", 1, "o", 0, "")),
                  CreateAccount(Account("b", "USD", 1, "o", 0, ""))])
    for n in range(5):
        batch(shard, [Commit(Transfer(f"t{n}", "a", "b", n + 1, "USD", 1), 3)])
    feed = run(shard.read_log(1, 100, 1 << 20))
    assert [r.seq for r in feed.records] == [1, 2, 3, 4, 5, 6] and feed.last_seq == 6
    first = decode_events(feed.records[0].payload)
    assert [type(e) for e in first] == [AccountCreated, AccountCreated]
    later = run(shard.read_log(4, 2, 1 << 20))
    assert [r.seq for r in later.records] == [4, 5]
    assert [e.transfer.id for r in later.records for e in decode_events(r.payload)
            if isinstance(e, TransferCommitted)] == ["t2", "t3"]
    assert [r.seq for r in run(shard.read_log(2, 100, 1)).records] == [2]  # bytes bound
    beyond = run(shard.read_log(99, 10, 1 << 20))
    assert beyond.records == [] and beyond.last_seq == 6


def test_a_shard_gone_fails_its_calls(link: tuple[ShardLink, Any]) -> None:
    shard, go_away = link
    batch(shard, [CreateAccount(Account("a", "USD", 1, "o", 0, ""))])
    go_away()  # ray.kill returns before the actor is gone: a call may still slip in
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            run(shard.call(encode_commands([GetAccount("a")]), []))
        except Exception:
            return
        time.sleep(0.1)
    raise AssertionError("calls to a shard that went away still succeed after 30 s")
