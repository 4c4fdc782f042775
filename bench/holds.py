"""Do many holds cost clients anything? One transfer per request at a moderate load, measured
before and after `--holds` pending transfers are made (the hardening issue, item 14).

Starts a switch (default settings: half the CPUs as shards) with `--accounts` accounts. Then:

1. `--runs` measurements of one transfer per request (wrk, `--connections` connections,
   `--transfers` transfers each): p50, p99, and every answer that is not 2xx (a 429 is one).
2. `--holds` pending transfers in arrays of 8,190: half with `timeout_ms` 0 (open until posted
   or voided: they stay for the rest of the run), half with `timeout_ms` 1 (they expire at
   once: the shards expire them in the batches that follow, under the measured load).
3. `--runs` measurements again, same load.

The target: the median p99 after is at most 1.20x the median p99 before, and no answer is a
429 (or any other non-2xx). Prints a table and writes bench/out/holds-<time>.json.

    python -m bench.holds [--holds 100000] [--accounts 10000] [--transfers 20000] [--runs 3]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.throughput import create_accounts, run_single
from tests.chaos import free_port
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
ARRAY = 8190
P99_RATIO_MAX = 1.20


async def make_holds(url: str, holds: int, accounts: int, headers: dict[str, str]
                     ) -> dict[str, int]:
    """`holds` pending transfers, half that never expire and half that expire at once;
    returns their result counts."""
    counts: dict[str, int] = {}
    async with httpx.AsyncClient(base_url=url, headers=headers, timeout=300) as client:
        for start in range(0, holds, ARRAY):
            batch = [{"id": f"hold-{n}", "debit_account_id": f"a{n % accounts}",
                      "credit_account_id": f"a{(n * 7 + 1) % accounts}", "amount": 1,
                      "ledger": "USD", "code": 1, "flags": {"pending": True},
                      "timeout_ms": n % 2} for n in range(start, min(holds, start + ARRAY))]
            response = await client.post("/v1/transfers", json=batch)
            response.raise_for_status()
            for result in response.json()["results"]:
                counts[result["result"]] = counts.get(result["result"], 0) + 1
            _progress(f"holds {min(holds, start + ARRAY):,}/{holds:,}")
    sys.stderr.write("\n")
    return counts


def _progress(text: str) -> None:
    sys.stderr.write(f"\r{text}")
    sys.stderr.flush()


def measure(url: str, label: str, args: argparse.Namespace, key: str) -> list[dict[str, Any]]:
    runs = []
    for run in range(args.runs):
        result = run_single(url, f"{label}{run}", args.accounts, args.transfers, 0.0,
                            args.connections, 2, key)
        print(f"{label} run {run + 1}: {result['transfers_per_s']:,.0f} transfers/s, p50 "
              f"{result['latency_ms_p50']:.1f} ms, p99 {result['latency_ms_p99']:.1f} ms, "
              f"{result['errors']} not 2xx", flush=True)
        runs.append(result)
    return runs


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--holds", type=int, default=100_000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--transfers", type=int, default=20_000, help="per measurement")
    parser.add_argument("--runs", type=int, default=3, help="measurements before and after")
    parser.add_argument("--connections", type=int, default=8, help="a moderate load")
    parser.add_argument("--shards", type=int, default=0)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk (or see bench/RESULTS.md)")
        return 2
    work = Path(tempfile.mkdtemp(prefix="payswitch-holds-"))
    switch = SwitchProcess(work / "data", free_port(), shards=args.shards,
                           log_path=work / "switch.log").start()
    try:
        create_accounts(switch.url, args.accounts, switch.headers)
        before = measure(switch.url, "before", args, switch.operator_key)
        started = time.perf_counter()
        counts = asyncio.run(make_holds(switch.url, args.holds, args.accounts,
                                             switch.headers))
        made_s = time.perf_counter() - started
        print(f"{args.holds:,} holds in {made_s:.1f} s: {counts}", flush=True)
        after = measure(switch.url, "after", args, switch.operator_key)
    finally:
        switch.kill_session()
        shutil.rmtree(work, ignore_errors=True)
    p99_before = statistics.median(r["latency_ms_p99"] for r in before)
    p99_after = statistics.median(r["latency_ms_p99"] for r in after)
    not_2xx = sum(r["errors"] for r in before + after)
    ratio = p99_after / p99_before
    met = ratio <= P99_RATIO_MAX and not_2xx == 0 and counts.get("ok", 0) == args.holds
    print(f"p99 median before {p99_before:.1f} ms, after {p99_after:.1f} ms: {ratio:.2f}x "
          f"(target <= {P99_RATIO_MAX}x); answers not 2xx: {not_2xx} (target 0): "
          f"{'met' if met else 'MISSED'}")
    out = BENCH_DIR / "out" / f"holds-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "before": before, "after": after,
                               "holds": counts, "holds_seconds": made_s,
                               "p99_ratio": ratio, "not_2xx": not_2xx, "met": met}, indent=1))
    print(f"wrote {out}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())
