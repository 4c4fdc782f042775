"""A home that told redrive "void" for an attempt never commits that attempt afterwards.

Redrive asks a transfer's home (a chain's coordinator) what became of an attempt whose parts
are in doubt; told void, it voids the parts on their shards. The home's Commit of that same
attempt may still arrive later: read from a connection that dropped, waiting behind the
shard's write lock, or sent by another ingress process. It must not commit then (its parts
are gone: the money would move on one side only), before or after a restart, from the log or
from a snapshot. Another attempt of the same transfer may commit.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import orjson
import pytest

from actors.codec import FORMAT_VERSION, decode_events, encode_events
from actors.ledger.events import AttemptFenced, ReservationVoided
from actors.ledger.ledger import VOID
from actors.ledger.model import Roles, Transfer
from actors.messages import Commit, ResolveChain
from actors.messages import Resolve as ResolveAttempt
from actors.shard.host import ShardConfig
from switch.read.events import event_from_json, event_json
from tests.actors.test_chain_table import commit_chain, fields, part
from tests.actors.test_host import account, call, host_on, transfer

HOME_AND_DEBIT = Roles.debit  # a cross-shard transfer's home holding its debit side


@pytest.mark.parametrize("snapshot_every_events", [1_000_000, 1])
def test_a_voided_attempt_never_commits_later(tmp_path: Path,
                                              snapshot_every_events: int) -> None:
    config = ShardConfig(0, ("USD",), snapshot_every_events=snapshot_every_events)
    host = host_on(tmp_path, config)
    call(host, [account("a"), account("b")])
    (told,) = call(host, [ResolveAttempt("t1", 7)])
    assert told.verdict.outcome == VOID  # redrive now voids t1's parts elsewhere
    late = Commit(transfer("t1", "a", "b", 5), HOME_AND_DEBIT, "ok", 7)
    (reply,) = call(host, [late])
    assert reply.result != "ok", reply
    host.close()
    host = host_on(tmp_path, config)  # the fence is durable
    (reply,) = call(host, [late])
    assert reply.result != "ok", reply
    (retried,) = call(host, [Commit(transfer("t1", "a", "b", 5), HOME_AND_DEBIT, "ok", 8)])
    assert retried.result == "ok"
    host.close()


def test_a_voided_chain_attempt_never_commits_later(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    call(host, [account("a"), account("b")])
    (told,) = call(host, [ResolveChain("c1", 7)])
    assert told.decision is None  # redrive now voids the chain's parts elsewhere
    members = [part(fields("c1", "a", "b", 5), Roles.both | Roles.home, 0)]
    (reply,) = call(host, [commit_chain("c1", 7, members, ["ok"])])
    assert reply.decision is None, reply
    (retried,) = call(host, [commit_chain("c1", 8, members, ["ok"])])
    assert retried.decision is not None
    host.close()


def test_a_record_with_a_fence_is_of_a_format_an_older_release_refuses() -> None:
    """Releases before fences read formats up to 3: they stop with "upgrade payswitch"
    instead of failing on an event kind they do not know."""
    payload = encode_events([AttemptFenced("t1", 7)])
    assert payload[0] == FORMAT_VERSION >= 4
    assert decode_events(payload) == [AttemptFenced("t1", 7)]


def test_a_voided_reservation_carries_its_part_and_older_records_still_read() -> None:
    """Format 8: `reservation_voided` holds the part as reserved (a participant's stream
    shows what was released). A format-7 record's void, written without it, reads as None;
    the WAL tool's JSON carries it both ways."""
    reserved = Transfer("t1", "a", "b", 5, "USD", 1)
    payload = encode_events([ReservationVoided("t1", reserved)])
    assert payload[0] == FORMAT_VERSION >= 8
    assert decode_events(payload) == [ReservationVoided("t1", reserved)]
    older = bytes([7]) + msgspec.msgpack.encode([["reservation_voided", "t1"]])
    assert decode_events(older) == [ReservationVoided("t1", None)]
    for event in (ReservationVoided("t1", reserved), ReservationVoided("t1")):
        assert event_from_json(orjson.loads(orjson.dumps(event_json(event)))) == event
