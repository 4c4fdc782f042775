"""One ingress process against several (`--workers`), in one run, alternating.

For each run and each worker count: a fresh switch (`PAYSWITCH_SERVER_WORKERS=N`), the
accounts, then bench.throughput's single-transfer (wrk) and array runs, uniform and with 20%
on 10 hot accounts. Prints each figure, the medians per worker count, and the ratio of each
count to one worker; the rows go to bench/out/workers-<date>.json.

    python -m bench.workers [--workers 1 2] [--runs 3] [--transfers 60000]
                            [--modes single array8190]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.throughput import OUT_DIR, bench_accounts

ACCOUNTS = 10_000


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.workers", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--transfers", type=int, default=60_000)
    parser.add_argument("--modes", nargs="+", default=["single", "array8190"])
    parser.add_argument("--shards", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=18080)
    args = parser.parse_args(argv)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix="payswitch-workers-") as work:
        for run in range(1, args.runs + 1):
            for workers in args.workers:
                args.env = {"PAYSWITCH_SERVER_WORKERS": str(workers)}
                print(f"run {run}/{args.runs}: --workers {workers}", flush=True)
                run_dir = Path(work) / f"run{run}-w{workers}"
                run_dir.mkdir()
                for row in bench_accounts(args, ACCOUNTS, run_dir):
                    rows.append({**row, "workers": workers, "run": run})
    print_medians(rows, args.workers)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    OUT_DIR.mkdir(exist_ok=True)
    meta = {"date": stamp, "cores": os.cpu_count(), "shards": args.shards, "argv": sys.argv[1:]}
    (OUT_DIR / f"workers-{stamp}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(f"results in bench/out/workers-{stamp}.json")
    return 0


def print_medians(rows: list[dict[str, Any]], worker_counts: list[int]) -> None:
    print("\nmedians (transfers/s, p99 ms) and the ratio to the first worker count:")
    for key in sorted({(r["distribution"], r["mode"]) for r in rows}):
        base = None
        for workers in worker_counts:
            mine = [r for r in rows if (r["distribution"], r["mode"]) == key
                    and r["workers"] == workers]
            rate = statistics.median(r["transfers_per_s"] for r in mine)
            p99 = statistics.median(r["latency_ms_p99"] for r in mine)
            base = base or rate
            runs = ", ".join(f"{r['transfers_per_s']:,.0f}" for r in mine)
            print(f"  {key[0]:<14} {key[1]:<10} workers {workers}: {rate:>9,.0f}/s "
                  f"(runs {runs})  p99 {p99:7.1f} ms  x{rate / base:.2f}")


if __name__ == "__main__":
    sys.exit(main())
