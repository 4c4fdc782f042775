"""What one call to a shard costs: over Ray (an actor call) and over its data port (TCP).

Starts one real shard actor on a fresh data directory, then sends the same small read-only
batch (one GetAccount) many times, one at a time and with several in flight, through
`RayShard.call` and through `SocketShard.call`. For each: calls per second, the round trip,
and the CPU time per call of the calling process (every thread: Ray's own included) and of
the shard's process (from /proc).

    python -m bench.shard_calls [--calls 5000] [--in-flight 1 8]
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import statistics
import sys
import tempfile
import time
from typing import Any

import ray

from actors.codec import encode_commands
from actors.messages import GetAccount
from actors.shard.actor import STORAGE_LABEL, RayShards, ShardOptions
from actors.shard.host import ShardConfig
from actors.topology import LOCAL_NODE, round_robin
from bench.cpu_share import process_cpu_s
from switch.routing.socket_link import SocketShard
from switch.routing.transport import ShardLink


def own_cpu_s() -> float:
    times = os.times()
    return times.user + times.system


async def drive(link: ShardLink, calls: int, in_flight: int) -> None:
    blob = encode_commands([GetAccount("nobody")])

    async def sender(count: int) -> None:
        for _ in range(count):
            await link.call(blob, ["bench"])

    await asyncio.gather(*(sender(calls // in_flight) for _ in range(in_flight)))


def measure(link: ShardLink, shard_pid: int, calls: int, in_flight: int) -> dict[str, float]:
    asyncio.run(drive(link, 200, in_flight))  # warm: connections, Ray's first calls
    caller, shard, started = own_cpu_s(), process_cpu_s(shard_pid), time.perf_counter()
    asyncio.run(drive(link, calls, in_flight))
    elapsed = time.perf_counter() - started
    done = calls // in_flight * in_flight
    return {"calls_per_s": done / elapsed, "round_trip_us": elapsed / done * in_flight * 1e6,
            "caller_cpu_us": (own_cpu_s() - caller) / done * 1e6,
            "shard_cpu_us": (process_cpu_s(shard_pid) - shard) / done * 1e6}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.shard_calls", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--in-flight", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    ray.init(include_dashboard=False, logging_level=logging.ERROR, num_cpus=os.cpu_count(),
             labels={STORAGE_LABEL: LOCAL_NODE})
    with tempfile.TemporaryDirectory(prefix="payswitch-shard-calls-") as work:
        fleet = RayShards.start([ShardConfig(0, ("USD",), 1_000_000)],
                                ShardOptions(work, 1 << 24, 1024, "off", 2.0),
                                round_robin(1, 64, switch_id="bench", shards_created=False))
        try:
            shard_pid = int(fleet.placements()[0]["pid"])
            links: dict[str, ShardLink] = {"ray": fleet.links[0],
                                           "socket": SocketShard(fleet.links[0])}
            print(f"{'link':8}{'in flight':>10}{'calls/s':>10}{'round trip µs':>15}"
                  f"{'caller CPU µs':>15}{'shard CPU µs':>14}   (medians of {args.runs})")
            for in_flight in args.in_flight:
                for name, link in links.items():
                    runs = [measure(link, shard_pid, args.calls, in_flight)
                            for _ in range(args.runs)]
                    median: dict[str, Any] = {key: statistics.median(r[key] for r in runs)
                                              for key in runs[0]}
                    print(f"{name:8}{in_flight:>10}{median['calls_per_s']:>10,.0f}"
                          f"{median['round_trip_us']:>15,.0f}{median['caller_cpu_us']:>15,.0f}"
                          f"{median['shard_cpu_us']:>14,.0f}", flush=True)
        finally:
            fleet.kill()
    print(f"{os.cpu_count()} cores, {time.strftime('%Y-%m-%d %H:%M')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
