"""The Python client's own CPU per call, without a switch: an in-process fake answers.

`--tasks` asyncio tasks each await one `create_transfer` at a time through `AsyncClient`,
whose requests an `httpx.MockTransport` answers in the same process (every item `ok`).
What it measures is the client's work per call (the batcher, encoding, decoding, handing
each answer back) plus the fake's own (decoding the array, encoding its answer), as CPU
seconds of this process per call: a figure to compare two versions of the client with,
alternated in one session, not a throughput of the switch.

    python -m bench.client_cpu [--tasks 1000] [--seconds 5] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time

import httpx
import orjson

from switch.client import AsyncClient, Transfer, new_id

ACCOUNTS = 10_000


def answer(request: httpx.Request) -> httpx.Response:
    items = orjson.loads(request.content)
    results = [{"index": index, "id": item["id"], "result": "ok",
                "timestamp": 1_800_000_000_000_000_000 + index}
               for index, item in enumerate(items)]
    return httpx.Response(200, content=orjson.dumps({"results": results}),
                          headers={"content-type": "application/json"})


async def run(tasks: int, seconds: float) -> tuple[float, float]:
    """(calls per second, CPU microseconds per call)."""
    calls = 0
    async with AsyncClient("http://fake", "key",
                           transport=httpx.MockTransport(answer)) as client:
        stop_at = time.perf_counter() + seconds

        async def loop(task: int) -> None:
            nonlocal calls
            rng = random.Random(task)
            while time.perf_counter() < stop_at:
                debit = rng.randrange(ACCOUNTS)
                credit = (debit + 1 + rng.randrange(ACCOUNTS - 1)) % ACCOUNTS
                created = await client.create_transfer(
                    Transfer(new_id(), f"a{debit}", f"a{credit}", 1, "USD", 1))
                calls += created.result == "ok"

        cpu_started, started = time.process_time(), time.perf_counter()
        await asyncio.gather(*(loop(task) for task in range(tasks)))
        cpu_s, wall_s = time.process_time() - cpu_started, time.perf_counter() - started
    return calls / wall_s, 1e6 * cpu_s / max(1, calls)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    costs = []
    for run_number in range(args.runs):
        rate, cost_us = asyncio.run(run(args.tasks, args.seconds))
        costs.append(cost_us)
        print(f"run {run_number + 1}: {rate:9,.0f} calls/s, {cost_us:5.1f} us of CPU a call",
              flush=True)
    print(f"median: {statistics.median(costs):.1f} us of CPU a call (client and fake)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
