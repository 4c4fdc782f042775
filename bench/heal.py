"""How long is a shard out after its process dies? kill -9 one shard under load, `--kills`
times, and time its way back (the cluster issue, item 4: serving again within 10 s, 30 s at
most, nothing acknowledged lost).

Starts a switch (default settings) with `--accounts` accounts and `--preload` transfers
(arrays of 8,190: the log the shard recovers from, snapshots included), then runs
wrk with `--connections` connections, one transfer per request (a 503 is followed at once by
the next request). Every `--every-s` seconds it kills one shard process (shards in turn,
found by the pid the dashboard shows) and measures, from the kill, when `GET /readyz`
answers 200 again (polled every 50 ms), and the transfers stored per second before and
after. At the end every acknowledged transfer (wrk's 2xx) must be stored (counted per
shard) and the ledger balanced. Prints a table and writes bench/out/heal-<time>.json.

    python -m bench.heal [--accounts 100000] [--preload 1000000] [--kills 3] [--every-s 10]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.throughput import create_accounts, transfers_stored, wrk_summary
from tests.chaos import free_port
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
ARRAY = 8190
READY_POLL_S = 0.05


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


def start_wrk(url: str, key: str, accounts: int, connections: int, seconds: float
              ) -> subprocess.Popen[str]:
    """One transfer per request (bench/wrk_transfers.lua), closed loop: a 503 is answered
    at once and the connection sends its next transfer, as a client ignoring Retry-After."""
    env = {**os.environ, "BENCH_RUN": "heal", "BENCH_ACCOUNTS": str(accounts),
           "BENCH_QUOTA": str(10**9), "BENCH_KEY": key}
    command = ["wrk", "-t", "2", "-c", str(connections), "-d", f"{seconds:.0f}s",
               "--timeout", "30s", "-s", str(BENCH_DIR / "wrk_transfers.lua"), url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def stop_wrk(wrk: subprocess.Popen[str]) -> dict[str, Any]:
    wrk.send_signal(signal.SIGINT)
    output, _ = wrk.communicate(timeout=60)
    return wrk_summary(output)


def stored_per_s(url: str, key: str, seconds: float) -> float:
    before = transfers_stored(url, key)
    time.sleep(seconds)
    return (transfers_stored(url, key) - before) / seconds


def kill_and_time(url: str, key: str, shard: int, every_s: float) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {key}"}
    pid = asyncio.run(shard_pid(url, headers, shard))
    time.sleep(every_s / 2)
    before_per_s = stored_per_s(url, key, every_s / 2)
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    while httpx.get(url + "/readyz", timeout=10).status_code != 200 or \
            time.monotonic() - killed < 0.5:
        time.sleep(READY_POLL_S)
    ready = time.monotonic()
    return {"shard": shard, "pid": pid, "ready_s": ready - killed,
            "before_per_s": before_per_s, "after_per_s": stored_per_s(url, key, every_s / 2)}


def run(args: argparse.Namespace, switch: SwitchProcess, shards: int) -> dict[str, Any]:
    key = switch.operator_key
    wrk = start_wrk(switch.url, key, args.accounts, args.connections,
                    args.kills * args.every_s * 3 + 60)
    kills = []
    try:
        for kill in range(args.kills):
            result = kill_and_time(switch.url, key, kill % shards, args.every_s)
            print(f"kill {kill + 1}: shard {result['shard']} ready again after "
                  f"{result['ready_s']:.2f} s; {result['before_per_s']:,.0f} transfers/s "
                  f"stored before, {result['after_per_s']:,.0f} after", flush=True)
            kills.append(result)
    finally:
        load = stop_wrk(wrk)
    errors = sum(v for k, v in load.items() if k.startswith("errors_"))
    return {"kills": kills, "load": load, "acknowledged": load["requests"] - errors,
            "not_2xx": errors}


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
        result = run(args, switch, shards)
        stored = transfers_stored(switch.url, switch.operator_key) - stored_before
        ledgers = switch.http.get("/v1/ledgers").json()["ledgers"]
        result.update(stored=stored, balanced=all(x["balanced"] for x in ledgers),
                      shards=shards, cores=os.cpu_count(), args=vars(args),
                      date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    finally:
        switch.kill_session()
    ready = statistics.median(k["ready_s"] for k in result["kills"])
    print(f"median: ready again {ready:.2f} s after a kill (target 10 s, 30 s at most); "
          f"{result['acknowledged']:,} acknowledged, {result['not_2xx']:,} not 2xx, "
          f"{stored:,} stored; "
          f"books balanced: {result['balanced']}")
    out = BENCH_DIR / "out" / f"heal-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps(result, indent=2))
    shutil.rmtree(work, ignore_errors=True)
    lost = result["acknowledged"] > stored
    return 1 if lost or not result["balanced"] or ready > 30 else 0


if __name__ == "__main__":
    sys.exit(main())
