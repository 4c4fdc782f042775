"""The shard actor: a Ray actor around a ShardHost, and the Ray side of the transport seam.

This is the only module of actors/ that imports Ray. Writes run in the actor's default group
with `max_concurrency=1`: one call at a time, so the actor is the single writer of every
account it hosts. Reads of committed data (its status, its log feed) run in a `reads` group
of their own thread, so readers never queue behind a shard's batches.

`RayShards` is where actor options, names and placement live: the router only ever sees the
`ShardLink` interface (switch/routing/transport.py), which `RayShard` implements.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import threading
import time
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import ray

from actors.messages import LogFeed
from actors.runtime import configure_logging, release_free_memory, tune_gc
from actors.shard.combine import Batch, CombiningWriter
from actors.shard.data_port import DataPort
from actors.shard.host import ShardConfig, ShardHost
from actors.shard.replication import (
    Endpoint,
    Follower,
    ReplicationMode,
    Replicator,
    SocketFollowerLink,
    serve_follower_request,
)
from actors.shard.stats import ShardStatus
from actors.topology import Topology
from persistence.identity import (
    ForeignShardData,
    ShardDataMissing,
    ShardIdentity,
    claim_shard_directory,
)
from persistence.layout import shard_directory
from persistence.lmdb_log import LmdbLog

log = logging.getLogger("payswitch.shard")

READS = "reads"


class ShardClosed(Exception):
    """A batch reached a shard after its clean stop: it is refused, nothing is written."""


# A Ray node is a storage node when it carries this label, its value the node's name (the
# name the topology records for each shard). Its data directory is STORAGE_DIR_ENV in the
# node's environment, else the `data.dir` the switch was started with.
STORAGE_LABEL = "payswitch.dev/storage"
STORAGE_DIR_ENV = "PAYSWITCH_STORAGE_DIR"


# Every actor of a switch is named, in this Ray namespace, after the switch's id: any process
# of the switch (each ingress process, the tools) finds them by name, and two switches can
# share one Ray cluster.
NAMESPACE = "payswitch"


def actor_name(switch_id: str, role: str) -> str:
    """`role`: `shard-0003`, `query`."""
    return f"{switch_id}:{role}"


def shard_role(index: int) -> str:
    return f"shard-{index:04d}"


def follower_role(index: int) -> str:
    return f"shard-{index:04d}-follower"


class ReplicationPlan(msgspec.Struct, frozen=True):
    """How a leader replicates (from the topology and `replication.*`): its mode, its epoch
    and its follower's actor name."""

    mode: ReplicationMode
    epoch: int
    follower_name: str
    ack_timeout_s: float


NAME_FREED_TIMEOUT_S = 10.0  # a stopped switch's actors give their names back within this


class SwitchAlreadyRunning(Exception):
    """Another process serves this switch: its actors' names are taken in the Ray cluster."""


def create_named(switch_id: str, role: str, create: Callable[[str], Any]) -> Any:
    """`create(name)`'s actor. A name still held by an actor of a switch that just stopped
    (Ray frees it once that actor is dead) is waited for; one held longer belongs to a
    switch still running, and is refused."""
    name = actor_name(switch_id, role)
    deadline = time.monotonic() + NAME_FREED_TIMEOUT_S
    while True:
        try:
            return create(name)
        except ValueError as error:  # Ray: "The name ... is already taken"
            if time.monotonic() > deadline:
                raise SwitchAlreadyRunning(
                    f"switch {switch_id} is already served in this Ray cluster ({error}): stop "
                    "the other `payswitch serve` of this data directory first") from None
            time.sleep(0.1)


class ShardWontStart(Exception):
    """The shard's data is not on this node, or is another switch's: it does not start."""


