"""The read model's process dies (kill -9): Ray restarts it, it catches up from the shards'
logs, and queries meanwhile answer 503 `read_model_unavailable` with Retry-After, never 500."""

from __future__ import annotations

import os
import signal
import time

import ray

from tests.conftest import RunningSwitch

RECOVERED_WITHIN_S = 60


def test_queries_survive_the_read_model_process_being_killed(switch: RunningSwitch) -> None:
    switch.ring("q", accounts=4, transfers=6)
    assert len(switch.get("/v1/transfers?limit=100").json()["transfers"]) == 6
    os.kill(ray.get(switch.query_actor.pid.remote()), signal.SIGKILL)

    answers: list[int] = []
    deadline = time.monotonic() + RECOVERED_WITHIN_S
    while time.monotonic() < deadline:
        response = switch.get("/v1/transfers?limit=100")
        answers.append(response.status_code)
        if response.status_code == 200:
            assert len(response.json()["transfers"]) == 6  # caught up again, from the logs
            break
        assert response.status_code == 503, response.text
        assert response.json()["code"] == "read_model_unavailable"
        assert response.headers["retry-after"] == "1"
        time.sleep(0.2)
    assert answers[-1] == 200, f"no answer but 503 for {RECOVERED_WITHIN_S} s: {answers}"
    assert len(switch.get("/v1/accounts?owner=o&limit=10").json()["accounts"]) == 4
