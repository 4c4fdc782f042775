"""The shard actor: a Ray actor (one process, one call at a time) around a ShardHost.

This is the only module of actors/ that imports Ray. `max_concurrency=1` makes the actor the
single writer of every account it hosts: Ray runs its calls one after another.
"""

from __future__ import annotations

import gc
import os
from pathlib import Path
from typing import Any

import ray
from ray.util.metrics import Counter as RayCounter

from actors.runtime import configure_logging, tune_gc
from actors.shard.host import ShardConfig, ShardHost
from persistence.layout import shard_directory
from persistence.lmdb_log import LmdbLog


@ray.remote(max_concurrency=1)  # type: ignore[call-overload]
class ShardActor:
    def __init__(self, config: ShardConfig, data_dir: str, map_size_bytes: int) -> None:
        configure_logging(config.log_level, config.log_json)
        directory = shard_directory(Path(data_dir), config.shard_index)
        # The ledger is long-lived: freeze it out of collections after recovery and after
        # each snapshot (a full pass over the state anyway), so the collector only ever
        # walks what changed since.
        freeze = self._freeze if config.gc_freeze else (lambda: None)
        self._host = ShardHost(config, lambda: LmdbLog(directory, map_size_bytes),
                               on_snapshot=freeze)
        tune_gc(config.gc_generation0_threshold, config.gc_freeze)
        # The key figures again as Ray metrics: in the Ray dashboard and its Prometheus export.
        tags = {"shard": str(config.shard_index)}
        self._ray_commands = RayCounter("payswitch_shard_commands",
                                        "commands applied by a shard", ("shard",))
        self._ray_events = RayCounter("payswitch_shard_events", "events committed by a shard",
                                      ("shard",))
        self._ray_batches = RayCounter("payswitch_shard_batches", "batches (group commits)",
                                       ("shard",))
        for metric in (self._ray_commands, self._ray_events, self._ray_batches):
            metric.set_default_tags(tags)
        self._counted = (0, 0, 0)

    @staticmethod
    def _freeze() -> None:
        gc.freeze()

    @ray.method(enable_task_events=False)
    def handle(self, blob: bytes, request_ids: list[str] | None = None) -> bytes:
        reply = self._host.handle(blob, request_ids or [])
        stats = self._host.stats
        counted = (stats.commands, stats.events, stats.batches)
        for metric, now, before in zip((self._ray_commands, self._ray_events, self._ray_batches),
                                       counted, self._counted, strict=True):
            if now > before:
                metric.inc(now - before)
        self._counted = counted
        return reply

    def status(self) -> dict[str, Any]:
        return self._host.status()

    def placement(self) -> dict[str, Any]:
        """Where this shard runs: for the dashboard's node table."""
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(),
                "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
                "pid": os.getpid()}

    def close(self) -> None:
        self._host.close()


def start_shard(config: ShardConfig, data_dir: Path, map_size_bytes: int) -> Any:
    """Create a shard actor; num_cpus=0 so shards may outnumber the cores they share."""
    return ShardActor.options(  # type: ignore[attr-defined]
        num_cpus=0
    ).remote(config, str(data_dir), map_size_bytes)