@ray.remote(max_concurrency=1, concurrency_groups={READS: 1})  # type: ignore[call-overload]
class ShardActor:
    def __init__(self, config: ShardConfig, data_dir: str, map_size_bytes: int,
                 transfer_cache_max: int, identity: ShardIdentity, may_create: bool,
                 replication: ReplicationPlan | None = None) -> None:
        configure_logging(config.log_level, config.log_json)
        directory = _claim(config.shard_index, Path(os.environ.get(STORAGE_DIR_ENV) or data_dir),
                           identity, may_create)
        # The ledger is long-lived: freeze it out of collections after recovery and after
        # each snapshot (a full pass over the state anyway), so the collector only ever
        # walks what changed since. After a snapshot, give back what its encoding freed.
        after_snapshot = self._after_snapshot if config.gc_freeze else release_free_memory
        self._host = ShardHost(config, lambda: LmdbLog(
            directory, map_size_bytes, transfer_cache_max=transfer_cache_max),
            on_snapshot=after_snapshot)
        if replication is not None and replication.mode != "off":
            host = self._host
            follower = SocketFollowerLink(follower_endpoint(replication.follower_name))
            host.replicator = Replicator(
                replication.mode, replication.epoch, directory,
                lambda: host.log_reads, lambda: follower, replication.ack_timeout_s,
                host.batch_lock)
        tune_gc(config.gc_generation0_threshold, config.gc_freeze)
        self._started_ns = time.time_ns()  # this process's: the monitor counts restarts by it
        # Ray's calls and every data-port connection's: one writer, their batches merged
        self._writer = CombiningWriter(self._handle_open)
        self._closed = False
        self._data_port = DataPort(_node_address(), self._writer.run)

    @staticmethod
    def _after_snapshot() -> None:
        gc.freeze()
        release_free_memory()

    @ray.method(enable_task_events=False)
    def handle(self, blob: bytes, request_ids: list[str] | None = None) -> bytes:
        return self._writer.run(blob, request_ids or [])

    def _handle_open(self, batches: list[Batch]) -> list[bytes]:
        """(Under the writer's lock.)"""
        if self._closed:  # else the host would reopen its log to retry the batch
            raise ShardClosed("the shard is closed")
        return self._host.handle_many(batches)

    @ray.method(concurrency_group=READS)
    def data_endpoint(self) -> tuple[str, int, bytes]:
        """Where the data port listens, and the token a connection must open with."""
        return self._data_port.host, self._data_port.port, self._data_port.token

    @ray.method(concurrency_group=READS)
    def status(self) -> ShardStatus:
        return msgspec.structs.replace(self._host.status(), started_ns=self._started_ns,
                                       calls_merged=self._writer.batches - self._writer.groups)

    @ray.method(concurrency_group=READS, enable_task_events=False)
    def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed:
        return self._host.read_log(from_seq, records_max, bytes_max)

    @ray.method(concurrency_group=READS)
    def placement(self) -> dict[str, Any]:
        """Where this shard runs: for the dashboard's node table."""
        context = ray.get_runtime_context()
        return {"node_id": context.get_node_id(),
                "node_ip": ray.util.get_node_ip_address(),  # type: ignore[no-untyped-call]
                "pid": os.getpid()}

    @ray.method(concurrency_group=READS)
    def follower_replaced(self) -> None:
        """The controller started a new follower actor: confirm it afresh."""
        if self._host.replicator is not None:
            self._host.replicator.follower_replaced()

    @ray.method(concurrency_group=READS)
    def go_alone(self) -> None:
        """The controller recorded this shard's follower out of sync: serve without it."""
        if self._host.replicator is not None:
            self._host.replicator.go_alone()

    def close(self) -> None:
        with self._writer.write_lock:
            self._closed = True
            self._data_port.close()
            self._host.close()


def follower_endpoint(name: str) -> Endpoint:
    """Where the follower actor `name` listens for its leader, asked over Ray."""
    def endpoint() -> tuple[str, int, bytes]:
        try:
            actor = ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            raise ConnectionError(f"no follower {name} is running") from None
        found: Any = ray.get(actor.data_endpoint.remote(), timeout=ENDPOINT_TIMEOUT_S)
        return str(found[0]), int(found[1]), bytes(found[2])
    return endpoint


