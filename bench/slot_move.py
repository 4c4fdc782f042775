"""How long a slot move takes, and so how long its slot answers 503: two shard hosts on real
LMDB logs (no Ray, no HTTP), the real router and mover (switch/routing/slot_move.py).

Fills shard 0 with `--accounts` accounts and `--transfers` transfers between them (arrays of
1,000), then moves `--moves` of its slots to shard 1, one after the other, and prints per
move what it carried and how long it took; then the median. A move's time is the time the
slot refuses commands (freeze to release) plus the topology save, so it is the longest a
client waits on one slot; it grows with what the slot holds and with the old shard's store,
which freezing scans whole.

    python -m bench.slot_move [--accounts 100000] [--transfers 200000] [--slots 1024]
        [--moves 5] [--dir DIR]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
from pathlib import Path

import msgspec

from actors.ledger.model import Account, Transfer
from actors.shard.host import ShardConfig, ShardHost
from actors.topology import Placement, Topology, round_robin
from persistence.lmdb_log import LmdbLog
from switch.routing.router import Router
from switch.routing.slot_move import SlotMoved, move_slot, moved_in
from switch.routing.transport import LocalShard

MAP_SIZE_BYTES = 1 << 34
ARRAY = 1000


async def run(directory: Path, accounts: int, transfers: int, slots: int, moves: int
              ) -> list[SlotMoved]:
    hosts = [ShardHost(ShardConfig(i, ("USD",), 1_000_000),
                       lambda i=i: LmdbLog(directory / f"shard-{i}", MAP_SIZE_BYTES))
             for i in range(2)]
    topology = [all_on_shard_zero(round_robin(2, slots))]
    router = Router([LocalShard(i, host) for i, host in enumerate(hosts)],
                    Placement(topology[0]), 1 << 20, 8190)

    def load() -> Topology:
        return topology[0]

    def save(slot: int, shard: int, epoch: int, account: str) -> Topology:
        topology[0] = moved_in(topology[0], slot, shard, epoch, account)
        return topology[0]

    try:
        names = [f"a{n}" for n in range(accounts)]
        for start in range(0, accounts, ARRAY):
            await router.create_accounts([Account(name, "USD", 1, "o", 0, "")
                                          for name in names[start:start + ARRAY]])
            _progress(f"accounts {min(accounts, start + ARRAY):,}/{accounts:,}")
        rng = random.Random(1)
        for start in range(0, transfers, ARRAY):
            await router.create_transfers([Transfer(
                f"t{n}", *rng.sample(names, 2), rng.randint(1, 100), "USD", 1)
                for n in range(start, min(transfers, start + ARRAY))])
            _progress(f"transfers {min(transfers, start + ARRAY):,}/{transfers:,}")
        sys.stderr.write("\n")
        made = []
        for slot in range(moves):
            made.append(await move_slot(router, load, save, slot, 1))
            _progress(f"moves {slot + 1}/{moves}")
        sys.stderr.write("\n")
        return made
    finally:
        for host in hosts:
            host.close()


def all_on_shard_zero(topology: Topology) -> Topology:
    """Every slot on shard 0 (shard 1 starts empty: it receives the moved slots)."""
    return msgspec.structs.replace(topology, slot_table=[0] * topology.slots)


def _progress(text: str) -> None:
    sys.stderr.write(f"\r{text}")
    sys.stderr.flush()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=100_000)
    parser.add_argument("--transfers", type=int, default=200_000)
    parser.add_argument("--slots", type=int, default=1024)
    parser.add_argument("--moves", type=int, default=5)
    parser.add_argument("--dir", type=Path, help="where the logs go (default: a temporary "
                        "directory, removed after)")
    args = parser.parse_args()
    directory = args.dir or Path(tempfile.mkdtemp(prefix="payswitch-slot-move-"))
    try:
        made = asyncio.run(run(directory, args.accounts, args.transfers, args.slots,
                               args.moves))
    finally:
        if args.dir is None:
            shutil.rmtree(directory, ignore_errors=True)
    for moved in made:
        print(f"slot {moved.slot}: {moved.accounts} accounts, {moved.transfers} transfers, "
              f"{1000 * moved.seconds:.1f} ms")
    print(f"median {1000 * statistics.median(m.seconds for m in made):.1f} ms per move "
          f"({args.accounts:,} accounts and {args.transfers:,} transfers on the old shard, "
          f"{args.slots} slots)")


if __name__ == "__main__":
    main()
