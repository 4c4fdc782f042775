"""What a shard measures about itself, as plain data the router can fetch with `status`.

Histograms keep cumulative counts per upper bound (Prometheus' shape), so the ingress can
export them without knowing how they were measured.
"""

from __future__ import annotations

from bisect import bisect_left
from dataclasses import dataclass, field
from typing import Any

import msgspec

from actors.ledger.queries import LedgerTotals
from actors.shard.replication import ReplicationState

BATCH_SIZE_BOUNDS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 8190)
SECONDS_BOUNDS = (0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1,
                  0.25, 0.5, 1.0)


@dataclass
class Histogram:
    bounds: tuple[float, ...]
    counts: list[int] = field(default_factory=list)  # per bound, then +Inf; not cumulative
    total: float = 0.0

    def __post_init__(self) -> None:
        if not self.counts:
            self.counts = [0] * (len(self.bounds) + 1)

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.bounds, value)] += 1
        self.total += value

    def export(self) -> dict[str, Any]:
        cumulative, running = [], 0
        for count in self.counts:
            running += count
            cumulative.append(running)
        return {"bounds": list(self.bounds), "cumulative": cumulative, "sum": self.total}


@dataclass
class ShardStats:
    batches: int = 0
    commands: int = 0
    events: int = 0
    batch_size: Histogram = field(default_factory=lambda: Histogram(BATCH_SIZE_BOUNDS))
    apply_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BOUNDS))
    commit_seconds: Histogram = field(default_factory=lambda: Histogram(SECONDS_BOUNDS))

    def export(self) -> dict[str, Any]:
        return {
            "batches": self.batches, "commands": self.commands, "events": self.events,
            "batch_size": self.batch_size.export(),
            "apply_seconds": self.apply_seconds.export(),
            "commit_seconds": self.commit_seconds.export(),
        }


class ShardStatus(msgspec.Struct, frozen=True):
    """What a shard says about itself (for /readyz, /metrics and the dashboard): read on
    its own thread, never through the write queue."""

    shard: int
    accounts: int
    transfers: int  # committed with this shard as their home
    in_doubt: int
    pending_open: int
    last_seq: int
    recovery_ms: float
    recovered_records: int
    snapshot_seq: int  # the one recovery started from
    snapshot_seq_written: int  # the newest on disk
    snapshot_age_seconds: float
    log_bytes: int
    log_used_ratio: float  # of the map (wal.map_size_bytes): writes fail at 1.0
    stats: dict[str, Any]
    totals: list[LedgerTotals]
    started_ns: int = 0  # when its process started (set by its actor): a change is a restart
    fences: int = 0  # attempts told void that never commit (kept until their id commits)
    calls_merged: int = 0  # callers' batches committed with another's (several ingresses)
    # Its leader epoch and follower (None: no follower): actors/shard/replication.py
    replication: ReplicationState | None = None
    commits_applied: int = 0  # by this process, homed here: the committed rate's counter
    broken: str | None = None  # why it serves nothing until restarted (its figures are 0)