ENDPOINT_TIMEOUT_S = 5.0


@ray.remote(max_concurrency=1, concurrency_groups={READS: 1})  # type: ignore[call-overload]
class FollowerActor:
    """A shard's follower: a copy of its leader's log on another storage node, written only
    by what the leader ships to its port (actors/shard/replication.py). It becomes the
    leader's directory when the controller promotes it."""

    def __init__(self, shard_index: int, data_dir: str, map_size_bytes: int,
                 identity: ShardIdentity, log_level: str, log_json: bool) -> None:
        configure_logging(log_level, log_json)
        directory = _claim(shard_index, Path(os.environ.get(STORAGE_DIR_ENV) or data_dir),
                           identity, may_create=True)
        self._log = LmdbLog(directory, map_size_bytes)
        self._follower = Follower(self._log, directory)
        self._lock = threading.Lock()  # one request at a time, whichever leader sends it
        self._closed = False
        self._started_ns = time.time_ns()
        self._port = DataPort(_node_address(), self._serve)

    def _serve(self, blob: bytes, request_ids: list[str]) -> bytes:
        with self._lock:
            if self._closed:  # its log is closed: nothing more is written
                raise ShardClosed("the follower is closed")
            return serve_follower_request(self._follower, blob)

    @ray.method(concurrency_group=READS)
    def data_endpoint(self) -> tuple[str, int, bytes]:
        return self._port.host, self._port.port, self._port.token

    @ray.method(concurrency_group=READS)
    def status(self) -> dict[str, Any]:
        return {"last_seq": self._follower.last_seq, "started_ns": self._started_ns,
                "epochs": [[e.epoch, e.start_seq] for e in self._follower.epochs],
                "node_id": ray.get_runtime_context().get_node_id()}

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._port.close()
            self._log.close()


def storage_nodes() -> dict[str, list[str]]:
    """The live storage nodes of the Ray cluster this process is connected to: name -> the
    ids of the nodes carrying it (more than one is a misconfiguration)."""
    nodes: dict[str, list[str]] = {}
    for node in ray.nodes():  # type: ignore[no-untyped-call]
        name = (node.get("Labels") or {}).get(STORAGE_LABEL)
        if node.get("Alive") and name:
            nodes.setdefault(name, []).append(str(node["NodeID"]))
    return nodes


def cluster_nodes() -> list[dict[str, Any]]:
    """Every node of the Ray cluster as Ray's state has it now (a blocking call to its GCS)."""
    return [{"node_id": str(node["NodeID"]), "address": node.get("NodeManagerAddress", ""),
             "alive": bool(node.get("Alive")),
             "storage_node": (node.get("Labels") or {}).get(STORAGE_LABEL),
             "cpus": float((node.get("Resources") or {}).get("CPU", 0))}
            for node in ray.nodes()]  # type: ignore[no-untyped-call]


