"""`payswitch serve --workers 2`: two ingress processes on one port, under load, one of them
killed (-9) mid-flight. The shards commit both workers' batches together. Every acknowledged
transfer is there exactly once, no chain applies in part, nothing stays reserved, and what
was in flight at the kill, sent again with its ids to whichever worker takes it, lands once."""

from __future__ import annotations

import os
import signal
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import psutil

from persistence.topology import load_topology
from tests.chaos import (
    ACCOUNTS,
    Load,
    audit,
    free_port,
    resend_acknowledged,
    setup_accounts,
    transfer,
)
from tests.launcher import SwitchProcess
from tests.switch.test_metrics import samples
from tests.test_crash import _wait_until_nothing_in_doubt


def worker_pids(switch: SwitchProcess) -> list[int]:
    return sorted(pid for pid in switch.session_pids()
                  if b"multiprocessing.spawn" in Path(f"/proc/{pid}/cmdline").read_bytes())


def _wait_for_workers(switch: SwitchProcess, count: int, timeout_s: float = 30) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while len(pids := worker_pids(switch)) != count:
        assert time.monotonic() < deadline, pids
        time.sleep(0.1)
    return pids


def _send_again_until_answered(switch: SwitchProcess, load: Load, timeout_s: float = 60) -> int:
    """What had no answer (in flight at the kill), sent again with the same ids: a chain
    whole, the rest one by one. `in_flight` (the dead worker's attempt not yet resolved) and
    503 are retried. Returns how many units were sent again."""
    in_chains = {i for chain in load.chains for i in chain}
    units = [[i] for i in sorted(set(load.sent) - load.answered - in_chains)] + [
        chain for chain in load.chains if not set(chain) <= load.answered]
    deadline = time.monotonic() + timeout_s
    for unit in units:
        batch = [load.sent[i] for i in unit]
        while True:
            response = switch.http.post("/v1/transfers", json=batch if len(batch) > 1
                                        else batch[0])
            results = _results(response)
            if response.status_code != 503 and "in_flight" not in results:
                break
            assert time.monotonic() < deadline, (unit, response.text)
            time.sleep(0.2)
        load.answered.update(unit)
        load.record(batch, response)
    return len(units)


def _metrics_count_every_worker(switch: SwitchProcess, requests: int = 40) -> None:
    """/metrics sums the workers' counters: whichever worker answers a scrape counts every
    request (was: its own only)."""
    for _ in range(requests):  # a connection each: the workers take turns accepting
        httpx.get(switch.url + "/v1/hub/public-key", headers=switch.headers)
    counts = []
    for _ in range(6):
        text = httpx.get(switch.url + "/metrics", headers=switch.headers).text
        for family in ("payswitch_participant_position", "payswitch_shard_queue_depth",
                       "payswitch_transfers_total"):  # the polled ones too
            assert f"# TYPE {family} " in text, family
        found = samples(text)
        counts.append(sum(value for (name, labels), value in found.items()
                          if name == "payswitch_http_requests_total"
                          and ("route", "public_key") in labels))
    assert counts == [requests] * 6, counts


def _a_key_gets_its_whole_rate_on_one_connection(switch: SwitchProcess) -> None:
    """A client on one keep-alive connection meets one worker: it gets its key's whole
    burst (the workers share their buckets; each worker's own half gave it 3 of 6), then 429."""
    created = switch.http.post("/v1/participants", json={"id": "psp-rate", "name": "psp-rate",
                                                         "ledgers": ["USD"]})
    assert created.status_code == 201, created.text
    key = switch.http.post("/v1/keys", json={"role": "participant", "participant_id": "psp-rate",
                                             "requests_per_second": 3, "burst": 6})
    assert key.status_code == 201, key.text
    headers = {"Authorization": f"Bearer {key.json()['secret']}"}
    deadline = time.monotonic() + 10  # the other worker hears of the new key within a refresh
    with httpx.Client(base_url=switch.url, headers=headers,
                      limits=httpx.Limits(max_connections=1)) as one_connection:
        while one_connection.get("/v1/accounts/none").status_code == 401:
            assert time.monotonic() < deadline
            time.sleep(0.2)
        time.sleep(2.5)  # the bucket full again
        statuses = [one_connection.get("/v1/accounts/none").status_code for _ in range(12)]
    assert 429 not in statuses[:6] and 429 in statuses[6:], statuses


