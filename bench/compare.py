"""Two or more values of one setting, in one run, alternating: ratios from the same session.

For each run and each value: a fresh switch with the setting (`--vary NAME=V1,V2`, a
PAYSWITCH_* environment variable), the accounts, then bench.throughput's single-transfer
(wrk) and array runs, uniform and with 20% on 10 hot accounts. Prints each figure, the
medians per value, and the ratio of each value to the first; the rows go to
bench/out/<name>-<date>.json.

    python -m bench.compare --vary PAYSWITCH_ROUTER_STAGED_COMMIT=false,true [--runs 3]
                            [--transfers 60000] [--modes single array8190]

`--storage-nodes N` serves each switch from a Ray cluster made for it on this machine
(`ray.cluster_utils.Cluster`: a head without CPUs and N storage nodes, each with its own data
directory), as docs/CLUSTER.md's one-machine recipe does; for example replication's cost:

    python -m bench.compare --storage-nodes 2 --vary PAYSWITCH_REPLICATION_MODE=off,sync
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.throughput import OUT_DIR, bench_accounts
from persistence.topology import default_shard_count

ACCOUNTS = 10_000


def parser_for(prog: str, doc: str | None) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog=prog, description=doc,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--transfers", type=int, default=60_000)
    parser.add_argument("--modes", nargs="+", default=["single", "array8190"])
    parser.add_argument("--shards", type=int, default=default_shard_count(os.cpu_count() or 1),
                        help="the switch's default for a new directory: half the cores")
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--wrk-threads", type=int, default=1)
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument("--storage-nodes", type=int, default=0,
                        help="serve each switch from a Ray cluster of this many storage "
                             "nodes on this machine (0: the embedded one-machine Ray)")
    return parser


@contextlib.contextmanager
def storage_cluster(nodes: int, work_dir: Path) -> Iterator[dict[str, str]]:
    """The environment that makes a switch join a fresh cluster of `nodes` storage nodes
    (none: the embedded Ray)."""
    if not nodes:
        yield {}
        return
    from ray.cluster_utils import Cluster  # only this mode needs Ray in the benchmark

    from actors.shard.actor import STORAGE_DIR_ENV, STORAGE_LABEL
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    try:
        for index in range(nodes):
            cluster.add_node(num_cpus=1, labels={STORAGE_LABEL: f"node{index}"},
                             env_vars={STORAGE_DIR_ENV: str(work_dir / f"node{index}")})
        cluster.wait_for_nodes()
        yield {"PAYSWITCH_RAY_ADDRESS": cluster.address}
    finally:
        cluster.shutdown()


def compare(args: argparse.Namespace, name: str, values: list[str], label: str) -> int:
    """Run every value of setting `name` per run; `label` names the rows' key and file."""
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(prefix=f"payswitch-{label}-") as work:
        for run in range(1, args.runs + 1):
            for value in values:
                print(f"run {run}/{args.runs}: {name}={value}", flush=True)
                run_dir = Path(work) / f"run{run}-{value}"
                run_dir.mkdir()
                with storage_cluster(args.storage_nodes, run_dir) as cluster_env:
                    args.env = {name: value, **cluster_env}
                    for row in bench_accounts(args, ACCOUNTS, run_dir):
                        rows.append({**row, label: value, "run": run})
    print_medians(rows, label, values)
    stamp = time.strftime("%Y%m%dT%H%M%S")
    OUT_DIR.mkdir(exist_ok=True)
    meta = {"date": stamp, "cores": os.cpu_count(), "shards": args.shards, "setting": name,
            "storage_nodes": args.storage_nodes, "argv": sys.argv[1:]}
    (OUT_DIR / f"{label}-{stamp}.json").write_text(json.dumps({**meta, "rows": rows}, indent=1))
    print(f"results in bench/out/{label}-{stamp}.json")
    return 0


def print_medians(rows: list[dict[str, Any]], label: str, values: list[str]) -> None:
    print(f"\nmedians (transfers/s, p99 ms) and the ratio to the first {label}:")
    for key in sorted({(r["distribution"], r["mode"]) for r in rows}):
        base = None
        for value in values:
            mine = [r for r in rows if (r["distribution"], r["mode"]) == key
                    and r[label] == value]
            rate = statistics.median(r["transfers_per_s"] for r in mine)
            p99 = statistics.median(r["latency_ms_p99"] for r in mine)
            base = base or rate
            runs = ", ".join(f"{r['transfers_per_s']:,.0f}" for r in mine)
            print(f"  {key[0]:<14} {key[1]:<10} {label} {value}: {rate:>9,.0f}/s "
                  f"(runs {runs})  p99 {p99:7.1f} ms  x{rate / base:.2f}")


def main(argv: list[str] | None = None) -> int:
    parser = parser_for("bench.compare", __doc__)
    parser.add_argument("--vary", required=True, metavar="NAME=V1,V2",
                        help="a PAYSWITCH_* setting and the values to compare")
    args = parser.parse_args(argv)
    name, _, listed = args.vary.partition("=")
    values = [value for value in listed.split(",") if value]
    if not name.startswith("PAYSWITCH_") or len(values) < 2:
        parser.error("--vary takes PAYSWITCH_NAME=VALUE1,VALUE2[,...]")
    return compare(args, name, values, name.removeprefix("PAYSWITCH_").lower())


if __name__ == "__main__":
    sys.exit(main())
