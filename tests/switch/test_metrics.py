"""GET /metrics (Prometheus text) and the same key figures as Ray metrics."""

from __future__ import annotations

import time

import httpx
import ray
from prometheus_client.parser import text_string_to_metric_families

from actors.ledger.model import Roles, Transfer
from actors.messages import Commit
from tests.conftest import RunningSwitch
from tests.switch.test_api import account, transfer

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def samples(text: str) -> Samples:
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for family in text_string_to_metric_families(text) for s in family.samples}


def wait_for_tick(switch: RunningSwitch, name: str) -> Samples:
    deadline = time.monotonic() + 15
    while True:
        found = samples(switch.get("/metrics").text)
        if any(key[0] == name for key in found):
            return found
        assert time.monotonic() < deadline, f"{name} never appeared"
        time.sleep(0.3)


def test_metrics_cover_requests_results_shards_and_books(switch: RunningSwitch) -> None:
    limited = {"debits_must_not_exceed_credits": True}
    switch.post("/v1/accounts", [account("bank"), account("a", limited)])
    switch.post("/v1/transfers", [transfer(f"m{i}", "bank", "a", 10) for i in range(5)])
    switch.post("/v1/transfers", transfer("m-over", "a", "bank", 999))
    time.sleep(1.2)  # one monitor tick
    found = wait_for_tick(switch, "payswitch_shard_commands_total")
    assert found[("payswitch_http_requests_total",
                  (("route", "post_transfers"), ("status", "200")))] == 1
    assert found[("payswitch_http_requests_total",
                  (("route", "post_transfers"), ("status", "422")))] == 1
    assert found[("payswitch_transfers_total", (("result", "ok"),))] == 5
    assert found[("payswitch_transfers_total", (("result", "exceeds_credits"),))] == 1
    assert found[("payswitch_ledger_balanced", (("ledger", "USD"),))] == 1
    debits = ("payswitch_ledger_total", (("balance", "debits_posted"), ("ledger", "USD")))
    assert found[debits] == 50
    for shard in range(len(switch.shards)):
        labels = (("shard", str(shard)),)
        assert ("payswitch_shard_queue_depth", labels) in found
        assert ("payswitch_shard_log_bytes", labels) in found
        assert ("payswitch_shard_snapshot_age_seconds", labels) in found
        assert ("payswitch_shard_recovery_ms", labels) in found
        assert found[("payswitch_shard_commit_seconds_count", labels)] >= 1
        bucket = ("payswitch_shard_batch_size_bucket", (("le", "+Inf"), ("shard", str(shard))))
        assert bucket in found
    assert any(k[0] == "payswitch_http_request_seconds_bucket" for k in found)


def test_ray_metrics_export_the_same_key_figures(switch: RunningSwitch) -> None:
    switch.post("/v1/accounts", [account("bank"), account("b")])
    switch.post("/v1/transfers", [transfer(f"r{i}", "bank", "b", 1) for i in range(20)])
    port = ray._private.worker.global_worker.node.metrics_export_port
    deadline = time.monotonic() + 40
    while True:
        text = httpx.get(f"http://127.0.0.1:{port}/metrics", timeout=5).text
        if "ray_payswitch_shard_commands" in text and "ray_payswitch_transfers_per_second" in text:
            break
        assert time.monotonic() < deadline, "Ray never exported the switch's metrics"
        time.sleep(1)
    assert 'shard="0"' in text


def test_the_dashboard_rate_is_of_transfers_committed_by_any_ingress(
        switch: RunningSwitch) -> None:
    """With several ingress processes each sees its own requests only: the dashboard's
    throughput is the shards' committed transfers, here ones another process sent (played
    by commits straight to a shard: this ingress never saw them)."""
    router = switch.router
    assert router is not None
    ids = [f"x{n}" for n in range(400) if router.shard_of(f"x{n}") == 0]
    debit, credit = ids[0], ids[1]
    switch.post("/v1/accounts", [account(debit), account(credit)])
    ticked = len(switch.get("/dashboard/data").json()["series"]["time"])
    while len(switch.get("/dashboard/data").json()["series"]["time"]) < ticked + 2:
        time.sleep(0.2)  # the count before them read (a rate needs two readings)
    transfers = [Transfer(transfer_id, debit, credit, 1, "USD", 1).stamped(1)
                 for transfer_id in ids[2:42]]
    assert all(reply.result == "ok" for reply in switch.shard_call(
        0, [Commit(t, Roles.both) for t in transfers]))
    deadline = time.monotonic() + 15
    while True:
        series = switch.get("/dashboard/data").json()["series"]
        if max(series["committed_per_s"], default=0) > 0:
            break
        assert time.monotonic() < deadline, series
        time.sleep(0.3)
    assert max(series["transfers_per_s"]) == 0  # none in this process's requests
