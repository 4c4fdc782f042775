"""`make bench-peers`: payswitch beside what its users would otherwise use, in one run.

On one machine, one after the other, with the same accounts (`--accounts`, "a0" ...) and the
same distributions (uniform; 20% of transfers with one side on one of 10 hot accounts):

1. **The HTTP stack's own ceiling** (bench/bare_stack.py): Starlette on uvicorn with
   httptools, answering each JSON POST with nothing behind it; wrk, 64 connections.
2. **payswitch**, default settings (its own Ray, half the CPUs as shards): one transfer per request
   (wrk, 64 connections, `--transfers`), and arrays of 8,190 (4 senders).
3. **PostgreSQL 15** (bench/postgres_peer.py: fsync on, synchronous commit): one PL/pgSQL
   call per transfer (pgbench, `--pg-clients` clients), and 100 transfers per transaction
   (`--pg-batch-clients` clients).

Each figure is durable transfers per second; ratios are to figures of the same run. With
`--runs N` the whole sequence repeats and the medians are printed at the end. The books must
balance after every step, in both systems.

    python -m bench.peers [--accounts 10000] [--runs 3] [--seconds 15] [--transfers 60000]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.noisy_key import result_of, wrk
from bench.postgres_peer import scratch_postgres
from bench.throughput import (
    OUT_DIR,
    create_accounts,
    ledger_totals,
    run_arrays,
    run_single,
)
from tests.chaos import free_port
from tests.launcher import SwitchProcess

DISTRIBUTIONS = (("uniform", 0), ("hot 20% on 10", 20))
ARRAY = 8190
PG_BATCH = 100


def bare_stack(seconds: float, accounts: int) -> dict[str, Any]:
    port = free_port()
    server = subprocess.Popen([sys.executable, "-m", "bench.bare_stack", "--port", str(port)])
    try:
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 30
        while True:
            try:
                httpx.post(url + "/v1/transfers", json={"id": "warm-up"}, timeout=2)
                break
            except httpx.TransportError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        row = result_of(wrk(url, "bare", "", "a", accounts, 64, seconds))
        return {"transfers_per_s": row["requests_per_s"], "latency_ms_p50": row["latency_ms_p50"],
                "latency_ms_p99": row["latency_ms_p99"]}
    finally:
        server.terminate()
        server.wait(timeout=30)


def payswitch(args: argparse.Namespace, run: int, work: Path) -> list[dict[str, Any]]:
    switch = SwitchProcess(work / f"data-{run}", free_port(), 0, work / f"switch-{run}.log"
                           ).start()
    rows = []
    try:
        create_accounts(switch.url, args.accounts, switch.headers)
        for distribution, hot_percent in DISTRIBUTIONS:
            run_id = f"peers{run}-{hot_percent}"
            single = run_single(switch.url, run_id + "-s", args.accounts, args.transfers,
                                hot_percent / 100, 64, 1, switch.operator_key)
            rows.append({"system": "payswitch", "mode": "one per request", **single,
                         "distribution": distribution})
            arrays = asyncio.run(run_arrays(switch.url, run_id + "-a", args.accounts,
                                            args.array_transfers, hot_percent / 100, ARRAY,
                                            switch.headers))
            rows.append({"system": "payswitch", "mode": f"arrays of {ARRAY}", **arrays,
                         "distribution": distribution})
            totals = ledger_totals(switch.url, switch.headers)
            assert totals["balanced"], totals
    finally:
        switch.kill_session()
    return rows


def postgres(args: argparse.Namespace, run: int) -> list[dict[str, Any]]:
    rows = []
    with scratch_postgres(free_port()) as server:
        server.create_accounts(args.accounts)
        for distribution, hot_percent in DISTRIBUTIONS:
            for mode, per_transaction, clients in (
                    ("one per request", 1, args.pg_clients),
                    (f"{PG_BATCH} per transaction", PG_BATCH, args.pg_batch_clients)):
                row = server.pgbench(run, args.accounts, hot_percent, per_transaction,
                                     clients, args.seconds)
                rows.append({"system": "PostgreSQL 15", "mode": mode, **row,
                             "distribution": distribution, "clients": clients})
            assert server.balanced(), "PostgreSQL's books do not balance"
    return rows


def one_run(args: argparse.Namespace, run: int, work: Path) -> list[dict[str, Any]]:
    bare = bare_stack(args.seconds, args.accounts)
    rows = [{"system": "bare HTTP stack", "mode": "one per request", "distribution": "-",
             **bare}]
    rows += payswitch(args, run, work)
    rows += postgres(args, run)
    for row in rows:
        row["run"] = run
        row["x_bare_stack"] = row["transfers_per_s"] / bare["transfers_per_s"]
    return rows


def show(rows: list[dict[str, Any]], title: str) -> None:
    print(f"\n{title}")
    print(f"{'system':<16} {'mode':<20} {'distribution':<14} {'transfers/s':>12} "
          f"{'p50 ms':>9} {'p99 ms':>9} {'x bare stack':>13}")
    for row in rows:
        print(f"{row['system']:<16} {row['mode']:<20} {row['distribution']:<14} "
              f"{row['transfers_per_s']:>12,.0f} {row['latency_ms_p50']:>9.1f} "
              f"{row['latency_ms_p99']:>9.1f} {row['x_bare_stack']:>13.2f}", flush=True)


def medians(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    groups: dict[tuple[str, str, str], list[dict[str, Any]]] = {}
    for row in rows:
        groups.setdefault((row["system"], row["mode"], row["distribution"]), []).append(row)
    return [{"system": system, "mode": mode, "distribution": distribution,
             **{field: statistics.median(row[field] for row in group)
                for field in ("transfers_per_s", "latency_ms_p50", "latency_ms_p99",
                              "x_bare_stack")}}
            for (system, mode, distribution), group in groups.items()]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.peers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=15,
                        help="per step of the bare stack and of PostgreSQL")
    parser.add_argument("--transfers", type=int, default=60_000,
                        help="payswitch, one per request (wrk stops at this many)")
    parser.add_argument("--array-transfers", type=int, default=200_000)
    parser.add_argument("--pg-clients", type=int, default=32)
    parser.add_argument("--pg-batch-clients", type=int, default=8)
    args = parser.parse_args(argv)
    for tool in ("wrk", "pgbench", "psql"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed: `make bench-peers` installs it", file=sys.stderr)
            return 2
    rows: list[dict[str, Any]] = []
    work = Path(tempfile.mkdtemp(prefix="payswitch-peers-"))
    try:
        for run in range(1, args.runs + 1):
            found = one_run(args, run, work)
            show(found, f"run {run} of {args.runs} ({time.strftime('%H:%M:%S')})")
            rows += found
    finally:
        shutil.rmtree(work, ignore_errors=True)
    summary = medians(rows)
    show(summary, f"medians of {args.runs} runs")
    OUT_DIR.mkdir(exist_ok=True)
    out = OUT_DIR / f"peers-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "medians": summary}, indent=2))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
