"""One shard host alone (no Ray, no HTTP, no router): how long a batch of commits takes,
from its bytes in to its reply out, with its LMDB commit (fsync) and store writes.

Opens `--accounts` accounts, then sends `--batches` batches of `--size` single-phase commits
between random accounts (ids that grow, as the benchmarks' clients send). Prints commits/s
and milliseconds per batch after a first tenth of the batches (warm-up, not counted). It is
the figure the shard's part of every array benchmark stands on; compare commits in one run:

    python -m bench.host [--batches 200] [--size 1000] [--accounts 10000] [--dir DIR]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from actors.codec import decode_reply, encode_commands
from actors.ledger.model import Account, Transfer
from actors.messages import Command, Commit, CreateAccount
from actors.shard.host import ShardConfig, ShardHost
from persistence.lmdb_log import LmdbLog

MAP_SIZE_BYTES = 1 << 34
ACCOUNTS_PER_BATCH = 5_000


def batches(accounts: int, count: int, size: int) -> list[bytes]:
    rng = random.Random(1)
    encoded = []
    for b in range(count):
        commands: list[Command] = []
        for k in range(size):
            debit, credit = rng.sample(range(accounts), 2)
            commands.append(Commit(Transfer(f"t{b:06d}-{k:05d}", f"a{debit}", f"a{credit}",
                                            rng.randint(1, 100), "USD", 1), 3))
        encoded.append(encode_commands(commands))
    return encoded


def run(directory: Path, accounts: int, count: int, size: int) -> tuple[float, float]:
    host = ShardHost(ShardConfig(0, ("USD",), 1_000_000),
                     lambda: LmdbLog(directory, MAP_SIZE_BYTES))
    for start in range(0, accounts, ACCOUNTS_PER_BATCH):
        end = min(accounts, start + ACCOUNTS_PER_BATCH)
        host.handle(encode_commands([CreateAccount(Account(f"a{i}", "USD", 1, "o", 0, ""))
                                     for i in range(start, end)]))
    blobs = batches(accounts, count, size)
    warm = max(1, count // 10)
    started = 0.0
    for n, blob in enumerate(blobs):
        if n == warm:
            started = time.perf_counter()
        reply = decode_reply(host.handle(blob))
        if reply.failed:
            raise SystemExit(f"batch {n} failed: {reply.failed} {reply.message}")
        if n % 20 == 0:
            print(f"\r  batch {n + 1}/{count}", end="", file=sys.stderr, flush=True)
    seconds = time.perf_counter() - started
    print(file=sys.stderr)
    host.close()
    counted = count - warm
    return counted * size / seconds, 1000 * seconds / counted


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--size", type=int, default=1000)
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--dir", type=Path, default=None,
                        help="where the shard's data goes (default: a temporary directory)")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="payswitch-host-"))
    try:
        per_second, ms_per_batch = run(directory, args.accounts, args.batches, args.size)
    finally:
        shutil.rmtree(directory, ignore_errors=True)
    print(f"host: {per_second:,.0f} commits/s, {ms_per_batch:.2f} ms per batch of {args.size} "
          f"({args.batches} batches, {args.accounts:,} accounts)")


if __name__ == "__main__":
    main()
