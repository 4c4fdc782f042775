"""How fast the WAL tool verifies and replays, and how fast a shard recovers.

Builds one shard log of N records (default 1,000,000), each one committed batch holding one
transfer between 10,000 accounts (the smallest batches the switch writes, so the most records
per transfer), then measures:

- verify + replay: `payswitch wal verify`'s work on the shard (checksums, chain, replay of
  every event, each snapshot compared), in records/s;
- recovery from the log alone (no snapshot and no store: everything the records wrote to the
  store is written again, as for a data directory of an older release), and with the
  snapshot the switch would have taken (its store then holds everything already).

    python -m bench.wal_speed [--records 1000000] [--dir /tmp/walspeed]
"""

from __future__ import annotations

import argparse
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from actors.codec import encode_events, encode_snapshot
from actors.ledger import snapshot
from actors.ledger.events import AccountCreated, Event, TransferCommitted
from actors.ledger.model import Account, Transfer
from actors.shard.host import ShardConfig, ShardHost
from persistence.lmdb_log import LmdbLog
from persistence.records import encode_record, raw_of
from switch.cli.wal.audit import audit_shard

ACCOUNTS = 10_000
CHUNK = 20_000
MAP_SIZE_BYTES = 1 << 34


def build(directory: Path, records: int) -> None:
    log = LmdbLog(directory, MAP_SIZE_BYTES)
    rng = random.Random(1)
    timestamp = 1_700_000_000_000_000_000
    accounts: list[Event] = [AccountCreated(Account(f"a{i}", "USD", 1, "o", 0, "",
                                                    timestamp + i)) for i in range(ACCOUNTS)]
    chain, seq, pending = log.last_chain, 0, []
    first = encode_record(1, timestamp + ACCOUNTS, encode_events(accounts), chain)
    pending.append((1, raw_of(first)))
    chain, seq, timestamp = first.chain, 1, timestamp + ACCOUNTS
    while seq < records:
        seq += 1
        timestamp += 1000
        debit, credit = rng.sample(range(ACCOUNTS), 2)
        event = TransferCommitted(Transfer(f"t{seq}", f"a{debit}", f"a{credit}",
                                           rng.randint(1, 999), "USD", 1, "",
                                           timestamp=timestamp), 3, 0)
        record = encode_record(seq, timestamp, encode_events([event]), chain)
        pending.append((seq, raw_of(record)))
        chain = record.chain
        if len(pending) >= CHUNK:
            log.append_raw_many(pending)
            pending.clear()
    if pending:
        log.append_raw_many(pending)
    log.close()


def add_snapshot(directory: Path) -> None:
    audit = audit_shard(0, directory, ("USD",), check_snapshots=False)
    log = LmdbLog(directory, MAP_SIZE_BYTES)
    log.save_snapshot(log.last_seq, log.last_chain, encode_snapshot(snapshot.dump(audit.ledger)))
    log.close()


def recover_seconds(directory: Path) -> tuple[float, int]:
    started = time.perf_counter()
    host = ShardHost(ShardConfig(0, ("USD",), 1_000_000),
                     lambda: LmdbLog(directory, MAP_SIZE_BYTES))
    seconds = time.perf_counter() - started
    replayed = host.recovery.records_replayed
    host.close()
    return seconds, replayed


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.wal_speed", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--dir", type=Path, help="where to build the log (default: a temp dir)")
    args = parser.parse_args(argv)
    work = args.dir or Path(tempfile.mkdtemp(prefix="payswitch-walspeed-"))
    directory = work / "shard-0000"
    shutil.rmtree(directory, ignore_errors=True)
    started = time.perf_counter()
    build(directory, args.records)
    size_mib = (directory / "data.mdb").stat().st_size / 2**20
    print(f"built {args.records:,} records ({size_mib:,.0f} MiB) in "
          f"{time.perf_counter() - started:.1f} s", flush=True)

    started = time.perf_counter()
    audit = audit_shard(0, directory, ("USD",))
    seconds = time.perf_counter() - started
    assert audit.failure is None and audit.report.records == args.records, audit.failure
    print(f"verify + replay: {args.records / seconds:,.0f} records/s ({seconds:.2f} s)", flush=True)

    seconds, replayed = recover_seconds(directory)
    print(f"recovery from the log alone: {seconds:.2f} s ({replayed:,} records replayed)")
    add_snapshot(directory)
    seconds, replayed = recover_seconds(directory)
    print(f"recovery with a snapshot at the last record: {seconds:.2f} s "
          f"({replayed:,} records replayed)")
    if args.dir is None:
        shutil.rmtree(work)
    return 0


if __name__ == "__main__":
    sys.exit(main())
