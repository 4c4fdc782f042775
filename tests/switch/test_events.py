"""The event stream: every committed event once, in commit order per shard, resumable."""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

import orjson
import pytest

from switch.read.events import EventStream
from switch.routing.channel import ShardUnavailable
from tests.conftest import RunningSwitch
from tests.switch.test_api import account, transfer


def read_all(switch: RunningSwitch, cursor: str = "0", limit: int = 7) -> tuple[list[Any], str]:
    events: list[Any] = []
    while True:
        page = switch.get(f"/v1/events?after={cursor}&limit={limit}").json()
        events.extend(page["events"])
        cursor = page["next"]
        if not page["events"]:
            return events, cursor


def settle(switch: RunningSwitch) -> None:
    """Wait until no cross-shard part awaits its finalize (answers leave before it)."""
    deadline = time.monotonic() + 10
    while switch.in_doubt():
        assert time.monotonic() < deadline
        time.sleep(0.02)


def test_every_event_once_in_order_per_shard(switch: RunningSwitch) -> None:
    names = [f"e{i}" for i in range(12)]
    switch.post("/v1/accounts", [account("bank")] + [account(n) for n in names])
    switch.post("/v1/transfers", [transfer(f"et{i}", "bank", n, 5) for i, n in enumerate(names)])
    settle(switch)
    events, cursor = read_all(switch)
    keys = [(e["shard"], e["seq"], e["index"]) for e in events]
    assert len(keys) == len(set(keys)), "an event was delivered twice"
    for shard in range(len(switch.shards)):
        mine = [(seq, index) for s, seq, index in keys if s == shard]
        assert mine == sorted(mine), "a shard's events out of commit order"
    created = [e["event"]["account"]["id"] for e in events
               if e["event"]["type"] == "account_created"]
    assert sorted(created) == sorted(["bank", *names])
    committed = [e["event"]["transfer"]["id"] for e in events
                 if e["event"]["type"] == "transfer_committed"]
    assert sorted(committed) == sorted(f"et{i}" for i in range(12))
    # Resuming from the cursor gives exactly what came after.
    switch.post("/v1/transfers", transfer("et-late", "bank", "e0", 1))
    settle(switch)
    later, _ = read_all(switch, cursor)
    assert {e["event"].get("transfer", {}).get("id") or e["event"].get("transfer_id")
            for e in later} == {"et-late"}


def test_long_poll_returns_when_an_event_arrives(switch: RunningSwitch) -> None:
    switch.post("/v1/accounts", [account("bank"), account("lp")])
    latest = switch.get("/v1/events?after=latest").json()
    assert latest["events"] == []
    result: dict[str, Any] = {}

    def wait() -> None:
        started = time.monotonic()
        result["page"] = switch.get(f"/v1/events?after={latest['next']}&wait_ms=10000").json()
        result["seconds"] = time.monotonic() - started

    waiter = threading.Thread(target=wait)
    waiter.start()
    time.sleep(0.5)
    switch.post("/v1/transfers", transfer("lp-1", "bank", "lp", 3))
    waiter.join()
    # It waited for the transfer (sent after half a second), then answered at once.
    assert result["page"]["events"] and 0.4 <= result["seconds"] < 9


def test_server_sent_events_resume_with_last_event_id(switch: RunningSwitch) -> None:
    switch.post("/v1/accounts", [account("bank")] + [account(f"s{i}") for i in range(3)])
    ids: list[str] = []
    data: list[Any] = []
    with switch.client.stream("GET", switch.url + "/v1/events/stream?after=0") as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id: "):
                ids.append(line[4:])
            elif line.startswith("data: "):
                data.append(orjson.loads(line[6:]))
            if len(data) == 4:
                break
    assert len(ids) == 4 and len(set(ids)) == 4
    headers = {"last-event-id": ids[1]}
    with switch.client.stream("GET", switch.url + "/v1/events/stream",
                              headers=headers) as response:
        for line in response.iter_lines():
            if line.startswith("data: "):
                resumed = orjson.loads(line[6:])
                break
    assert (resumed["shard"], resumed["seq"], resumed["index"]) == (
        data[2]["shard"], data[2]["seq"], data[2]["index"])


def test_bad_cursors_and_limits(switch: RunningSwitch) -> None:
    for query, code in (("after=nonsense", "cursor_invalid"),
                        ("after=W1sxLDBdXQ", "cursor_invalid"), ("limit=0", "query_invalid"),
                        ("limit=5000", "query_invalid"), ("wait_ms=-1", "query_invalid")):
        response = switch.get(f"/v1/events?{query}")
        assert response.status_code == 400, query
        assert response.json()["code"] == code, (query, response.text)


def test_a_dead_shard_makes_the_event_read_answer_503_not_500() -> None:
    """The soak found it: a failpoint ended a shard, and GET /v1/events answered 500. A shard
    that cannot answer is unavailable (503, Retry-After), whatever Ray raised."""

    class DeadLink:
        async def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> Any:
            raise RuntimeError("ActorDiedError, as Ray would raise it")

    stream = EventStream([DeadLink(), DeadLink()])  # type: ignore[list-item]
    with pytest.raises(ShardUnavailable, match="shard 0 is unavailable"):
        asyncio.run(stream.read("0", 10))
    with pytest.raises(ShardUnavailable, match="shard 0 is unavailable"):  # after=latest
        asyncio.run(stream.latest())
