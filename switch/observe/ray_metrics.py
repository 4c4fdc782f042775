"""The ingress's key figures as Ray metrics (ray.util.metrics), published after each monitor
tick: they show in the Ray dashboard and its Prometheus export beside the shards' own."""

from __future__ import annotations

from ray.util.metrics import Gauge

from switch.observe.monitor import Monitor


class RayMetrics:
    def __init__(self) -> None:
        self.transfers_per_s = Gauge("payswitch_transfers_per_second", "transfers per second")
        self.latency_ms_p99 = Gauge("payswitch_request_latency_ms_p99",
                                    "p99 of transfer request latency, last interval")
        self.queue_depth = Gauge("payswitch_shard_queue_depth",
                                 "commands waiting in the router", ("shard",))
        self.balanced = Gauge("payswitch_ledger_balanced",
                              "1 when the ledger's debits equal its credits", ("ledger",))

    def publish(self, monitor: Monitor) -> None:
        if monitor.series["transfers_per_s"]:
            self.transfers_per_s.set(monitor.series["transfers_per_s"][-1])
            self.latency_ms_p99.set(monitor.series["latency_ms_p99"][-1])
        for shard in monitor.shards:
            self.queue_depth.set(shard["queue_depth"], {"shard": str(shard["shard"])})
        for ledger, (dp, cp, dpe, cpe) in monitor.totals.items():
            self.balanced.set(float(dp == cp and dpe == cpe), {"ledger": ledger})
