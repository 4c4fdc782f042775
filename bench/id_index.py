"""A shard's index of account ids: `IdIndex` against the `dict[str, int]` it replaced.

For `--ids` ids like the memory benchmark's ("acct-0000001"), in this one process:
- memory per id (tracemalloc: everything the structure allocated), and the whole account
  table's memory per account (rows, index, live structs) with each index;
- a lookup of a random id that is there (median of `--runs` passes over 200,000 ids);
- what a snapshot cut costs the shard's thread: listing the ids as str (snapshot format 5)
  against copying the index's two buffers (format 6), and loading the table back.

    python -m bench.id_index [--ids 500000] [--runs 3]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from typing import Any

from actors.ledger.accounts import AccountTable
from actors.ledger.id_index import IdIndex
from actors.ledger.model import Account

LOOKUPS = 200_000


def traced_bytes(build: Callable[[], Any]) -> tuple[Any, int]:
    tracemalloc.start()
    try:
        built = build()
        return built, tracemalloc.get_traced_memory()[0]
    finally:
        tracemalloc.stop()


def lookup_ns(find: Callable[[str], Any], ids: list[str], runs: int) -> float:
    passes = []
    for _ in range(runs):
        started = time.perf_counter()
        for account_id in ids:
            find(account_id)
        passes.append((time.perf_counter() - started) / len(ids) * 1e9)
    return statistics.median(passes)


def milliseconds(work: Callable[[], Any], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        work()
        times.append((time.perf_counter() - started) * 1000)
    return statistics.median(times)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.id_index", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ids", type=int, default=500_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args(argv)
    ids = [f"acct-{n:07d}" for n in range(args.ids)]
    as_dict, dict_bytes = traced_bytes(lambda: {f"acct-{n:07d}": n for n in range(args.ids)})
    index, index_bytes = traced_bytes(lambda: IdIndex(f"acct-{n:07d}" for n in range(args.ids)))
    table, table_bytes = traced_bytes(lambda: AccountTable.of(
        Account(f"acct-{n:07d}", "USD", 2, f"psp-{n % 50}", 1, "", 1) for n in range(args.ids)))
    asked = random.Random(7).choices(ids, k=LOOKUPS)
    print(f"{args.ids:,} ids")
    print(f"memory per id: dict {dict_bytes / args.ids:.0f} B, IdIndex "
          f"{index_bytes / args.ids:.0f} B; whole table per account (rows, index, live "
          f"structs) {table_bytes / args.ids:.0f} B")
    print(f"lookup of an id that is there: dict {lookup_ns(as_dict.get, asked, args.runs):.0f} "
          f"ns, IdIndex {lookup_ns(index.row_of, asked, args.runs):.0f} ns")
    listed = milliseconds(lambda: list(table.rows), args.runs)
    cut = milliseconds(table.snapshot_rows, args.runs)
    rows = table.snapshot_rows()
    loaded = milliseconds(lambda: AccountTable.from_rows(rows), args.runs)
    print(f"snapshot cut: listing the ids as str (format 5) {listed:.0f} ms; the whole cut "
          f"with the index's buffers (format 6) {cut:.0f} ms; loading the table {loaded:.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
