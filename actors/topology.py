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
REPLICATED_FORMAT_VERSION = 3  # 3 adds each shard's follower, leader epoch and sync state
PINNED_FORMAT_VERSION = 4  # 4 adds pinned accounts (an older release would place them wrong)
FORMAT_VERSIONS_READ = (1, 2, 3, 4)  # a version 1 file is upgraded when it is next served
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
    # Version 3 (replication; empty lists: none, every shard in epoch 1). Per shard: the
    # storage node of its follower ("" none), its leader epoch (raised by each promotion:
    # a deposed leader's writes are refused by epoch), and whether its follower holds every
    # acknowledged record (only such a follower may be promoted).
    replica_nodes: list[str] = msgspec.field(default_factory=list)
    shard_epochs: list[int] = msgspec.field(default_factory=list)
    replicas_in_sync: list[bool] = msgspec.field(default_factory=list)
    # Version 4 (`payswitch slots pin`): accounts placed on a shard of the operator's choice
    # rather than their slot's (everything keyed by such an id goes there).
    pins: dict[str, int] = msgspec.field(default_factory=dict)

    def replica_node(self, shard: int) -> str:
        return self.replica_nodes[shard] if self.replica_nodes else ""

    def shard_epoch(self, shard: int) -> int:
        return self.shard_epochs[shard] if self.shard_epochs else 1

    def replica_in_sync(self, shard: int) -> bool:
        return bool(self.replicas_in_sync) and self.replicas_in_sync[shard]

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
        if not set(self.slot_table) <= set(range(self.shard_count)) or self.epoch < 1:
            raise ValueError("topology's slot table must name only its shards, epoch at least 1")
        if any(len(values) not in (0, self.shard_count) for values in (
                self.replica_nodes, self.shard_epochs, self.replicas_in_sync)):
            raise ValueError("topology's replica lists must name every shard, or none")
        if any(not 0 <= shard < self.shard_count for shard in self.pins.values()):
            raise ValueError("topology pins an account to a shard it does not have")
        if self.replica_nodes and any(node and node == leader for node, leader in zip(
                self.replica_nodes, self.shard_nodes, strict=True)):
            raise ValueError("topology puts a shard's follower on its leader's node")
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
        self.slot_table = list(topology.slot_table)  # its own: a move changes an entry
        self.pins = dict(topology.pins)
        self.epoch = topology.epoch  # the topology's, as moves made or learned here raise it
        self.learned = False  # a move told by a shard since the last topology adopted
        self.shard_count = topology.shard_count
        self._slots = topology.slots

    def adopt(self, topology: Topology) -> bool:
        """The topology as saved by whoever changed it last (a slot move in another ingress
        process, a failover), if not older than what this placement knows; False if not
        taken. The saved one is the truth: a move is saved before its old shard lets go."""
        if topology.epoch < self.epoch or topology.shard_count != self.shard_count \
                or topology.slots != self._slots:
            return False
        self.topology = topology
        self.slot_table = list(topology.slot_table)
        self.pins = dict(topology.pins)
        self.epoch = topology.epoch
        self.learned = False
        return True

    def quota_share(self, shard: int, total: int) -> int:
        """A shard's share of a per-participant bound (`total`, 0: none), by the slots it
        holds: ids are spread evenly over slots, so a participant's accounts land on each
        shard in that proportion (rounded up; at least 1 where it holds none, since 0 would
        mean no bound)."""
        if total <= 0:
            return 0
        held = self.slot_table.count(shard)
        return max(1, -(-total * held // self._slots))

    def shard_of(self, key: str) -> int:
        if self.pins:
            pinned = self.pins.get(key)
            if pinned is not None:
                return pinned
        return self.slot_table[zlib.crc32(key.encode()) % self._slots]  # slot_of, inlined: hot

    def move(self, slot: int, shard: int, account: str = "", pinned: bool = True,
             epoch: int = 0) -> None:
        """A slot now on `shard`, or an account pinned there, or unpinned (its slot being
        there): a shard said it has moved there (under `epoch`, when known)."""
        if not 0 <= shard < self.shard_count:
            return
        self.epoch = max(self.epoch, epoch)
        self.learned = self.learned or not epoch  # told by a shard, not made here
        if account and pinned:
            self.pins[account] = shard
        elif account:  # unpinned: its slot's shard (which later moves may have changed)
            self.pins.pop(account, None)
        elif 0 <= slot < self._slots:
            self.slot_table[slot] = shard


def with_replicas(topology: Topology, nodes: Sequence[str]) -> Topology:
    """Every shard without a follower gets one on the next storage node after its leader's
    (by name, among `nodes`), not yet in sync: it copies the leader's log first. A shard
    whose follower's node is no longer in `nodes` keeps it (the node may return)."""
    names = sorted(set(nodes))
    if len(names) < 2:
        return topology
    count = topology.shard_count
    replica_nodes = list(topology.replica_nodes or [""] * count)
    in_sync = list(topology.replicas_in_sync or [False] * count)
    for shard in range(count):
        if not replica_nodes[shard]:
            leader = topology.shard_nodes[shard]
            after = [name for name in names if name > leader] + [n for n in names if n < leader]
            replica_nodes[shard] = next(name for name in after if name != leader)
            in_sync[shard] = False
    return msgspec.structs.replace(
        topology, format_version=REPLICATED_FORMAT_VERSION, replica_nodes=replica_nodes,
        shard_epochs=list(topology.shard_epochs or [1] * count), replicas_in_sync=in_sync)


def replica_synced(topology: Topology, shard: int, in_sync: bool) -> Topology:
    flags = list(topology.replicas_in_sync)
    flags[shard] = in_sync
    return msgspec.structs.replace(topology, replicas_in_sync=flags)


def promoted(topology: Topology, shard: int) -> Topology:
    """The shard's follower leads under the next epoch; the old leader's node keeps a
    follower's place, out of sync (it rejoins by cutting its log back to the new epoch)."""
    if not topology.replica_in_sync(shard):
        raise ValueError(f"shard {shard}'s follower is not in sync: promoting it would lose "
                         "acknowledged transfers")
    leaders, replicas = list(topology.shard_nodes), list(topology.replica_nodes)
    leaders[shard], replicas[shard] = replicas[shard], leaders[shard]
    epochs = list(topology.shard_epochs)
    epochs[shard] += 1
    return replica_synced(msgspec.structs.replace(
        topology, shard_nodes=leaders, replica_nodes=replicas, shard_epochs=epochs),
        shard, False)


def placed_as(topology: Topology, saved: Topology) -> Topology:
    """`topology` with the placement `saved` has (slot table, pins, epoch): what a writer of
    other fields (the replication controller) saves, so that a slot move made meanwhile by
    an ingress process is kept."""
    return msgspec.structs.replace(
        topology, slot_table=saved.slot_table, pins=saved.pins, epoch=saved.epoch,
        format_version=max(saved.format_version, topology.format_version))