def _claim(shard: int, data_dir: Path, identity: ShardIdentity, may_create: bool) -> Path:
    """The shard's directory on this node, once it is known to hold this shard's data. A
    follower started by the controller may make its directory (it copies the leader's log
    from the start, recorded out of sync until it has); one that Ray restarts may not (an
    unmounted volume would look like an empty copy), nor may any take another switch's."""
    directory = shard_directory(data_dir, shard)
    context = ray.get_runtime_context()
    node = str(context.get_node_labels().get(STORAGE_LABEL) or "?")  # typed as a list: a str
    # Ray restarts a shard with the arguments it was made with: making the directory was for
    # the first start only. A restart that finds it gone refuses, never serves it empty.
    with warnings.catch_warnings():  # Ray's own property reads one it deprecated: not ours
        warnings.simplefilter("ignore", DeprecationWarning)
        reconstructed = context.was_current_actor_reconstructed
    may_create = may_create and not reconstructed
    carriers = storage_nodes().get(node, []) if node != "?" else []
    if len(carriers) > 1:  # Ray could start this shard on either: one holds stale data
        raise ShardWontStart(
            f"shard {shard} will not start: {len(carriers)} Ray nodes carry the storage name "
            f"{node} ({', '.join(c[:8] for c in carriers)}); give each storage node its own")
    try:
        how = claim_shard_directory(directory, identity, may_create)
    except (ShardDataMissing, ForeignShardData) as error:
        raise ShardWontStart(
            f"shard {shard} will not start on storage node {node} (Ray node "
            f"{context.get_node_id()[:8]}, data directory {data_dir}): {error}. Start the "
            f"node with its data ({STORAGE_DIR_ENV}), or restore the directory from a backup "
            "(docs/OPERATIONS.md).") from None
    if how != "found":
        log.info("shard %d: %s %s on storage node %s", shard, how, directory, node)
    return directory


def _node_address() -> str:
    """The address Ray knows this node by: loopback for the embedded one-machine Ray."""
    return str(ray.util.get_node_ip_address())  # type: ignore[no-untyped-call]


class RayShard:
    """One shard actor, as the router's `ShardLink`. Named (`switch_id`): after a failover
    the controller starts the shard's new leader under the same name, and a control call
    that finds the old actor dead looks the name up again and asks the new one. A batch is
    never sent twice (the router decides what a failed call means); the next one goes to
    the new leader."""

    def __init__(self, index: int, actor: Any, switch_id: str = "") -> None:
        self.index = index
        self.actor = actor
        self._name = actor_name(switch_id, shard_role(index)) if switch_id else ""
        # Called (in the event loop) when the name leads to a new actor: a data connection
        # to the old one (a paused machine's) must not hold calls until it resumes.
        self.on_failover: list[Callable[[], None]] = []

    def _found_again(self) -> bool:
        """The named actor, if it is another than the one that died."""
        if not self._name:
            return False
        try:
            actor = ray.get_actor(self._name, namespace=NAMESPACE)
        except ValueError:  # not started yet: the caller's probe asks again
            return False
        if actor._actor_id == self.actor._actor_id:
            return False
        self.actor = actor
        log.info("shard %d: its actor is a new one (%s): a failover", self.index, self._name)
        return True

    async def _look_up_again(self) -> bool:
        if not await asyncio.to_thread(self._found_again):
            return False
        for listener in self.on_failover:
            listener()
        return True

    async def _control(self, method: str, *args: Any) -> Any:
        try:
            return await getattr(self.actor, method).remote(*args)
        except ray.exceptions.RayActorError:
            if not await self._look_up_again():
                raise
            return await getattr(self.actor, method).remote(*args)

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        try:
            return bytes(await self.actor.handle.remote(blob, request_ids))
        except ray.exceptions.RayActorError:
            await self._look_up_again()
            raise

    async def status(self) -> ShardStatus:
        status: ShardStatus = await self._control("status")
        return status

    async def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed:
        feed: LogFeed = await self._control("read_log", from_seq, records_max, bytes_max)
        return feed

    async def placement(self) -> dict[str, Any]:
        placement: dict[str, Any] = await self._control("placement")
        return placement

    async def data_endpoint(self) -> tuple[str, int, bytes]:
        host, port, token = await self._control("data_endpoint")
        return str(host), int(port), bytes(token)


class ShardOptions(msgspec.Struct, frozen=True):
    """What every shard actor of a switch is started with (and started again with, after a
    failover)."""

    data_dir: str
    map_size_bytes: int
    transfer_cache_max: int
    replication_mode: ReplicationMode
    ack_timeout_s: float


