"""Where an id lives: slot = crc32(id) mod slots, then slot -> shard by the topology's table.

A data directory's topology is saved with its data (persistence/topology.py) the first time
it is served, and every reader of the data (the router, the read models, the WAL tool) places
ids with this one definition, so they always agree. Slot moves (a later step) will change the
table under a new epoch; nothing here assumes the table is round-robin.
"""

from __future__ import annotations

import zlib

import msgspec

TOPOLOGY_FORMAT_VERSION = 1


class Topology(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A data directory's layout: how many slots, which shard holds each, under which epoch."""

    format_version: int
    slots: int
    shard_count: int
    slot_table: list[int]
    epoch: int

    def check(self) -> Topology:
        """Raise ValueError unless the topology is one this code can serve."""
        if self.format_version != TOPOLOGY_FORMAT_VERSION:
            raise ValueError(f"topology format version {self.format_version} is not known to "
                             f"this release (it reads version {TOPOLOGY_FORMAT_VERSION})")
        if not 0 < self.shard_count <= self.slots or len(self.slot_table) != self.slots:
            raise ValueError(f"topology has {self.shard_count} shards, {self.slots} slots and "
                             f"a table of {len(self.slot_table)}: inconsistent")
        if set(self.slot_table) != set(range(self.shard_count)) or self.epoch < 1:
            raise ValueError("topology's slot table must name every shard, epoch at least 1")
        return self


def slot_of(key: str, slots: int) -> int:
    """Stable across processes and restarts (unlike Python's salted hash())."""
    return zlib.crc32(key.encode()) % slots


def round_robin(shard_count: int, slots: int, epoch: int = 1) -> Topology:
    """A new data directory's layout: slots dealt round-robin to shards."""
    if not 0 < shard_count <= slots:
        raise ValueError(f"{shard_count} shards cannot share {slots} slots")
    return Topology(TOPOLOGY_FORMAT_VERSION, slots, shard_count,
                    [slot % shard_count for slot in range(slots)], epoch)


class Placement:
    """`shard_of` over a topology: the one function every reader of the data places ids with."""

    def __init__(self, topology: Topology) -> None:
        self.topology = topology
        self.slot_table = topology.slot_table
        self.shard_count = topology.shard_count
        self._slots = topology.slots

    def shard_of(self, key: str) -> int:
        return self.slot_table[zlib.crc32(key.encode()) % self._slots]  # slot_of, inlined: hot
