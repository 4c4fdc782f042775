"""One ingress process against several (`--workers`), in one run, alternating.

For each run and each worker count: a fresh switch (`PAYSWITCH_SERVER_WORKERS=N`), the
accounts, then bench.throughput's single-transfer (wrk) and array runs, uniform and with 20%
on 10 hot accounts. Prints each figure, the medians per worker count, and the ratio of each
count to one worker; the rows go to bench/out/workers-<date>.json (bench/compare.py).

    python -m bench.workers [--workers 1 2] [--runs 3] [--transfers 60000]
                            [--modes single array8190]
"""

from __future__ import annotations

import sys

from bench.compare import compare, parser_for


def main(argv: list[str] | None = None) -> int:
    parser = parser_for("bench.workers", __doc__)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2])
    args = parser.parse_args(argv)
    return compare(args, "PAYSWITCH_SERVER_WORKERS", [str(n) for n in args.workers], "workers")


if __name__ == "__main__":
    sys.exit(main())
