"""Every figure the monitor polls, again as Ray metrics (ray.util.metrics), published after
each tick: they show in the Ray dashboard and its Prometheus export.

One metrics path: shards measure themselves (actors/shard/stats.py) and report with their
status; the monitor polls it; /metrics (switch/observe/metrics.py) and these Ray metrics both
export that one poll. Nothing else exports shard figures.
"""

from __future__ import annotations

from ray.util.metrics import Counter, Gauge

from switch.observe.monitor import Monitor

SHARD_COUNTERS = {"commands": "commands applied by a shard",
                  "events": "events committed by a shard",
                  "batches": "batches (group commits) of a shard"}


class RayMetrics:
    def __init__(self) -> None:
        self.transfers_per_s = Gauge("payswitch_transfers_per_second", "transfers per second")
        self.latency_ms_p99 = Gauge("payswitch_request_latency_ms_p99",
                                    "p99 of transfer request latency, last interval")
        self.queue_depth = Gauge("payswitch_shard_queue_depth",
                                 "commands waiting in the router", ("shard",))
        self.balanced = Gauge("payswitch_ledger_balanced",
                              "1 when the ledger's debits equal its credits", ("ledger",))
        self.shard_counters = {name: Counter(f"payswitch_shard_{name}", help_text, ("shard",))
                               for name, help_text in SHARD_COUNTERS.items()}
        self._counted: dict[tuple[str, int], int] = {}

    def publish(self, monitor: Monitor) -> None:
        if monitor.series["transfers_per_s"]:
            self.transfers_per_s.set(monitor.series["transfers_per_s"][-1])
            self.latency_ms_p99.set(monitor.series["latency_ms_p99"][-1])
        for shard in monitor.shards:
            tags = {"shard": str(shard["shard"])}
            self.queue_depth.set(shard["queue_depth"], tags)
            for name, counter in self.shard_counters.items():
                now = int(shard["stats"][name])
                before = self._counted.get((name, shard["shard"]), 0)
                if now > before:  # a restarted shard counts from zero again
                    counter.inc(now - before, tags)
                self._counted[name, shard["shard"]] = now
        for ledger, (dp, cp, dpe, cpe) in monitor.totals.items():
            self.balanced.set(float(dp == cp and dpe == cpe), {"ledger": ledger})
