"""What the client's batching buys an application (the client issue's figures).

`--tasks` concurrent application tasks, each sending one transfer at a time and awaiting it,
for `--seconds`: once as raw single requests (one shared httpx client, 64 connections, one
transfer per request), once through `AsyncClient.create_transfer` (coalesced into arrays).
Alternated `--runs` times in one session against one switch (default settings), so the ratio
compares like with like. Per call: p50 and p99 latency. The target at 1,000 tasks: the client
at least 5x the raw throughput, with p99 per call at most 50 ms.

Transfer ids are `new_id()`'s by default (switch/client/ids.py: they grow with time, so each
shard writes them at its index's edge); `--ids ordered,per-task` alternates them with
`{task}-{n}` (each task's ids in a run of their own, a thousand places in the index) and
`random` (uuid4), to show what the choice costs.

    python -m bench.client [--tasks 1000] [--seconds 10] [--runs 3] [--modes raw,client]
                           [--ids ordered]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import orjson

from bench.throughput import run_single
from switch.client import AsyncClient, Transfer, new_id
from tests.chaos import free_port
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
RATIO_MIN = 5.0
P99_MS_MAX = 50.0
ACCOUNTS = 10_000
RAW_CONNECTIONS = 64  # as wrk's in make bench
IDS: dict[str, Callable[[int, int], str]] = {  # a call's id, from its task and its number
    "ordered": lambda task, n: new_id(),
    "per-task": lambda task, n: f"{task}-{n}",
    "random": lambda task, n: uuid.uuid4().hex,
}


async def drive(tasks: int, seconds: float, call: Callable[[str, int, int], Awaitable[bool]],
                ids: str = "ordered") -> dict[str, Any]:
    """`tasks` loops, each awaiting one call at a time until the time is up."""
    latencies: list[float] = []
    failures = 0
    stop_at = time.perf_counter() + seconds
    id_of = IDS[ids]

    async def loop(task: int) -> None:
        nonlocal failures
        rng = random.Random(task)
        n = 0
        while time.perf_counter() < stop_at:
            debit = rng.randrange(ACCOUNTS)  # and another account, as uniform as sample()
            credit = (debit + 1 + rng.randrange(ACCOUNTS - 1)) % ACCOUNTS
            started = time.perf_counter()
            if not await call(id_of(task, n), debit, credit):
                failures += 1
            latencies.append(time.perf_counter() - started)
            n += 1

    started = time.perf_counter()
    await asyncio.gather(*(loop(task) for task in range(tasks)))
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {"calls": len(latencies), "calls_per_s": len(latencies) / elapsed,
            "failures": failures, "latency_ms_p50": 1000 * statistics.median(latencies),
            "latency_ms_p99": 1000 * latencies[int(0.99 * (len(latencies) - 1))]}


async def raw(url: str, key: str, run_id: str, tasks: int, seconds: float, ids: str
              ) -> dict[str, Any]:
    """One shared httpx client, as an application has, with a pool of RAW_CONNECTIONS (a
    connection per task measured 140 calls/s: httpx's pool, not the switch, was the limit)."""
    limits = httpx.Limits(max_connections=RAW_CONNECTIONS,
                          max_keepalive_connections=RAW_CONNECTIONS)
    headers = {"Authorization": f"Bearer {key}", "content-type": "application/json"}
    async with httpx.AsyncClient(base_url=url, headers=headers, limits=limits,
                                 timeout=60) as http:
        async def call(suffix: str, debit: int, credit: int) -> bool:
            body = orjson.dumps({"id": f"{run_id}-{suffix}", "debit_account_id": f"a{debit}",
                                 "credit_account_id": f"a{credit}", "amount": 1,
                                 "ledger": "USD", "code": 1})
            while True:
                response = await http.post("/v1/transfers", content=body)
                if response.status_code not in (429, 503):
                    return response.status_code == 201
                await asyncio.sleep(float(response.headers.get("retry-after") or 1))
        return await drive(tasks, seconds, call, ids)


class TimedTransport(httpx.AsyncBaseTransport):
    """httpx's transport, timing each request from its send to its response's headers (the
    switch writes a response whole: this is the array's round trip, without the queue)."""

    def __init__(self) -> None:
        self._inner = httpx.AsyncHTTPTransport()
        self.round_trips_s: list[float] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        started = time.perf_counter()
        response = await self._inner.handle_async_request(request)
        self.round_trips_s.append(time.perf_counter() - started)
        return response

    async def aclose(self) -> None:
        await self._inner.aclose()


async def batched(url: str, key: str, run_id: str, tasks: int, seconds: float, ids: str,
                  sizes: list[int], in_flight: int = 2) -> dict[str, Any]:
    timed = TimedTransport()
    mine: list[int] = []
    async with AsyncClient(url, key, on_batch=lambda kind, size: mine.append(size),
                           requests_in_flight_max=in_flight, transport=timed) as client:
        async def call(suffix: str, debit: int, credit: int) -> bool:
            created = await client.create_transfer(Transfer(
                f"{run_id}-{suffix}", f"a{debit}", f"a{credit}", 1, "USD", 1))
            return created.result == "ok"
        row = await drive(tasks, seconds, call, ids)
    sizes.extend(mine)
    trips = sorted(timed.round_trips_s)
    row.update(array_items_p50=statistics.median(mine),
               round_trip_ms_p50=1000 * statistics.median(trips),
               round_trip_ms_p99=1000 * trips[int(0.99 * (len(trips) - 1))])
    return row


def create_accounts(switch: SwitchProcess) -> None:
    for start in range(0, ACCOUNTS, 8190):
        switch.http.post("/v1/accounts", json=[
            {"id": f"a{i}", "ledger": "USD", "code": 1, "owner": "bench"}
            for i in range(start, min(ACCOUNTS, start + 8190))]).raise_for_status()


def shard_seconds(switch: SwitchProcess) -> dict[str, float]:
    """What every shard has done so far: commands, and seconds applying and committing."""
    shards = switch.http.get("/readyz").json()["shards"]
    return {"commands": sum(s["stats"]["commands"] for s in shards),
            "apply_s": sum(s["stats"]["apply_seconds"]["sum"] for s in shards),
            "commit_s": sum(s["stats"]["commit_seconds"]["sum"] for s in shards)}


def shard_costs(before: dict[str, float], after: dict[str, float]) -> dict[str, float]:
    """Per command in between: microseconds the shards spent applying, then committing."""
    commands = max(1.0, after["commands"] - before["commands"])
    return {f"shard_{kind}_us_per_command": 1e6 * (after[f"{kind}_s"] - before[f"{kind}_s"])
            / commands for kind in ("apply", "commit")}


def show(label: str, row: dict[str, Any]) -> None:
    print(f"{label:14} {row['calls_per_s']:9,.0f} calls/s  p50 {row['latency_ms_p50']:7.1f} ms"
          f"  p99 {row['latency_ms_p99']:7.1f} ms  failures {row['failures']}"
          + (f"  (arrays of {row['array_items_p50']:.0f}, round trips: p50 "
             f"{row['round_trip_ms_p50']:.1f} ms, p99 "
             f"{row['round_trip_ms_p99']:.1f} ms)" if "round_trip_ms_p50" in row else "")
          + f"; shards per command: apply {row['shard_apply_us_per_command']:.1f} us, "
          f"commit {row['shard_commit_us_per_command']:.1f} us", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--shards", type=int, default=0)
    parser.add_argument("--modes", default="raw,client",
                        help="which to run, comma-separated (client alone: to profile it)")
    parser.add_argument("--in-flight", type=int, default=2,
                        help="the client's requests_in_flight_max")
    parser.add_argument("--ids", default="ordered",
                        help=f"transfer ids, comma-separated to alternate: {', '.join(IDS)} "
                        "(the first is judged)")
    args = parser.parse_args(argv)
    id_kinds = args.ids.split(",")
    if not set(id_kinds) <= set(IDS):
        parser.error(f"--ids takes {', '.join(IDS)}")
    work = Path(tempfile.mkdtemp(prefix="payswitch-client-"))
    switch = SwitchProcess(work / "data", free_port(), shards=args.shards,
                           log_path=work / "switch.log").start()
    rows: list[dict[str, Any]] = []
    sizes: list[int] = []
    try:
        create_accounts(switch)
        for run in range(args.runs):
            for ids in id_kinds:
                for mode in args.modes.split(","):
                    run_id = f"{mode}{run}{ids}"
                    before = shard_seconds(switch)
                    row = asyncio.run(
                        raw(switch.url, switch.operator_key, run_id, args.tasks, args.seconds,
                            ids)
                        if mode == "raw" else
                        batched(switch.url, switch.operator_key, run_id, args.tasks,
                                args.seconds, ids, sizes if ids == id_kinds[0] else [],
                                args.in_flight))
                    row.update(mode=mode, run=run, ids=ids,
                               **shard_costs(before, shard_seconds(switch)))
                    show(f"{mode} run {run + 1}" + (f" ({ids} ids)" if len(id_kinds) > 1
                                                      else ""), row)
                    rows.append(row)
        wrk_row = None
        if shutil.which("wrk") is not None and args.modes == "raw,client":
            # the switch's own ceiling for single requests
            wrk_row = run_single(switch.url, "wrk", ACCOUNTS, 30_000, 0.0, 64, 1,
                                 switch.operator_key)
            print(f"wrk single     {wrk_row['transfers_per_s']:9,.0f} calls/s  p50 "
                  f"{wrk_row['latency_ms_p50']:7.1f} ms  p99 {wrk_row['latency_ms_p99']:7.1f} "
                  "ms (C, 64 connections: the stack's ceiling per request)", flush=True)
        ledgers = switch.http.get("/v1/ledgers").json()["ledgers"]
    finally:
        switch.kill_session()
        shutil.rmtree(work, ignore_errors=True)
    for ids in id_kinds if len(id_kinds) > 1 else ():
        for mode in args.modes.split(","):
            mine = [r for r in rows if r["ids"] == ids and r["mode"] == mode]
            print(f"{ids} ids, {mode}: median "
                  f"{statistics.median(r['calls_per_s'] for r in mine):,.0f} calls/s, p99 "
                  f"{statistics.median(r['latency_ms_p99'] for r in mine):.1f} ms")
    rows_judged = [r for r in rows if r["ids"] == id_kinds[0]]
    if {r["mode"] for r in rows} != {"raw", "client"}:
        return 0  # one mode alone (a profile's run): no ratio to judge
    raw_rate = statistics.median(r["calls_per_s"] for r in rows_judged if r["mode"] == "raw")
    client_rate = statistics.median(r["calls_per_s"] for r in rows_judged
                                    if r["mode"] == "client")
    client_p99 = statistics.median(r["latency_ms_p99"] for r in rows_judged
                                   if r["mode"] == "client")
    ratio = client_rate / raw_rate
    balanced = all(ledger["balanced"] for ledger in ledgers)
    met = ratio >= RATIO_MIN and client_p99 <= P99_MS_MAX and balanced
    print(f"medians: raw {raw_rate:,.0f} calls/s, client {client_rate:,.0f} calls/s: "
          f"{ratio:.1f}x (target >= {RATIO_MIN}x); client p99 {client_p99:.1f} ms (target <= "
          f"{P99_MS_MAX} ms); arrays sent: median {statistics.median(sizes):.0f} items, max "
          f"{max(sizes)}; ledgers balanced: {balanced}: {'met' if met else 'MISSED'}")
    if wrk_row is not None:
        print(f"client / wrk single requests: {client_rate / wrk_row['transfers_per_s']:.1f}x")
    out = BENCH_DIR / "out" / f"client-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "ratio": ratio,
                               "client_p99_ms": client_p99, "wrk_single": wrk_row,
                               "met": met}, indent=1))
    print(f"wrote {out}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
