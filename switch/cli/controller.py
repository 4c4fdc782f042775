"""The replication controller: the one place that changes who leads a shard, and whether its
follower may be promoted. It runs in the process that started the shards (the supervisor
with `--workers`), beside the data directory whose `topology.json` it keeps.

Every tick (`CONTROLLER_TICK_S`) it looks at each replicated shard, blocked leaders first:

- Its leader is blocked (its follower did not confirm a batch): the follower is recorded
  out of sync, then the leader is told to go on alone (it copies the follower back).
- Its leader has *confirmed* its follower (seen to hold the whole log since the last
  failure, and every commit waits for it): the follower is recorded in sync. A leader that
  does not wait for its follower (alone) has it recorded out of sync.
- Its leader's storage node is gone from the Ray cluster and its follower is in sync, under
  the shard's epoch, holding at least what it was last confirmed to hold: the follower is
  **promoted**: the old leader's actor is killed for good, the follower's actor stops
  (freeing its directory), the topology is saved (next epoch, leader and follower nodes
  swapped, follower out of sync), and a leader starts on the follower's directory under
  the new epoch; it recovers while the controller goes on. Each step may be repeated: a
  promotion that stops half way is finished at a later tick. Routers find it by name. A
  follower that is not in sync is never promoted (it may lack acknowledged transfers): the
  shard waits for its node, and the log says so.
- Its follower's node is in the cluster but no follower runs (the node returned, or was
  added): one is started, recorded out of sync first (its copy may start empty). A returning
  old leader's directory becomes that follower and cuts what the new leader never held.

What makes a promotion safe: the topology calls a follower in sync only after its leader
confirmed it holds every record, and no longer once the leader stops waiting for it (a
follower is recorded out of sync before its leader is let go on alone); and the new epoch
fences the old leader, whose follower refuses it. Followers are all
recorded out of sync when the switch starts (switch/cli/serve.py), and confirmed again.
"""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import ray

from actors.shard.actor import RayShards, storage_nodes
from actors.shard.stats import ShardStatus
from actors.topology import Topology, placed_as, promoted, replica_synced
from persistence.topology import load_topology, update_topology

log = logging.getLogger("payswitch.controller")

CONTROLLER_TICK_S = 0.5
STATUS_TIMEOUT_S = 2.0


