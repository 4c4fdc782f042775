"""How long is a shard out after its process dies? kill -9 one shard under load, `--kills`
times, and time its way back (the cluster issue, item 4: serving again within 10 s, 30 s at
most, nothing acknowledged lost).

Starts a switch (default settings) with `--accounts` accounts and `--preload` transfers
(arrays of 8,190: the log the shard recovers from, snapshots included), then runs
`--connections` clients that each send one transfer per request. Every `--every-s` seconds
it kills one shard process (shards in turn, found by the pid the dashboard shows) and
measures, from the kill:
  - ready: `GET /readyz` answers 200 again (polled every 50 ms);
  - last 503: the last request answered 503 before that;
  - the 503s the clients got, and what the load did before and after.
At the end every acknowledged transfer must be stored (counted per shard) and the ledger
balanced. Prints a table and writes bench/out/heal-<time>.json.

    python -m bench.heal [--accounts 100000] [--preload 1000000] [--kills 3] [--every-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import random
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.throughput import create_accounts, transfers_stored
from tests.chaos import free_port
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
ARRAY = 8190
READY_POLL_S = 0.05


class Clients:
    """`connections` clients, one transfer per request; remembers every answer's moment."""

    def __init__(self, url: str, headers: dict[str, str], accounts: int) -> None:
        self.url, self.headers, self.accounts = url, headers, accounts
        self.answers: list[tuple[float, int]] = []  # (monotonic time, status)
        self.acknowledged = 0
        self.stop = asyncio.Event()

    async def run(self, connections: int) -> None:
        limits = httpx.Limits(max_connections=connections)
        async with httpx.AsyncClient(base_url=self.url, headers=self.headers, timeout=60,
                                     limits=limits) as client:
            await asyncio.gather(*(self._client(client, n) for n in range(connections)))

    async def _client(self, client: httpx.AsyncClient, index: int) -> None:
        rng = random.Random(index)
        sent = 0
        while not self.stop.is_set():
            debit, credit = rng.sample(range(self.accounts), 2)
            body = {"id": f"heal-{index}-{sent}", "debit_account_id": f"a{debit}",
                    "credit_account_id": f"a{credit}", "amount": 1, "ledger": "USD",
                    "code": 1}
            sent += 1
            response = await client.post("/v1/transfers", json=body)
            self.answers.append((time.monotonic(), response.status_code))
            if response.status_code == 201:
                self.acknowledged += 1
            elif response.status_code == 503:
                await asyncio.sleep(float(response.headers.get("retry-after", "1")) / 10)
            else:
                raise AssertionError(f"{response.status_code}: {response.text}")

    def rate(self, start: float, end: float) -> float:
        return sum(1 for moment, status in self.answers
                   if start <= moment < end and status == 201) / (end - start)


async def preload(url: str, headers: dict[str, str], accounts: int, transfers: int) -> None:
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        for start in range(0, transfers, ARRAY):
            batch = [{"id": f"pre-{n}", "debit_account_id": f"a{n % accounts}",
                      "credit_account_id": f"a{(n * 7 + 1) % accounts}", "amount": 1,
                      "ledger": "USD", "code": 1} for n in range(start, min(transfers,
                                                                             start + ARRAY))]
            response = await client.post("/v1/transfers", json=batch)
            response.raise_for_status()
            sys.stderr.write(f"\rpreload {min(transfers, start + ARRAY):,}/{transfers:,}")
            sys.stderr.flush()
    sys.stderr.write("\n")


async def shard_pid(url: str, headers: dict[str, str], shard: int) -> int:
    """The shard's process, as the dashboard shows it (once its row says serving)."""
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=30) as client:
        while True:
            rows = (await client.get("/dashboard/data")).json()["shards"]
            row = next((r for r in rows if r["shard"] == shard), None)
            if row and row["state"] == "serving" and row["pid"]:
                return int(row["pid"])
            await asyncio.sleep(0.2)


async def kill_and_time(url: str, headers: dict[str, str], clients: Clients, shard: int,
                        every_s: float) -> dict[str, Any]:
    pid = await shard_pid(url, headers, shard)
    before_start = time.monotonic()
    await asyncio.sleep(every_s)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    async with httpx.AsyncClient(base_url=url, timeout=10) as probe:
        while (await probe.get("/readyz")).status_code != 200 or time.monotonic() - killed < 0.5:
            await asyncio.sleep(READY_POLL_S)
    ready = time.monotonic()
    await asyncio.sleep(every_s / 2)
    unavailable = [moment for moment, status in clients.answers
                   if status == 503 and moment >= killed]
    return {"shard": shard, "pid": pid, "ready_s": ready - killed,
            "last_503_s": (max(unavailable) - killed) if unavailable else 0.0,
            "answers_503": len(unavailable),
            "before_per_s": clients.rate(before_start + 1, killed),
            "after_per_s": clients.rate(ready + 1, time.monotonic())}


async def run(args: argparse.Namespace, switch: SwitchProcess, shards: int) -> dict[str, Any]:
    clients = Clients(switch.url, switch.headers, args.accounts)
    load = asyncio.create_task(clients.run(args.connections))
    kills = []
    try:
        for kill in range(args.kills):
            result = await kill_and_time(switch.url, switch.headers, clients, kill % shards,
                                         args.every_s)
            print(f"kill {kill + 1}: shard {result['shard']} ready again after "
                  f"{result['ready_s']:.2f} s (last 503 at {result['last_503_s']:.2f} s, "
                  f"{result['answers_503']} answers 503); {result['before_per_s']:,.0f} "
                  f"transfers/s before, {result['after_per_s']:,.0f} after", flush=True)
            kills.append(result)
    finally:
        clients.stop.set()
        with contextlib.suppress(Exception):
            await load
    return {"kills": kills, "acknowledged": clients.acknowledged}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--preload", type=int, default=1_000_000)
    parser.add_argument("--connections", type=int, default=32)
    parser.add_argument("--kills", type=int, default=3)
    parser.add_argument("--every-s", type=float, default=10.0)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="payswitch-heal-"))
    switch = SwitchProcess(work / "data", free_port(), shards=0,
                           log_path=work / "switch.log").start()
    try:
        shards = int(httpx.get(switch.url + "/readyz", timeout=30).json()["shards"])
        create_accounts(switch.url, args.accounts, switch.headers)
        asyncio.run(preload(switch.url, switch.headers, args.accounts, args.preload))
        stored_before = transfers_stored(switch.url, switch.operator_key)
        result = asyncio.run(run(args, switch, shards))
        stored = transfers_stored(switch.url, switch.operator_key) - stored_before
        ledgers = switch.http.get("/v1/ledgers").json()["ledgers"]
        result.update(stored=stored, balanced=all(x["balanced"] for x in ledgers),
                      shards=shards, cores=os.cpu_count(), args=vars(args),
                      date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    finally:
        switch.kill_session()
    ready = statistics.median(k["ready_s"] for k in result["kills"])
    print(f"median: ready again {ready:.2f} s after a kill (target 10 s, 30 s at most); "
          f"{result['acknowledged']:,} acknowledged, {stored:,} stored; "
          f"books balanced: {result['balanced']}")
    out = BENCH_DIR / "out" / f"heal-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    lost = result["acknowledged"] > stored
    return 1 if lost or not result["balanced"] or ready > 30 else 0


if __name__ == "__main__":
    sys.exit(main())
