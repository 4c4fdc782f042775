"""Where a process's time goes, from a py-spy raw profile: self time by library and by
function, and time including callees, as shares of all samples.

    py-spy record -p PID -d 15 -r 250 --format raw -o ingress.raw
    python -m bench.spy_summary ingress.raw [--top 40]
"""

from __future__ import annotations

import argparse
import re
import sys
from collections import Counter
from pathlib import Path

LIBRARIES = ("uvicorn", "starlette", "ray", "asyncio", "orjson", "msgspec", "pydantic",
             "switch/", "actors/", "persistence/", "httptools", "lmdb")
_LINE = re.compile(r":\d+\)")
_PATH = re.compile(r"\((.*?)(?::\d+)?\)$")


def summarize(lines: list[str]) -> tuple[int, Counter[str], Counter[str], Counter[str]]:
    """(samples, self time by library, self time by function, time including callees)."""
    libraries: Counter[str] = Counter()
    own: Counter[str] = Counter()
    including: Counter[str] = Counter()
    total = 0
    for line in lines:
        stack, _, count_text = line.rstrip().rpartition(" ")
        if not stack:
            continue
        count = int(count_text)
        total += count
        frames = [_LINE.sub(")", frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for frame in set(frames):
            including[frame] += count
        match = _PATH.search(frames[-1])
        path = match.group(1) if match else frames[-1]
        libraries[next((name for name in LIBRARIES if name in path), "other")] += count
    return total, libraries, own, including


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.spy_summary", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("profile", type=Path)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    total, libraries, own, including = summarize(args.profile.read_text().splitlines())
    print(f"{total} samples")
    for title, counts in (("self time by library", libraries), ("self time by function", own),
                          ("including callees", including)):
        print(f"--- {title}")
        for name, count in counts.most_common(args.top):
            print(f"{count / max(total, 1) * 100:5.1f}%  {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