def _workers_started_again_know_the_moves_before_them(switch: SwitchProcess) -> None:
    """A slot moved: every worker shows it within a tick. Then every worker killed: those
    the supervisor starts again place ids by the saved topology (was: the one the supervisor
    started with), so every scrape shows the move and its epoch."""
    saved = load_topology(switch.data_dir)
    assert saved is not None
    moved = switch.http.post("/v1/cluster/slot-moves", json={
        "slot": 5, "to_shard": 1 - saved.slot_table[5]})
    assert moved.status_code == 200, moved.text
    # The worker that did not move it takes the saved topology within a tick (was: kept the
    # old epoch and slot table until a command met the moved slot).
    after = load_topology(switch.data_dir)
    assert after is not None and after.epoch == moved.json()["epoch"]
    expected = (after.epoch, [after.slot_table.count(shard) for shard in range(2)])
    deadline = time.monotonic() + 10
    while True:
        views = [httpx.get(switch.url + "/v1/cluster", headers=switch.headers,
                           timeout=30).json() for _ in range(6)]  # a connection each
        seen = [(v["epoch"], [row["slots"] for row in v["shards"]]) for v in views]
        if seen == [expected] * 6:
            break
        assert time.monotonic() < deadline, seen
        time.sleep(0.2)
    killed = set(worker_pids(switch))
    for pid in killed:
        os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 30
    while set(pids := worker_pids(switch)) & killed or len(pids) != 2:
        assert time.monotonic() < deadline, pids
        time.sleep(0.1)
    epochs = [httpx.get(switch.url + "/v1/cluster", headers=switch.headers,
                        timeout=30).json()["epoch"] for _ in range(6)]  # a connection each
    assert epochs == [moved.json()["epoch"]] * 6, epochs


def _results(response: httpx.Response) -> list[Any]:
    body = response.json()
    return [r["result"] for r in body["results"]] if "results" in body else [body.get("result")]


def _same_ids_at_once_through_both(switch: SwitchProcess, load: Load, pairs: int = 20) -> None:
    """Each transfer sent twice at the same moment on two fresh connections (the kernel
    gives each to either worker): one answer `ok`, the other `exists`, never two `ok`."""
    for n in range(pairs):
        body = transfer(f"twice-{n}", ACCOUNTS[n % 10], ACCOUNTS[(n + 7) % 10], 3)
        load.sent[body["id"]] = body
        answers = _post_twice_at_once(switch, body)
        assert sorted(_results(a)[0] for a in answers) == ["exists", "ok"], \
            [a.text for a in answers]
        load.answered.add(body["id"])
        load.record([body], answers[0])


def _post_twice_at_once(switch: SwitchProcess, body: dict[str, Any]) -> list[httpx.Response]:
    start = threading.Barrier(2)

    def post() -> httpx.Response:
        with switch.client() as client:
            start.wait(10)
            return _until_decided(client, body)

    with ThreadPoolExecutor(2) as pool:
        return list(pool.map(lambda _: post(), range(2)))


def _until_decided(client: httpx.Client, body: dict[str, Any], timeout_s: float = 30
                   ) -> httpx.Response:
    deadline = time.monotonic() + timeout_s
    while True:
        response = client.post("/v1/transfers", json=body)
        if response.status_code != 503 and _results(response) != ["in_flight"]:
            return response
        assert time.monotonic() < deadline, response.text
        time.sleep(0.05)


def test_two_ingress_processes_one_killed_mid_flight_exactly_once_and_atomic(
        tmp_path: Path) -> None:
    switch = SwitchProcess(tmp_path / "data", free_port(), shards=2,
                           log_path=tmp_path / "switch.log",
                           extra_env={"PAYSWITCH_SERVER_WORKERS": "2"}).start()
    try:
        first, second = _wait_for_workers(switch, 2)
        setup_accounts(switch.url, switch.headers)
        load = Load(switch.url, 11, switch.headers)
        load.start(clients=8)
        time.sleep(2.0)
        load.killed.set()  # a client whose connection the kill cuts stops: its batch in doubt
        os.kill(first, signal.SIGKILL)
        time.sleep(2.0)  # the others go on, on the worker left and on the one started again
        load.finish()
        assert not load.failures, load.failures
        assert first not in _wait_for_workers(switch, 2), "the supervisor started it again"
        assert psutil.Process(second).cpu_times().user > 0.5, "the other worker served too"
        merged = sum(s["calls_merged"] for s in switch.http.get("/readyz").json()["shards"])
        assert merged > 0, "the shards never committed two workers' batches together"
        resent = _send_again_until_answered(switch, load)
        print(f"acknowledged {len(load.acked)}, sent again after the kill {resent}")
        _same_ids_at_once_through_both(switch, load)
        _wait_until_nothing_in_doubt(switch)
        audit(switch.url, load)
        resend_acknowledged(switch.url, load)
        _metrics_count_every_worker(switch)
        _a_key_gets_its_whole_rate_on_one_connection(switch)
        _workers_started_again_know_the_moves_before_them(switch)
    finally:
        switch.kill_session()
