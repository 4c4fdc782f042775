"""The replication controller: the one place that changes who leads a shard, and whether its
follower may be promoted. It runs in the process that started the shards (the supervisor
with `--workers`), beside the data directory whose `topology.json` it keeps.

Every tick (`CONTROLLER_TICK_S`) it looks at each replicated shard:

- Its leader's storage node is gone from the Ray cluster and its follower is in sync: the
  follower is **promoted**. The topology is saved first (next epoch, leader and follower
  nodes swapped, follower out of sync), then the old leader's actor is killed for good, the
  follower's actor stops, and a leader starts on the follower's directory under the new
  epoch. Routers find it by name. A follower that is not in sync is never promoted (it may
  lack acknowledged transfers): the shard waits for its node, and the log says so.
- Its leader is blocked (its follower did not confirm a batch): the follower is recorded
  out of sync, then the leader is told to go on alone (it copies the follower back).
- Its leader waits for its follower again (it caught up): the follower is recorded in sync.
- Its follower's node is in the cluster but no follower runs (the node returned, or was
  added): one is started. A returning old leader's directory becomes that follower and cuts
  what the new leader never held.

The order of each change (topology saved before the leader acts on it) is what makes a
promotion safe: the topology never calls a follower in sync that lacks an acknowledged
record.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

import ray

from actors.shard.actor import RayShards, storage_nodes
from actors.shard.replication import ReplicationState
from actors.shard.stats import ShardStatus
from actors.topology import Topology, promoted, replica_synced
from persistence.topology import load_topology, save_topology

log = logging.getLogger("payswitch.controller")

CONTROLLER_TICK_S = 0.5
STATUS_TIMEOUT_S = 2.0


class ReplicationController:
    def __init__(self, shards: RayShards, data_dir: Path, mode: str) -> None:
        self.shards = shards
        saved = load_topology(data_dir)  # as start-up left it (shards_created, followers)
        if saved is None:
            raise ValueError(f"{data_dir} has no topology to control")
        self.topology = saved
        self._data_dir = data_dir
        self._mode = mode
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting_logged: set[int] = set()

    def start(self) -> ReplicationController:
        if self._mode != "off" and any(self.topology.replica_nodes):
            self._thread = threading.Thread(target=self._run, daemon=True,
                                            name="replication-controller")
            self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def _run(self) -> None:
        while not self._stop.wait(CONTROLLER_TICK_S):
            try:
                self.tick()
            except Exception:  # a Ray hiccup: the next tick looks again
                log.exception("replication controller tick failed")

    def tick(self) -> None:
        alive = set(storage_nodes())
        for shard in range(self.topology.shard_count):
            if self._stop.is_set():
                return
            if self.topology.replica_node(shard):
                self._look_at(shard, alive)

    def _look_at(self, shard: int, alive: set[str]) -> None:
        topology = self.topology
        leader_node, follower_node = topology.shard_nodes[shard], topology.replica_node(shard)
        if leader_node not in alive:
            if topology.replica_in_sync(shard) and follower_node in alive:
                self._promote(shard)
            elif shard not in self._waiting_logged:
                self._waiting_logged.add(shard)
                log.error("shard %d: its leader's storage node %s is gone and its follower "
                          "on %s is %s: the shard waits for node %s (docs/OPERATIONS.md)",
                          shard, leader_node, follower_node,
                          "not in sync" if follower_node in alive else "gone too", leader_node)
            return
        self._waiting_logged.discard(shard)
        if follower_node in alive and self.shards.follower(shard) is None:
            log.info("shard %d: starting its follower on storage node %s", shard, follower_node)
            self.shards.start_follower(shard, topology)
        status = self._status(shard)
        state = status.replication if status is not None else None
        if state is None:
            return
        if state.blocked:
            if state.deposed:
                return  # an old leader's actor: the controller started another
            if topology.replica_in_sync(shard):
                self._save(replica_synced(topology, shard, False))
                log.warning("shard %d: follower on %s recorded out of sync (%s); the leader "
                            "goes on alone and copies it back", shard, follower_node,
                            state.blocked)
            ray.get(self.shards.actors[shard].go_alone.remote(), timeout=STATUS_TIMEOUT_S)
        elif self._caught_up(state) and not topology.replica_in_sync(shard):
            self._save(replica_synced(topology, shard, True))
            log.info("shard %d: follower on %s in sync (record %d, epoch %d)", shard,
                     follower_node, state.follower_seq, state.epoch)
        elif not self._caught_up(state) and topology.replica_in_sync(shard) \
                and state.mode == "async":
            self._save(replica_synced(topology, shard, False))

    @staticmethod
    def _caught_up(state: ReplicationState) -> bool:
        if state.mode == "async":  # promotable while it ships (what it has not: lost)
            return state.follower_seq >= 0 and not state.blocked
        return state.waits

    def _status(self, shard: int) -> ShardStatus | None:
        try:
            status: ShardStatus = ray.get(self.shards.actors[shard].status.remote(),
                                          timeout=STATUS_TIMEOUT_S)
        except Exception:  # restarting, or its node is going: a later tick looks again
            return None
        return status

    def _promote(self, shard: int) -> None:
        old = self.topology
        new = promoted(old, shard)
        self._save(new)  # first: from here on only the new leader's epoch is acknowledged
        log.warning("shard %d: storage node %s is gone; promoting its follower on %s under "
                    "epoch %d", shard, old.shard_nodes[shard], new.shard_nodes[shard],
                    new.shard_epoch(shard))
        actor = self.shards.promote(shard, new)
        status = ray.get(actor.status.remote())
        log.warning("shard %d: leads on storage node %s (epoch %d), recovered %d records in "
                    "%.0f ms", shard, new.shard_nodes[shard], new.shard_epoch(shard),
                    status.recovered_records, status.recovery_ms)

    def _save(self, topology: Topology) -> None:
        save_topology(self._data_dir, topology)
        self.topology = topology