class RayShards:
    """Starts and stops the shard actors and their followers: their options, names and
    placement live here."""

    def __init__(self, actors: list[Any], switch_id: str = "",
                 configs: list[ShardConfig] | None = None,
                 options: ShardOptions | None = None) -> None:
        self.actors = actors
        self.links = [RayShard(index, actor, switch_id) for index, actor in enumerate(actors)]
        self.switch_id = switch_id
        self.configs = configs or []
        self.options = options
        # The followers this process started: it owns them (Ray stops an actor whose
        # owner holds no handle), so it keeps their handles.
        self.followers: dict[int, Any] = {}

    @classmethod
    def start(cls, configs: list[ShardConfig], options: ShardOptions,
              topology: Topology) -> RayShards:
        """Create every shard and wait until each has recovered (raises if one cannot).
        num_cpus=0 so that shards may outnumber the cores they share. A shard whose process
        dies (kill -9, out of memory) is restarted by Ray, without end, and recovers from its
        log; a call in flight then fails (never retried by Ray: the router decides) and calls
        made meanwhile wait for the restart. A constructor that raises is not restarted.
        Each shard runs only on the storage node the topology names for it; its follower
        (if any) on the one named for it, when that node is in the cluster."""
        shards = cls([], topology.switch_id, configs, options)
        shards.actors = [shards._start_leader(config.shard_index, topology)
                         for config in configs]
        shards.links = [RayShard(index, actor, topology.switch_id)
                        for index, actor in enumerate(shards.actors)]
        ray.get([actor.status.remote() for actor in shards.actors])
        alive = storage_nodes()
        followers = [shards.start_follower(index, topology)
                     for index in range(topology.shard_count)
                     if topology.replica_node(index) in alive
                     and options.replication_mode != "off"]
        # Before the first batch: a sync leader's first commit waits for its follower.
        with contextlib.suppress(Exception):  # one that cannot start: its leader goes alone
            ray.get([follower.status.remote() for follower in followers],
                    timeout=FOLLOWER_START_TIMEOUT_S)
        return shards

    def _start_leader(self, index: int, topology: Topology) -> Any:
        assert self.options is not None
        options, config = self.options, self.configs[index]
        plan = None
        if options.replication_mode != "off" and topology.replica_node(index):
            plan = ReplicationPlan(options.replication_mode, topology.shard_epoch(index),
                                   actor_name(topology.switch_id, follower_role(index)),
                                   options.ack_timeout_s)

        def create(name: str) -> Any:
            return ShardActor.options(  # type: ignore[attr-defined]
                name=name, namespace=NAMESPACE, num_cpus=0, max_restarts=-1,
                max_task_retries=0,
                label_selector={STORAGE_LABEL: topology.shard_nodes[index]},
            ).remote(config, options.data_dir, options.map_size_bytes,
                     options.transfer_cache_max, ShardIdentity(topology.switch_id, index),
                     not topology.shards_created, plan)
        return create_named(topology.switch_id, shard_role(index), create)

    def start_follower(self, index: int, topology: Topology) -> Any:
        """The shard's follower on the node the topology names (it joins when its leader
        next ships). Returns its actor; one already running is kept."""
        assert self.options is not None
        config, options = self.configs[index], self.options
        running = self.follower(index)
        if running is not None:
            return running
        self.followers[index] = create_named(topology.switch_id, follower_role(index),
                                             lambda name: FollowerActor.options(  # type: ignore[attr-defined]
            name=name, namespace=NAMESPACE, num_cpus=0, max_restarts=-1, max_task_retries=0,
            label_selector={STORAGE_LABEL: topology.replica_node(index)},
        ).remote(index, options.data_dir, options.map_size_bytes,
                 ShardIdentity(topology.switch_id, index), config.log_level, config.log_json))
        return self.followers[index]

    def follower(self, index: int) -> Any | None:
        """The shard's follower actor, if one is alive (or restarting) under its name."""
        try:
            return ray.get_actor(actor_name(self.switch_id, follower_role(index)),
                                 namespace=NAMESPACE)
        except ValueError:
            self.followers.pop(index, None)
            return None

    def stop_for_promotion(self, index: int) -> None:
        """Before shard `index` fails over: its old leader's actor is killed for good (its
        node is gone: it must never start there again) and its follower stops (its
        directory's lock freed). Either may be gone already (a promotion tried before)."""
        try:
            leader = ray.get_actor(actor_name(self.switch_id, shard_role(index)),
                                   namespace=NAMESPACE)
        except ValueError:
            leader = None
        if leader is not None:
            ray.kill(leader, no_restart=True)
        follower = self.follower(index)
        if follower is not None:
            ray.kill(follower, no_restart=True)
            _wait_dead(follower)
            self.followers.pop(index, None)

    def leader_running(self, index: int) -> bool:
        """Whether an actor (alive, or restarting) holds the shard's name."""
        try:
            ray.get_actor(actor_name(self.switch_id, shard_role(index)), namespace=NAMESPACE)
        except ValueError:
            return False
        return True

    def restart_leader(self, index: int, topology: Topology) -> Any:
        """Start the shard's leader where `topology` says (after a promotion whose new
        leader did not start); a follower actor left on that node stops first."""
        follower = self.follower(index)
        if follower is not None and _runs_on(follower, topology.shard_nodes[index]):
            ray.kill(follower, no_restart=True)
            _wait_dead(follower)
            self.followers.pop(index, None)
        self.actors[index] = self._start_leader(index, topology)
        return self.actors[index]

    @classmethod
    def find(cls, topology: Topology) -> RayShards:
        """The shards another process of this switch started (an ingress worker's view)."""
        return cls([ray.get_actor(actor_name(topology.switch_id, shard_role(index)),
                                  namespace=NAMESPACE)
                    for index in range(topology.shard_count)], topology.switch_id)

    def placements(self) -> list[dict[str, Any]]:
        return list(ray.get([actor.placement.remote() for actor in self.actors]))

    def statuses(self) -> list[ShardStatus]:
        return list(ray.get([actor.status.remote() for actor in self.actors]))

    def close(self, timeout_s: float = 30) -> None:
        """A clean stop: each shard finishes its snapshot and closes its log; then the
        followers close theirs."""
        ray.get([actor.close.remote() for actor in self.actors], timeout=timeout_s)
        followers = [f for index in range(len(self.actors))
                     if (f := self.follower(index)) is not None]
        ray.get([f.close.remote() for f in followers], timeout=timeout_s)
        for follower in followers:
            ray.kill(follower, no_restart=True)

    def kill(self) -> None:
        for index, actor in enumerate(self.actors):
            ray.kill(actor, no_restart=True)
            follower = self.follower(index)
            if follower is not None:
                ray.kill(follower, no_restart=True)


FOLLOWER_STOP_TIMEOUT_S = 30.0
FOLLOWER_START_TIMEOUT_S = 30.0


def _runs_on(actor: Any, storage_node: str) -> bool:
    """Whether the actor runs on that storage node (or cannot say: then it may)."""
    try:
        node_id = ray.get(actor.status.remote(), timeout=5)["node_id"]
    except Exception:
        return True
    return node_id in storage_nodes().get(storage_node, [])


def _wait_dead(actor: Any) -> None:
    """Until the actor's process is gone (its directory lock with it)."""
    deadline = time.monotonic() + FOLLOWER_STOP_TIMEOUT_S
    while time.monotonic() < deadline:
        try:
            ray.get(actor.status.remote(), timeout=1)
        except ray.exceptions.RayActorError:
            return
        except ray.exceptions.GetTimeoutError:
            pass
        time.sleep(0.1)
    raise TimeoutError("a killed follower did not stop within "
                       f"{FOLLOWER_STOP_TIMEOUT_S:.0f} s")