RETRY_S = 10.0  # a follower or leader that would not start is tried again after this


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
        # Per shard, the newest record its follower was confirmed to hold: a follower found
        # with less (an empty copy made after a lost volume) is never promoted.
        self._confirmed_seq: dict[int, int] = {}
        self._follower_tried: dict[int, float] = {}
        self._leader_tried: dict[int, float] = {}

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
        """Blocked leaders first (they refuse every call until released), then lost leaders
        (a promotion waits for the old actors to stop), each shard on its own."""
        alive = set(storage_nodes())
        replicated = [shard for shard in range(self.topology.shard_count)
                      if self.topology.replica_node(shard)]
        for step in (self._release_or_record, self._fail_over_or_follow):
            for shard in replicated:
                if self._stop.is_set():
                    return
                try:
                    step(shard, alive)
                except Exception:
                    log.exception("replication controller: shard %d", shard)

    def _release_or_record(self, shard: int, alive: set[str]) -> None:
        """What the leader says about its follower, recorded in the topology first."""
        topology = self.topology
        if topology.shard_nodes[shard] not in alive:
            return
        status = self._status(shard)
        state = status.replication if status is not None else None
        if state is None or state.deposed:
            return  # (a deposed leader is an old actor: another leads)
        in_sync = topology.replica_in_sync(shard)
        if state.blocked:
            if in_sync:
                self._save(replica_synced(topology, shard, False))
                log.warning("shard %d: follower on %s recorded out of sync (%s); the leader "
                            "goes on alone and copies it back", shard,
                            topology.replica_node(shard), state.blocked)
            ray.get(self.shards.actors[shard].go_alone.remote(), timeout=STATUS_TIMEOUT_S)
        elif state.confirmed:
            self._confirmed_seq[shard] = max(self._confirmed_seq.get(shard, 0),
                                             state.follower_seq)
            if not in_sync:
                self._save(replica_synced(topology, shard, True))
                log.info("shard %d: follower on %s in sync (record %d, epoch %d)", shard,
                         topology.replica_node(shard), state.follower_seq, state.epoch)
        elif in_sync and not state.waits:  # alone, or async and not confirmed
            self._save(replica_synced(topology, shard, False))

    def _fail_over_or_follow(self, shard: int, alive: set[str]) -> None:
        topology = self.topology
        leader_node, follower_node = topology.shard_nodes[shard], topology.replica_node(shard)
        if leader_node not in alive:
            if topology.replica_in_sync(shard) and follower_node in alive \
                    and self._promotable(shard):
                self._promote(shard)
            elif shard not in self._waiting_logged:
                self._waiting_logged.add(shard)
                log.error("shard %d: its leader's storage node %s is gone and its follower "
                          "on %s is %s: the shard waits for node %s (docs/OPERATIONS.md)",
                          shard, leader_node, follower_node,
                          "not in sync" if follower_node in alive else "gone too", leader_node)
            return
        self._waiting_logged.discard(shard)
        if not self.shards.leader_running(shard) and self._may_try(self._leader_tried, shard):
            log.warning("shard %d: no leader runs on %s: starting it", shard, leader_node)
            self.shards.restart_leader(shard, topology)  # (a promotion that stopped half way)
        if follower_node in alive and self.shards.follower(shard) is None:
            self._start_follower(shard)

    def _start_follower(self, shard: int) -> None:
        """A new follower copy may start empty: it is recorded out of sync before it runs."""
        if not self._may_try(self._follower_tried, shard):
            return
        if self.topology.replica_in_sync(shard):
            self._save(replica_synced(self.topology, shard, False))
        log.info("shard %d: starting its follower on storage node %s", shard,
                 self.topology.replica_node(shard))
        self.shards.start_follower(shard, self.topology)
        self.shards.actors[shard].follower_replaced.remote()  # what it confirmed is moot

    @staticmethod
    def _may_try(tried: dict[int, float], shard: int) -> bool:
        """At most one attempt per RETRY_S per shard (an actor that cannot start)."""
        if time.monotonic() - tried.get(shard, -RETRY_S) < RETRY_S:
            return False
        tried[shard] = time.monotonic()
        return True

    def _promotable(self, shard: int) -> bool:
        """Its follower holds what it was last confirmed to hold, under the shard's epoch
        (not an empty copy made since: a volume that was not mounted)."""
        follower = self.shards.follower(shard)
        try:
            status = ray.get(follower.status.remote(), timeout=STATUS_TIMEOUT_S) \
                if follower is not None else None
        except Exception:
            status = None
        epochs = status["epochs"] if status is not None else []
        needed = self._confirmed_seq.get(shard, 0)
        if status is None or not epochs or epochs[-1][0] != self.topology.shard_epoch(shard) \
                or status["last_seq"] < needed:
            if shard not in self._waiting_logged:
                self._waiting_logged.add(shard)
                log.error("shard %d: its follower on %s cannot be promoted (%s; it was "
                          "confirmed at record %d under epoch %d): the shard waits for its "
                          "leader's node", shard, self.topology.replica_node(shard),
                          f"it answers {status}" if status is not None else "it does not "
                          "answer", needed, self.topology.shard_epoch(shard))
            return False
        return True

    def _status(self, shard: int) -> ShardStatus | None:
        try:
            status: ShardStatus = ray.get(self.shards.actors[shard].status.remote(),
                                          timeout=STATUS_TIMEOUT_S)
        except Exception:  # restarting, or its node is going: a later tick looks again
            return None
        return status

    def _promote(self, shard: int) -> None:
        """The topology first, then the actors; the new leader recovers on its own (its
        shard answers 503 meanwhile): the controller goes on with the other shards."""
        old = self.topology
        new = promoted(old, shard)
        log.warning("shard %d: storage node %s is gone; promoting its follower on %s under "
                    "epoch %d", shard, old.shard_nodes[shard], new.shard_nodes[shard],
                    new.shard_epoch(shard))
        self.shards.stop_for_promotion(shard)  # may be tried again: nothing saved yet
        self._save(new)  # the new leader starts under the new epoch from here on
        self._confirmed_seq.pop(shard, None)
        self.shards.restart_leader(shard, new)

    def _save(self, topology: Topology) -> None:
        """Its own fields (followers, epochs, sync) as changed; the slot table, pins and
        topology epoch as saved (slot moves in the ingress processes change those)."""
        self.topology = update_topology(self._data_dir,
                                        lambda saved: placed_as(topology, saved))
