"""Render benchmark JSON files (bench/out/throughput-*.json) as the Markdown rows of RESULTS.md.

    python -m bench.report bench/out/throughput-A.json [bench/out/throughput-B.json ...]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def render(paths: list[Path]) -> str:
    lines = ["| accounts | distribution | mode | transfers | transfers/s | p50 ms | p99 ms | run |",
             "| --- | --- | --- | --- | --- | --- | --- | --- |"]
    for path in paths:
        run = json.loads(path.read_text())
        for row in run["rows"]:
            lines.append(
                f"| {row['accounts']:,} | {row['distribution']} | {row['mode']} | "
                f"{row['transfers']:,} | {row['transfers_per_s']:,.0f} | "
                f"{row['latency_ms_p50']:.1f} | {row['latency_ms_p99']:.1f} | {path.name} |")
    return "\n".join(lines)


if __name__ == "__main__":
    print(render([Path(arg) for arg in sys.argv[1:]]))
