"""What the switch knows about itself, every second: for /metrics and the dashboard.

The ingress counts requests, results and accounts touched as they pass (cheap: a Counter per
request, not per item); once a second a poller asks every shard for its status (counters,
histograms, log size, snapshot age) and the per-ledger totals, turns counters into rates, and
appends a sample to bounded ring buffers (the last few minutes) the dashboard draws.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import msgspec

from actors.ledger.queries import add_totals
from switch.routing.router import Router

log = logging.getLogger("payswitch.monitor")

LATENCY_SAMPLES_MAX = 20_000  # per interval: a reservoir, so memory stays bounded
HOTTEST_SHOWN = 10
HOTTEST_KEPT_PER_INTERVAL = 50  # the hottest over the last minute, from each interval's top
HOTTEST_WINDOW_S = 60
LOG_FULL_WARNING_RATIO = 0.8
PLACEMENT_TIMEOUT_S = 2.0
HOTTEST_SAMPLE_PER_REQUEST = 64  # accounts counted per request: a bounded cost per array


@dataclass
class Interval:
    """What the ingress saw since the last tick."""

    transfers: int = 0
    results: Counter[str] = field(default_factory=Counter)
    accounts: Counter[str] = field(default_factory=Counter)
    latencies_s: list[float] = field(default_factory=list)
    latency_count: int = 0

    def observe_latency(self, seconds: float) -> None:
        self.latency_count += 1
        if len(self.latencies_s) < LATENCY_SAMPLES_MAX:
            self.latencies_s.append(seconds)
        else:  # reservoir sampling: every request equally likely to be kept
            slot = random.randrange(self.latency_count)
            if slot < LATENCY_SAMPLES_MAX:
                self.latencies_s[slot] = seconds


def percentile(sorted_values: list[float], fraction: float) -> float:
    if not sorted_values:
        return 0.0
    return sorted_values[min(len(sorted_values) - 1, int(fraction * len(sorted_values)))]


def histogram_percentile(previous: dict[str, Any] | None, current: dict[str, Any],
                         fraction: float) -> float:
    """A percentile of what a cumulative histogram saw between two readings (bucket bound)."""
    before = previous["cumulative"] if previous else [0] * len(current["cumulative"])
    counts = [now - then for now, then in zip(current["cumulative"], before, strict=True)]
    total = counts[-1]
    if total <= 0:
        return 0.0
    target = fraction * total
    for bound, count in zip([*current["bounds"], float("inf")], counts, strict=True):
        if count >= target:
            return float(bound) if bound != float("inf") else float(current["bounds"][-1])
    return float(current["bounds"][-1])


class Monitor:
    def __init__(self, router: Router, interval_ms: int = 1000, window_s: int = 300,
                 placements: list[dict[str, Any]] | None = None) -> None:
        assert interval_ms > 0 and window_s > 0
        self.router = router
        self.placements = placements or []
        self.interval_s = interval_ms / 1000
        samples = max(2, int(window_s / self.interval_s))
        self.series: dict[str, deque[Any]] = {
            name: deque(maxlen=samples) for name in (
                "time", "transfers_per_s", "latency_ms_p50", "latency_ms_p99",
                "committed_per_s")}
        # Per shard: (its process, its commits applied, when read): the switch's committed
        # rate whichever ingress process (--workers, another machine) sent them.
        self._committed: dict[int, tuple[int, int, float]] = {}
        self.shard_series: dict[int, dict[str, deque[Any]]] = {}
        self._samples_max = samples
        self.current = Interval()
        self.results_total: Counter[str] = Counter()
        # Hears each interval's result codes (the metrics' transfers counter).
        self.on_results: Callable[[dict[str, int]], None] | None = None
        self.shards: list[dict[str, Any]] = []
        self.totals: dict[str, list[int]] = {}
        self.hottest: list[tuple[str, int]] = []
        self._hot_intervals: deque[list[tuple[str, int]]] = deque(
            maxlen=max(1, int(HOTTEST_WINDOW_S / self.interval_s)))
        self.last_tick = 0.0
        self._previous: dict[int, dict[str, Any]] = {}
        self.on_tick: Callable[[Monitor], None] | None = None  # e.g. publish Ray metrics
        self._warned_full: set[int] = set()  # shards whose full log map was logged
        self._started_ns: dict[int, int] = {}  # per shard: when the process it answered from began
        self._placement_stale: set[int] = set()  # restarted: where it runs now is to be asked
        self.restarts: Counter[int] = Counter()  # per shard: restarts seen since this start

    # ---- from the request path ----

    def count_transfers(self, results: Iterable[str], items: Sequence[Any],
                        seconds: float) -> None:
        """A transfers request: its result codes, a sample of the accounts it touched (the
        hottest accounts are estimated from samples, weighted by how many each stands for),
        and its latency."""
        interval = self.current
        count = len(items)
        interval.transfers += count
        interval.results.update(results)
        sampled = items if count <= HOTTEST_SAMPLE_PER_REQUEST else [
            items[i] for i in random.sample(range(count), HOTTEST_SAMPLE_PER_REQUEST)]
        weight = max(1, count // HOTTEST_SAMPLE_PER_REQUEST)
        accounts = interval.accounts
        for item in sampled:
            for account_id in (item.debit_account_id, item.credit_account_id):
                if account_id:
                    accounts[account_id] += weight
        interval.observe_latency(seconds)

    # ---- the poller ----

    async def run(self) -> None:
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.tick()
            except Exception:
                log.exception("monitor tick failed")

    async def tick(self) -> None:
        answered = await self.router.statuses_answered()  # beside the batches, not queued
        # A broken shard answers, with zeros (actors/shard/host.py): as one that does not
        # answer, its books stay as last seen, its row marked broken.
        broken = {index for index, status in enumerate(answered) if status and status.broken}
        answered = [None if index in broken else status for index, status in enumerate(answered)]
        await self._note_restarts([s for s in answered if s is not None])
        shard_statuses = [s for s in answered if s is not None]
        statuses: list[dict[str, Any]] = [msgspec.structs.asdict(s) for s in shard_statuses]
        totals: dict[str, list[int]] = {}
        for shard_status in shard_statuses:
            add_totals(totals, shard_status.totals)
        every_shard = len(shard_statuses) == len(answered)  # else the books as last seen
        now = time.time()
        elapsed = now - self.last_tick if self.last_tick else self.interval_s
        interval, self.current = self.current, Interval()
        self.results_total.update(interval.results)
        if self.on_results is not None:
            self.on_results(interval.results)
        latencies = sorted(interval.latencies_s)
        self._append(self.series, now, interval.transfers / elapsed,
                     1000 * percentile(latencies, 0.5), 1000 * percentile(latencies, 0.99),
                     self._committed_rate(shard_statuses, now))
        queue_depths = self.router.queue_depths()
        for status in statuses:
            self._shard_sample(status, queue_depths[status["shard"]], now, elapsed)
        self.shards = self._shard_rows(answered, statuses, queue_depths, broken)
        for status in statuses:
            filling = status["log_used_ratio"] >= LOG_FULL_WARNING_RATIO
            if filling and status["shard"] not in self._warned_full:
                log.warning("shard %d: its log map is %.0f%% full (wal.map_size_bytes): grow "
                            "it (docs/OPERATIONS.md, the log is full)", status["shard"],
                            100 * status["log_used_ratio"])
            if filling:
                self._warned_full.add(status["shard"])
            else:
                self._warned_full.discard(status["shard"])
        if every_shard:
            self.totals = totals
        self._hot_intervals.append(interval.accounts.most_common(HOTTEST_KEPT_PER_INTERVAL))
        window: Counter[str] = Counter()
        for top in self._hot_intervals:
            window.update(dict(top))
        self.hottest = window.most_common(HOTTEST_SHOWN)
        self.last_tick = now
        if self.on_tick is not None:
            self.on_tick(self)

    def _shard_rows(self, answered: Sequence[object | None], statuses: list[dict[str, Any]],
                    queue_depths: list[int], broken: set[int]) -> list[dict[str, Any]]:
        """One row per shard: its status now, or as last seen while it does not answer."""
        by_shard = {status["shard"]: status for status in statuses}
        before = {row["shard"]: row for row in self.shards}
        placements = self.placements or [{}] * len(answered)
        rows = []
        for index, channel in enumerate(self.router.channels):
            status = by_shard.get(index) or before.get(index)
            if status is None:  # not seen since the start: nothing to show of it yet
                continue
            state = "broken" if index in broken else "serving" if index in by_shard and \
                channel.recovering_since_s is None else "recovering"
            rows.append({**status, **placements[index], "queue_depth": queue_depths[index],
                         "state": state, "restarts": self.restarts[index]})
        return rows

    async def _note_restarts(self, statuses: list[Any]) -> None:
        """A shard answering from a new process restarted (whether or not a call failed):
        count it, ask where it runs now, and count its figures from zero again."""
        for status in statuses:
            before = self._started_ns.get(status.shard)
            self._started_ns[status.shard] = status.started_ns
            if before is not None and before != status.started_ns:
                self.restarts[status.shard] += 1
                self._previous.pop(status.shard, None)
                self._placement_stale.add(status.shard)
        for index in sorted(self._placement_stale):
            with contextlib.suppress(Exception):  # asked again at the next tick
                placement = await asyncio.wait_for(self.router.links[index].placement(),
                                                   PLACEMENT_TIMEOUT_S)
                if index < len(self.placements):
                    self.placements[index] = placement
                self._placement_stale.discard(index)

    def _shard_sample(self, status: dict[str, Any], depth: int, now: float,
                      elapsed: float) -> None:
        index = status["shard"]
        stats = status["stats"]
        previous = self._previous.get(index)
        series = self.shard_series.setdefault(index, {
            name: deque(maxlen=self._samples_max) for name in (
                "time", "commands_per_s", "commit_ms_p50", "commit_ms_p99", "queue_depth")})
        commands = stats["commands"] - (previous["commands"] if previous else 0)
        before = previous["commit_seconds"] if previous else None
        series["time"].append(now)
        series["commands_per_s"].append(commands / elapsed)
        series["commit_ms_p50"].append(
            1000 * histogram_percentile(before, stats["commit_seconds"], 0.5))
        series["commit_ms_p99"].append(
            1000 * histogram_percentile(before, stats["commit_seconds"], 0.99))
        series["queue_depth"].append(depth)
        self._previous[index] = stats

    def _committed_rate(self, statuses: Sequence[Any], now: float) -> float:
        """Transfers committed per second, summed over the shards that answered, each since
        its last reading (a shard that did not answer counts at its next; a restarted one
        from its next reading on, since its process counts again from its recovery).
        Commits, not `transfers`: a slot move carries that count to the new shard at its
        import and off the old one at its release."""
        rate = 0.0
        for status in statuses:
            before = self._committed.get(status.shard)
            self._committed[status.shard] = (status.started_ns, status.commits_applied, now)
            if before is not None and before[0] == status.started_ns and now > before[2]:
                rate += max(0, status.commits_applied - before[1]) / (now - before[2])
        return rate

    @staticmethod
    def _append(series: dict[str, deque[Any]], now: float, *values: float) -> None:
        series["time"].append(now)
        for name, value in zip(["transfers_per_s", "latency_ms_p50", "latency_ms_p99",
                                "committed_per_s"], values, strict=True):
            series[name].append(round(value, 3))
