"""`make bench`: durable transfers per second through the HTTP API, end to end.

Starts a switch (a child process with its own Ray), creates the accounts, then drives
transfers several ways: one transfer per request over many keep-alive connections (wrk, a C
load generator, so the client costs little of the shared CPU), arrays of 1,000 and 8,190
(an asyncio client), two-phase (reserve, then post) and linked chains in arrays. Each way
runs on uniform accounts and with 20% of transfers touching 10 hot accounts. Every transfer
is acknowledged only after its shard's fsync'd commit. At the end the books must balance
and the posted total must equal what was sent.

    python -m bench.throughput [--accounts 10000 100000] [--transfers 200000] [--shards N]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
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
import orjson

from persistence.topology import default_shard_count
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
ARRAY_SENDERS = 4


def create_accounts(url: str, count: int, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for start in range(0, count, 8190):
            batch = [{"id": f"a{i}", "ledger": "USD", "code": 1, "owner": "bench"}
                     for i in range(start, min(count, start + 8190))]
            results = client.post("/v1/accounts", json=batch).json()["results"]
            assert {r["result"] for r in results} <= {"ok", "exists"}


def pairs(rng: random.Random, accounts: int, hot_fraction: float, hot_accounts: int
          ) -> tuple[int, int]:
    debit, credit = rng.randrange(accounts), rng.randrange(accounts)
    if rng.random() < hot_fraction:
        if rng.random() < 0.5:
            debit = rng.randrange(hot_accounts)
        else:
            credit = rng.randrange(hot_accounts)
    while credit == debit:
        credit = rng.randrange(accounts)
    return debit, credit


def transfers_stored(url: str, key: str) -> int:
    """(Each shard's figures: for an operator's key.)"""
    shards = httpx.get(url + "/readyz", headers={"Authorization": f"Bearer {key}"},
                       timeout=30).json()["shards"]
    return sum(int(shard["transfers"]) for shard in shards)


def wrk_summary(output: str) -> dict[str, Any]:
    """The WRK_RESULT line our wrk scripts print when wrk ends (bench/wrk_*.lua)."""
    line = next((x for x in output.splitlines() if x.startswith("WRK_RESULT ")), None)
    if line is None:
        raise RuntimeError(f"wrk printed no summary: {output[-2000:]}")
    result: dict[str, Any] = json.loads(line.removeprefix("WRK_RESULT "))
    return result


def run_single(url: str, run_id: str, accounts: int, transfers: int, hot_fraction: float,
               connections: int, threads: int, key: str) -> dict[str, Any]:
    """wrk: one transfer per request; returns its summary.

    Each wrk thread stops sending at its quota; wrk itself only ends at its duration or on
    SIGINT (then it prints its summary), so we send SIGINT once the shards hold every transfer.
    """
    env = {**os.environ, "BENCH_RUN": run_id, "BENCH_ACCOUNTS": str(accounts),
           "BENCH_HOT_FRACTION": str(hot_fraction), "BENCH_HOT_ACCOUNTS": "10",
           "BENCH_QUOTA": str(transfers // threads), "BENCH_KEY": key}
    command = ["wrk", "-t", str(threads), "-c", str(connections), "-d", "3600s",
               "--timeout", "30s", "-s", str(BENCH_DIR / "wrk_transfers.lua"), url]
    target = transfers_stored(url, key) + (transfers // threads) * threads
    wrk = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)
    while transfers_stored(url, key) < target and wrk.poll() is None:
        time.sleep(0.5)
    wrk.send_signal(signal.SIGINT)
    output, _ = wrk.communicate(timeout=60)
    result = wrk_summary(output)
    seconds = result["duration_us"] / 1e6
    errors = sum(v for k, v in result.items() if k.startswith("errors_"))
    return {"requests": result["requests"], "transfers": result["requests"] - errors,
            "seconds": seconds, "transfers_per_s": (result["requests"] - errors) / seconds,
            "latency_ms_p50": result["p50_us"] / 1000, "latency_ms_p99": result["p99_us"] / 1000,
            "latency_ms_p999": result["p999_us"] / 1000, "errors": errors}


def array_bodies(run_id: str, accounts: int, transfers: int, hot_fraction: float,
                 array_size: int, two_phase: bool, chain_length: int = 1) -> list[list[bytes]]:
    """The request bodies, in phases sent one after the other: [transfers], or for two-phase
    [pending transfers, posts of them]. With chain_length > 1 the transfers of each array are
    linked chains of that length (the array size rounded down to whole chains)."""
    rng = random.Random(hash(run_id) & 0xFFFF)
    phases: list[list[bytes]] = [[], []] if two_phase else [[]]
    array_size -= array_size % chain_length
    for start in range(0, transfers, array_size):
        items, posts = [], []
        for n in range(start, min(transfers, start + array_size)):
            debit, credit = pairs(rng, accounts, hot_fraction, 10)
            item: dict[str, Any] = {
                "id": f"{run_id}-{n}", "debit_account_id": f"a{debit}",
                "credit_account_id": f"a{credit}", "amount": rng.randint(1, 1000),
                "ledger": "USD", "code": 1}
            if chain_length > 1 and (n + 1) % chain_length and n + 1 < transfers:
                item["flags"] = {"linked": True}
            if two_phase:
                item["flags"] = {"pending": True}
                posts.append({"id": f"{run_id}-{n}-post", "pending_id": item["id"],
                              "flags": {"post_pending_transfer": True}})
            items.append(item)
        phases[0].append(orjson.dumps(items))
        if two_phase:
            phases[1].append(orjson.dumps(posts))
    return phases


async def run_arrays(url: str, run_id: str, accounts: int, transfers: int, hot_fraction: float,
                     array_size: int, headers: dict[str, str], two_phase: bool = False,
                     chain_length: int = 1) -> dict[str, Any]:
    """Arrays from ARRAY_SENDERS connections. Two-phase: all reserved, then all posted; a
    transfer counts once, when its post is answered."""
    phases = array_bodies(run_id, accounts, transfers, hot_fraction, array_size, two_phase,
                          chain_length)
    latencies: list[float] = []
    replies: list[bytes] = []
    queue: list[bytes] = []

    retries = 0

    async def sender(client: httpx.AsyncClient) -> None:
        """As a client should: on 429 or 503, wait Retry-After and send the same array again
        (the same ids: what was applied answers `exists`)."""
        nonlocal retries
        while queue:
            body = queue.pop()
            started = time.perf_counter()
            while True:
                response = await client.post("/v1/transfers", content=body,
                                             headers={"content-type": "application/json"})
                if response.status_code not in (429, 503):
                    break
                retries += 1
                await asyncio.sleep(float(response.headers.get("retry-after", "1")))
            latencies.append(time.perf_counter() - started)
            assert response.status_code == 200, response.text[:300]
            replies.append(response.content)

    limits = httpx.Limits(max_connections=ARRAY_SENDERS)
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300,
                                 limits=limits) as client:
        started = time.perf_counter()
        for bodies in phases:
            queue.extend(reversed(bodies))
            await asyncio.gather(*(sender(client) for _ in range(ARRAY_SENDERS)))
        seconds = time.perf_counter() - started
    ok = sum(r["result"] in ("ok", "exists") for reply in replies
             for r in orjson.loads(reply)["results"])
    assert ok == transfers * len(phases), f"only {ok} of {transfers} answered ok"
    ok = transfers
    latencies.sort()
    return {"requests": sum(map(len, phases)), "transfers": ok, "seconds": seconds,
            "transfers_per_s": ok / seconds,
            "latency_ms_p50": 1000 * statistics.median(latencies),
            "latency_ms_p99": 1000 * latencies[min(len(latencies) - 1,
                                                   int(0.99 * len(latencies)))],
            "errors": 0, "retries": retries}


def ledger_totals(url: str, headers: dict[str, str]) -> dict[str, Any]:
    ledgers = httpx.get(url + "/v1/ledgers", headers=headers, timeout=60).json()["ledgers"]
    usd = next(x for x in ledgers if x["ledger"] == "USD")
    return dict(usd)


def bench_accounts(args: argparse.Namespace, accounts: int, work_dir: Path) -> list[dict[str, Any]]:
    data_dir = work_dir / f"data-{accounts}"
    switch = SwitchProcess(data_dir, args.port, args.shards, work_dir / f"switch-{accounts}.log",
                           extra_env=args.env).start()
    rows = []
    try:
        create_accounts(switch.url, accounts, switch.headers)
        for distribution, hot_fraction in (("uniform", 0.0), ("hot 20% on 10", 0.2)):
            for mode in args.modes:
                run_id = f"{accounts}-{distribution[:3]}-{mode}"
                before = ledger_totals(switch.url, switch.headers)["debits_posted"]
                if mode == "single":
                    row = run_single(switch.url, run_id, accounts, args.transfers, hot_fraction,
                                     args.connections, args.wrk_threads, switch.operator_key)
                else:
                    kind, size, chain_length = parse_mode(mode)
                    row = asyncio.run(run_arrays(switch.url, run_id, accounts, args.transfers,
                                                 hot_fraction, size, switch.headers,
                                                 kind == "twophase", chain_length))
                totals = ledger_totals(switch.url, switch.headers)
                assert totals["balanced"], totals
                assert totals["debits_posted"] > before, "nothing was posted"
                row.update(accounts=accounts, distribution=distribution, mode=mode)
                print(format_row(row), flush=True)
                rows.append(row)
    finally:
        switch.kill_session()
    return rows


def parse_mode(mode: str) -> tuple[str, int, int]:
    """arrayN, twophaseN or linkedK-N (chains of K in arrays of N): (kind, N, K)."""
    for kind in ("array", "twophase", "linked"):
        if mode.startswith(kind):
            rest = mode.removeprefix(kind)
            chain_length, _, size = rest.rpartition("-") if kind == "linked" else ("1", "", rest)
            return kind, int(size), int(chain_length)
    raise ValueError(f"unknown mode {mode!r}")


def format_row(row: dict[str, Any]) -> str:
    return (f"{row['accounts']:>7} accounts  {row['distribution']:<14} {row['mode']:<10} "
            f"{row['transfers']:>7} transfers  {row['transfers_per_s']:>9,.0f} transfers/s  "
            f"p50 {row['latency_ms_p50']:7.1f} ms  p99 {row['latency_ms_p99']:7.1f} ms  "
            f"errors {row['errors']}" + (f"  retries {row['retries']}" if row.get("retries")
                                          else ""))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.throughput", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--transfers", type=int, default=200_000)
    parser.add_argument("--modes", nargs="+",
                        default=["single", "array1000", "array8190", "twophase8190",
                                 "linked2-8190"],
                        help="single, arrayN (arrays of N), linkedK-N (linked chains of K "
                        "in arrays of N), twophaseN (reserve then post, in "
                        "arrays of N)")
    parser.add_argument("--shards", type=int, default=default_shard_count(os.cpu_count() or 1),
                        help="the switch's default for a new directory: half the cores")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--set", action="append", default=[], metavar="PAYSWITCH_X=Y",
                        help="a setting for the switch, e.g. PAYSWITCH_GC_FREEZE_AFTER_START=false")
    args = parser.parse_args(argv)
    args.env = dict(item.split("=", 1) for item in args.set)
    if shutil.which("wrk") is None and "single" in args.modes:
        print("wrk is not installed (apt-get install wrk)", file=sys.stderr)
        return 2
    OUT_DIR.mkdir(exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="payswitch-bench-") as work:
        for accounts in args.accounts:
            rows.extend(bench_accounts(args, accounts, Path(work)))
    stamp = time.strftime("%Y%m%dT%H%M%S")
    meta = {"date": stamp, "cores": os.cpu_count(), "shards": args.shards, "argv": sys.argv[1:]}
    (OUT_DIR / f"throughput-{stamp}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(f"conservation: balanced after every run; results in bench/out/throughput-{stamp}.json")
    return 0


if __name__ == "__main__":
    sys.exit(main())
