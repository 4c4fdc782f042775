"""Each process's share of a core over a window, busiest first: where a benchmark's CPU goes.

Reads utime + stime of every process in /proc before and after the window. Run it beside a
benchmark (e.g. during `python -m bench.throughput --modes single`).

    python -m bench.cpu_share [--seconds 10] [--top 12]
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path


def process_cpu_s(pid: int) -> float:
    """CPU seconds (user + system) the process has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def cpu_seconds_by_process() -> dict[int, tuple[float, str]]:
    """pid -> (CPU seconds so far, its command line, shortened)."""
    found: dict[int, tuple[float, str]] = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(
                errors="replace").strip()
            found[int(entry.name)] = (process_cpu_s(int(entry.name)), command[:90])
        except OSError:
            continue
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.cpu_share", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--top", type=int, default=12)
    args = parser.parse_args(argv)
    before = cpu_seconds_by_process()
    time.sleep(args.seconds)
    after = cpu_seconds_by_process()
    shares = sorted(((after[pid][0] - before[pid][0]) / args.seconds, after[pid][1])
                    for pid in after if pid in before)
    for share, command in reversed(shares[-args.top:]):
        print(f"{share * 100:6.1f}%  {command}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
