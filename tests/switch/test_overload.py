"""Overload answers 429/503 with Retry-After, and retrying the same ids converges."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningSwitch, assert_balanced, switch_settings
from tests.switch.test_api import account, transfer


@pytest.fixture
def small_switch(ray_session: None, tmp_path: Path) -> Iterator[RunningSwitch]:
    settings = switch_settings(tmp_path, shards=2, **{
        "api.batch_items_max": 50, "router.call_commands_max": 50,
        "router.shard_queue_commands_max": 60, "server.requests_in_flight_max": 12,
        # Redrive must not be what finishes the work a full queue interrupted.
        "router.redrive_interval_ms": 600_000,
    })
    running = RunningSwitch(settings).start()
    yield running
    running.stop()


def test_full_queues_answer_429_and_retries_converge(small_switch: RunningSwitch) -> None:
    switch = small_switch
    names = [f"o{i}" for i in range(20)]
    switch.post("/v1/accounts", [account("bank")] + [account(n) for n in names])
    batches = [[transfer(f"b{b}-{i}", "bank", names[i % 20], 1) for i in range(50)]
               for b in range(40)]
    statuses: list[tuple[int, dict[str, Any], str | None]] = []
    lock = threading.Lock()

    def send(batch: list[dict[str, Any]]) -> None:
        with httpx.Client(timeout=60, headers=switch.client.headers) as client:
            while True:
                response = client.post(switch.url + "/v1/transfers", json=batch)
                with lock:
                    statuses.append((response.status_code, response.json(),
                                     response.headers.get("retry-after")))
                if response.status_code == 200:
                    results = {r["result"] for r in response.json()["results"]}
                    assert results <= {"ok", "exists", "in_flight"}
                    if "in_flight" not in results:
                        return
                time.sleep(0.05)

    threads = [threading.Thread(target=send, args=(batch,)) for batch in batches]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    refused = [(s, body, retry) for s, body, retry in statuses if s != 200]
    assert refused, "the load never reached the limits"
    for status, body, retry_after in refused:
        assert (status, body["code"]) in {(429, "overloaded"), (503, "shard_unavailable"),
                                          (503, "too_many_requests_in_flight")}, body
        assert retry_after == "1"
    deadline = time.monotonic() + 5  # a commit or finalize is never refused at a full queue
    while switch.in_doubt():
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert switch.account("bank")["debits_posted"] == 40 * 50  # each transfer exactly once
    assert_balanced(switch.totals_at_rest())
