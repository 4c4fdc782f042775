"""Prometheus metrics (GET /metrics), the request middleware that feeds them, request ids.

Request-path metrics are prometheus_client objects updated per request; everything measured
in the shards, and the books, is exported from the Monitor's latest poll by a collector.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import time
from collections.abc import Iterable, Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily
from prometheus_client.multiprocess import MultiProcessCollector
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from switch.observe.context import request_id_var
from switch.observe.monitor import Monitor

access_log = logging.getLogger("payswitch.access")

_REQUEST_ID = re.compile(r"^[A-Za-z0-9._:-]{1,64}$")
# Set by `payswitch serve --workers N` for its workers (prometheus_client's multiprocess
# mode: each worker's counters in files there, /metrics sums them over the workers).
MULTIPROCESS_DIR_ENV = "PROMETHEUS_MULTIPROC_DIR"
LATENCY_BUCKETS_S = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1.0,
                     2.5, 5.0)


class Metrics:
    def __init__(self, monitor: Monitor) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter("payswitch_http_requests", "HTTP requests by route and status",
                                ["route", "status"], registry=self.registry)
        self.latency = Histogram("payswitch_http_request_seconds", "HTTP request latency",
                                 ["route"], buckets=LATENCY_BUCKETS_S, registry=self.registry)
        self.auth_failures = Counter(
            "payswitch_auth_failures", "Requests refused before any route: unauthenticated, "
            "participant_disabled, rate_limited", ["reason"], registry=self.registry)
        self.transfers = Counter("payswitch_transfers", "transfers by result code", ["result"],
                                 registry=self.registry)
        self.ndc_alarms = Counter("payswitch_ndc_alarms", "Positions crossing their alarm "
                                  "threshold (percent of the cap) upwards",
                                  ["participant", "ledger"], registry=self.registry)
        self.payments = Counter("payswitch_payments", "Payments between participants, their "
                                "fulfils and aborts, by result", ["action", "result"],
                                registry=self.registry)
        monitor.on_results = self._count_results
        shards = _MonitorCollector(monitor)
        self.registry.register(shards)
        self._exported = self.registry
        shared_dir = os.environ.get(MULTIPROCESS_DIR_ENV)
        if shared_dir:  # several workers: the counters of all (the shards' are the same)
            self._exported = CollectorRegistry()
            MultiProcessCollector(self._exported, path=shared_dir)  # type: ignore[no-untyped-call]
            self._exported.register(shards)

    def register(self, collector: Collector) -> None:
        """A collector of figures polled (the same in every worker): on /metrics."""
        self.registry.register(collector)
        if self._exported is not self.registry:
            self._exported.register(collector)

    def count_payments(self, action: str, results: Iterable[str]) -> None:
        """`action`: pay, fulfil or abort."""
        for result, count in collections.Counter(results).items():
            self.payments.labels(action, result).inc(count)

    def count_alarm(self, participant: str, ledger: str) -> None:
        self.ndc_alarms.labels(participant, ledger).inc()

    def _count_results(self, results: dict[str, int]) -> None:
        for result, count in results.items():
            self.transfers.labels(result).inc(count)

    def render(self) -> bytes:
        return bytes(generate_latest(self._exported))


class RequestContext:
    """Pure ASGI: a request id for logs (X-Request-Id, taken from the client when well formed),
    and the request's route, status and latency for /metrics."""

    def __init__(self, app: ASGIApp, metrics: Metrics, access_log: bool = False) -> None:
        self.app = app
        self.metrics = metrics
        self.access_log = access_log
        # Label lookups cost a microsecond or two per request: keep each child once found.
        self._counters: dict[tuple[str, int], Any] = {}
        self._histograms: dict[str, Any] = {}
        self._id_prefix = os.urandom(4).hex()
        self._id_next = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        given = _header(scope, b"x-request-id")
        if given and _REQUEST_ID.match(given):
            request_id = given
        else:  # unique per process run without a system call per request
            self._id_next += 1
            request_id = f"{self._id_prefix}{self._id_next:08x}"
        token = request_id_var.set(request_id)
        status = 500

        async def send_with_id(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
                message["headers"] = [*message.get("headers", []),
                                      (b"x-request-id", request_id.encode())]
            await send(message)

        try:
            await self.app(scope, receive, send_with_id)
        finally:
            request_id_var.reset(token)
            endpoint = scope.get("endpoint")
            route = getattr(endpoint, "__name__", "unmatched")
            seconds = time.perf_counter() - started
            counter = self._counters.get((route, status))
            if counter is None:
                counter = self._counters[route, status] = self.metrics.requests.labels(
                    route, str(status))
            counter.inc()
            histogram = self._histograms.get(route)
            if histogram is None:
                histogram = self._histograms[route] = self.metrics.latency.labels(route)
            histogram.observe(seconds)
            if self.access_log:
                access_log.info("%s %s", scope["method"], scope["path"], extra={
                    "request_id": request_id, "route": route, "status": status,
                    "ms": round(1000 * seconds, 3)})


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


class _MonitorCollector(Collector):
    def __init__(self, monitor: Monitor) -> None:
        self.monitor = monitor

    def collect(self) -> Iterator[Any]:
        monitor = self.monitor
        yield from _shard_metrics(monitor.shards)
        yield from _ledger_metrics(monitor.totals)


def _shard_metrics(shards: list[dict[str, Any]]) -> Iterator[Any]:
    gauges = {
        "queue_depth": "commands waiting in the router for this shard",
        "log_bytes": "bytes of the shard's log storage in use",
        "log_used_ratio": "share of the shard's map in use (wal.map_size_bytes): alert at 0.8",
        "snapshot_age_seconds": "seconds since the shard's newest snapshot was written",
        "recovery_ms": "milliseconds the shard took to recover at start",
        "accounts": "accounts hosted", "in_doubt": "cross-shard parts awaiting a decision",
        "fences": "attempts recovery told void, refused if their commit still comes",
    }
    for name, help_text in gauges.items():
        family = GaugeMetricFamily(f"payswitch_shard_{name}", help_text, labels=["shard"])
        for shard in shards:
            family.add_metric([str(shard["shard"])], float(shard[name]))
        yield family
    recovering = GaugeMetricFamily("payswitch_shard_recovering", "1 while the shard recovers "
                                   "after its process died (Ray restarts it)", labels=["shard"])
    restarts = CounterMetricFamily("payswitch_shard_restarts", "times the shard recovered "
                                   "after its process died", labels=["shard"])
    for shard in shards:
        recovering.add_metric([str(shard["shard"])], float(shard["state"] != "serving"))
        restarts.add_metric([str(shard["shard"])], shard["restarts"])
    yield recovering
    yield restarts
    merged = CounterMetricFamily("payswitch_shard_calls_merged", "callers' batches committed "
                                 "with another caller's (several ingress processes)",
                                 labels=["shard"])
    for shard in shards:
        merged.add_metric([str(shard["shard"])], shard["calls_merged"])
    yield merged
    yield from _replication_metrics(shards)
    for name in ("batches", "commands", "events"):
        counter = CounterMetricFamily(f"payswitch_shard_{name}", f"{name} applied by the shard",
                                      labels=["shard"])
        for shard in shards:
            counter.add_metric([str(shard["shard"])], shard["stats"][name])
        yield counter
    for name, help_text in (("batch_size", "commands per shard call"),
                            ("apply_seconds", "time to decide and apply a batch"),
                            ("commit_seconds", "time of the log commit (fsync) per batch")):
        histograms = HistogramMetricFamily(f"payswitch_shard_{name}", help_text,
                                           labels=["shard"])
        for shard in shards:
            histogram = shard["stats"][name]
            buckets = [(str(bound), float(count)) for bound, count in
                       zip(histogram["bounds"], histogram["cumulative"], strict=False)]
            buckets.append(("+Inf", float(histogram["cumulative"][-1])))
            histograms.add_metric([str(shard["shard"])], buckets, histogram["sum"])
        yield histograms


def _replication_metrics(shards: list[dict[str, Any]]) -> Iterator[Any]:
    """Shards with a follower (docs/CLUSTER.md, Replication): alert on blocked, and on a lag
    that keeps growing (the follower cannot take over while it lags)."""
    replicated = [(str(shard["shard"]), shard["replication"]) for shard in shards
                  if shard.get("replication") is not None]
    families = (
        ("epoch", "the shard's leader epoch (raised by each failover)",
         lambda state: state.epoch),
        ("follower_lag_records", "records the shard's follower lacks",
         lambda state: state.lag_records),
        ("replication_waits", "1 while each commit waits for the follower (sync, in sync)",
         lambda state: int(state.waits)),
        ("replication_blocked", "1 while the shard refuses calls until the controller "
         "records its follower out of sync", lambda state: int(bool(state.blocked))),
    )
    for name, help_text, value in families:
        family = GaugeMetricFamily(f"payswitch_shard_{name}", help_text, labels=["shard"])
        for shard, state in replicated:
            family.add_metric([shard], float(value(state)))
        yield family


def _ledger_metrics(totals: dict[str, list[int]]) -> Iterator[Any]:
    names = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")
    family = GaugeMetricFamily("payswitch_ledger_total", "sum over accounts, minor units",
                               labels=["ledger", "balance"])
    balanced = GaugeMetricFamily("payswitch_ledger_balanced",
                                 "1 when debits equal credits (posted and pending)",
                                 labels=["ledger"])
    in_flight = GaugeMetricFamily("payswitch_ledger_in_flight",
                                  "money held pending (debits_pending), minor units",
                                  labels=["ledger"])
    for code, values in sorted(totals.items()):
        for name, value in zip(names, values, strict=True):
            family.add_metric([code, name], value)
        balanced.add_metric([code], float(values[0] == values[1] and values[2] == values[3]))
        in_flight.add_metric([code], values[2])
    yield family
    yield balanced
    yield in_flight
