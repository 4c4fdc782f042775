"""Where an id lives: slot = crc32(id) mod slots, then slot -> shard by the topology's table.

A data directory's topology is saved with its data (persistence/topology.py) the first time
it is served, and every reader of the data (the router, the read models, the WAL tool) places
ids with this one definition, so they always agree. Slot moves (a later step) will change the
table under a new epoch; nothing here assumes the table is round-robin.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import msgspec

TOPOLOGY_FORMAT_VERSION = 2  # 2 names the switch and each shard's storage node
FORMAT_VERSIONS_READ = (1, 2)  # a version 1 file is upgraded when it is next served
LOCAL_NODE = "local"  # the storage node of the embedded one-machine Ray


class Topology(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A data directory's layout: how many slots, which shard holds each, under which epoch;
    which switch the data belongs to, and the storage node holding each shard's data."""

    format_version: int
    slots: int
    shard_count: int
    slot_table: list[int]
    epoch: int
    # Version 2. `switch_id`: written into every shard directory, so a shard refuses another
    # switch's data ("" until first served). `shard_nodes`: per shard, its storage node's
    # name. `shards_created`: False until every shard directory was made on its node; until
    # then a shard may create its directory, after it refuses to start without one.
    switch_id: str = ""
    shard_nodes: list[str] = msgspec.field(default_factory=list)
    shards_created: bool = True

    def check(self) -> Topology:
        """Raise ValueError unless the topology is one this code can serve."""
        if self.format_version not in FORMAT_VERSIONS_READ:
            raise ValueError(f"topology format version {self.format_version} is not known to "
                             f"this release (it reads version {TOPOLOGY_FORMAT_VERSION})")
        nodes_expected = self.shard_count if self.format_version >= 2 else 0
        if len(self.shard_nodes) != nodes_expected:
            raise ValueError(f"topology names {len(self.shard_nodes)} storage nodes for "
                             f"{self.shard_count} shards")
        if not 0 < self.shard_count <= self.slots or len(self.slot_table) != self.slots:
            raise ValueError(f"topology has {self.shard_count} shards, {self.slots} slots and "
                             f"a table of {len(self.slot_table)}: inconsistent")
        if set(self.slot_table) != set(range(self.shard_count)) or self.epoch < 1:
            raise ValueError("topology's slot table must name every shard, epoch at least 1")
        return self


def slot_of(key: str, slots: int) -> int:
    """Stable across processes and restarts (unlike Python's salted hash())."""
    return zlib.crc32(key.encode()) % slots


def round_robin(shard_count: int, slots: int, epoch: int = 1, switch_id: str = "",
                nodes: Sequence[str] = (LOCAL_NODE,), shards_created: bool = True) -> Topology:
    """A new data directory's layout: slots dealt round-robin to shards, and shards to the
    storage nodes `nodes`."""
    if not 0 < shard_count <= slots:
        raise ValueError(f"{shard_count} shards cannot share {slots} slots")
    if not nodes:
        raise ValueError("no storage node to place the shards on")
    return Topology(TOPOLOGY_FORMAT_VERSION, slots, shard_count,
                    [slot % shard_count for slot in range(slots)], epoch, switch_id,
                    [nodes[shard % len(nodes)] for shard in range(shard_count)],
                    shards_created)


def named(topology: Topology, switch_id: str) -> Topology:
    """A version 1 topology (or one not yet named) as version 2: its shards are on the one
    machine that served it, and their directories exist."""
    nodes = topology.shard_nodes or [LOCAL_NODE] * topology.shard_count
    return msgspec.structs.replace(topology, format_version=TOPOLOGY_FORMAT_VERSION,
                                   switch_id=switch_id, shard_nodes=nodes)


class Placement:
    """`shard_of` over a topology: the one function every reader of the data places ids with."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.slot_table = topology.slot_table
        self.shard_count = topology.shard_count
        self._slots = topology.slots

    def shard_of(self, key: str) -> int:
        return self.slot_table[zlib.crc32(key.encode()) % self._slots]  # slot_of, inlined: hot
