"""`payswitch serve`: start Ray and the shards, recover, then serve the API.

Start-up order: Ray (embedded by default, or a cluster joined with `ray.address`), the data
directory's topology against the storage nodes Ray has (saved on its first start; settings or
a cluster that disagree with it are refused), one shard actor per shard on its storage node
(each checks its directory is its own, locks it and recovers from its log), then the router
and the HTTP server, whose start-up re-drives every cross-shard transfer a crash left in doubt
before taking traffic.
"""

from __future__ import annotations

import logging
import os
import socket
import sys
from pathlib import Path
from typing import Any

import ray
import ray._private.ray_constants as ray_constants
import ray._private.ray_logging as ray_logging

from actors.runtime import configure_logging, tune_malloc
from actors.shard.actor import (
    STORAGE_LABEL,
    RayShards,
    ShardOptions,
    SwitchAlreadyRunning,
    storage_nodes,
)
from actors.shard.host import ShardConfig
from actors.shard.replication import ReplicationMode
from actors.topology import LOCAL_NODE, Placement, Topology, replica_synced, with_replicas
from persistence.topology import (
    TOPOLOGY_FILE,
    TopologyMismatch,
    check_saved_layout,
    mark_shards_created,
    resolve_topology,
    save_topology,
)
from switch.cli.banner import counted, show_serving
from switch.cli.controller import ReplicationController
from switch.cli.ingress import ingress_app, serve_http
from switch.cli.settings import Settings
from switch.cli.workers import supervise_workers
from switch.observe.context import RequestIdFilter
from switch.read.query_actor import start_query_actor

log = logging.getLogger("payswitch")
LOOPBACK = "127.0.0.1"
RAY_CONNECT_TIMEOUT_S = 5.0
RAY_CLUSTER_SWITCH = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"  # read by ray_constants at import


def start_ray(settings: Settings) -> str | None:
    """Start (or join) Ray; returns the Ray dashboard's address, if it runs."""
    options: dict[str, Any] = {
        "address": settings.ray.address,
        "include_dashboard": settings.ray.include_dashboard,
        "log_to_driver": True,
        "configure_logging": False,
    }
    if settings.ray.address == "local":
        options["object_store_memory"] = settings.ray.object_store_bytes
        if settings.ray.num_cpus:
            options["num_cpus"] = settings.ray.num_cpus
        options["_node_ip_address"] = bind_local_ray_to_loopback()
        options["labels"] = {STORAGE_LABEL: LOCAL_NODE}  # the one storage node
    tune_malloc()  # before Ray starts its processes: they inherit it
    if settings.logging.json_lines:
        pass_worker_lines_whole()
    context = ray.init(**options)
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url else None


def pass_worker_lines_whole() -> None:
    """The shards' and followers' log lines, which Ray prints here, as they wrote them: one
    JSON object per line (and Ray's own notices in this process too). Ray would put a
    colored `(ShardActor pid=N)` before each and fold repeats into `[repeated Nx]`, which no
    JSON reader takes. Both switches are read when Ray is imported
    (RAY_DISABLE_WORKER_LOG_PREFIX, RAY_DEDUP_LOGS): set on the modules, as
    `bind_local_ray_to_loopback` does for its own."""
    ray_constants.RAY_DISABLE_WORKER_LOG_PREFIX = True
    ray_logging.RAY_DEDUP_LOGS = False  # type: ignore[attr-defined]
    # Ray's own lines in this process (its start-up notices) through our JSON handler too.
    logging.getLogger("ray").handlers[:] = logging.getLogger().handlers


def ray_cluster_unreachable(address: str) -> str | None:
    """Why the Ray cluster to join cannot be reached (None: it can, or Ray finds it itself:
    `local`, `auto`). Ray would retry a wrong address for minutes with its own log lines."""
    if address in ("local", "auto"):
        return None
    host, _, port = address.removeprefix("ray://").rpartition(":")
    if not port.isdigit():
        return f"ray.address {address!r} is not HOST:PORT (or local, auto)"
    try:
        socket.create_connection((host or LOOPBACK, int(port)),
                                 timeout=RAY_CONNECT_TIMEOUT_S).close()
    except OSError as error:
        return (f"no Ray cluster answers at {address} ({error}): start its head with `ray "
                "start --head` there, or give its address (docs/CLUSTER.md)")
    return None


def bind_local_ray_to_loopback() -> str:
    """Make the embedded Ray listen on 127.0.0.1 only (GCS, raylet, object manager, agents,
    workers). Ray replaces a loopback node address with the machine's own unless its
    "cluster" switch is off: the environment variable for the processes it starts, the
    constant for this one (which has imported Ray already). A one-machine Ray has nobody to
    talk to elsewhere. Its token authentication is on by default (RAY_AUTH_MODE unset; it is
    read when Ray is imported, so it cannot be forced from here). Returns the node address."""
    os.environ[RAY_CLUSTER_SWITCH] = "0"
    ray_constants.ENABLE_RAY_CLUSTER = False
    if os.environ.get("RAY_AUTH_MODE", "token").lower() != "token":
        log.warning("RAY_AUTH_MODE=%s: Ray's token authentication is off; any local process "
                    "can then drive the shards. Unset it.", os.environ["RAY_AUTH_MODE"])
    return LOOPBACK


def open_topology(settings: Settings) -> Topology:
    """The data directory's saved topology (created, adopted or upgraded on its first start
    here); raises TopologyMismatch when the settings or the Ray cluster disagree with it."""
    data_dir = Path(settings.data.dir).resolve()
    nodes = storage_nodes()
    doubled = {name: ids for name, ids in nodes.items() if len(ids) > 1}
    if doubled:
        raise TopologyMismatch(f"several Ray nodes carry one storage name ({STORAGE_LABEL}): "
                               f"{doubled}; give each storage node a name of its own")
    if not nodes:
        raise TopologyMismatch(f"the Ray cluster has no storage node: start at least one with "
                               f"the label {STORAGE_LABEL}=NAME (docs/CLUSTER.md)")
    resolved = resolve_topology(data_dir, settings.shards.count, settings.shards.slots,
                                os.cpu_count() or 1, sorted(nodes))
    topology = resolved.topology
    if resolved.how == "adopted":
        log.warning("data directory %s had no topology (written by an older release): adopted "
                    "%d shards and %d slots from its shard directories and saved them in %s",
                    data_dir, topology.shard_count, topology.slots, TOPOLOGY_FILE)
    elif resolved.how == "upgraded":
        log.warning("data directory %s: its %s (version 1) now names the switch and puts every "
                    "shard on the storage node %r", data_dir, TOPOLOGY_FILE, LOCAL_NODE)
    elif resolved.how == "created":
        log.info("new data directory %s: %s, %d slots, on storage nodes %s", data_dir,
                 counted(topology.shard_count, "shard"), topology.slots, ", ".join(sorted(set(
                     topology.shard_nodes))))
    topology = _with_replication(data_dir, topology, replication_mode(settings, list(nodes)),
                                 sorted(nodes))
    absent = sorted({name for name in topology.shard_nodes if name not in nodes})
    if absent:
        held = {name: [i for i, n in enumerate(topology.shard_nodes) if n == name]
                for name in absent}
        raise TopologyMismatch(
            f"storage node(s) {', '.join(absent)} hold shards {held} but are not in the Ray "
            f"cluster (it has {', '.join(sorted(nodes))}): start each with its data and the "
            f"label {STORAGE_LABEL}=NAME (docs/CLUSTER.md)")
    return topology


def replication_mode(settings: Settings, nodes: list[str]) -> ReplicationMode:
    """`replication.mode`, with `auto` decided: sync when there are two storage nodes or
    more (a follower needs a node of its own), else off."""
    mode = settings.replication.mode
    if mode == "auto":
        return "sync" if len(nodes) >= 2 else "off"
    return mode


def _with_replication(data_dir: Path, topology: Topology, mode: ReplicationMode,
                      nodes: list[str]) -> Topology:
    """Followers for shards that have none (replication on, a second node present). Every
    follower is recorded out of sync at start: each leader confirms what its follower holds
    before the controller records it in sync again (a follower's volume may have come back
    empty while the switch was stopped); with replication off, the followers stop
    receiving. Saved when it changes."""
    updated = with_replicas(topology, nodes) if mode != "off" else topology
    for shard in range(updated.shard_count):
        if updated.replica_in_sync(shard):
            updated = replica_synced(updated, shard, False)
    if mode == "off" and any(topology.replica_nodes):
        log.warning("replication is off (replication.mode, or auto with %d storage node(s) "
                    "now): the shards' followers are not kept up to date and cannot take "
                    "over; start it with every storage node present", len(nodes))
    if updated != topology:
        save_topology(data_dir, updated)
        if mode != "off" and updated.replica_nodes != topology.replica_nodes:
            log.info("replication %s: shard followers on storage nodes %s", mode,
                     ", ".join(f"{shard}->{node}" for shard, node in
                               enumerate(updated.replica_nodes)))
    return updated


def start_shards(settings: Settings, topology: Topology) -> RayShards:
    """Start every shard and wait until each has recovered; raises if any cannot start."""
    data_dir = Path(settings.data.dir).resolve()
    quota = settings.auth.accounts_per_participant_max
    placement = Placement(topology)  # (a router sends each creation its share as it knows it)
    configs = [ShardConfig(index, tuple(settings.ledgers), settings.wal.snapshot_every_events,
                           settings.api.history_page_max, settings.gc.generation0_threshold,
                           settings.gc.freeze_after_start, settings.logging.level,
                           settings.logging.json_lines,
                           placement.quota_share(index, quota))  # its share (0: none)
               for index in range(topology.shard_count)]
    options = ShardOptions(str(data_dir), settings.wal.map_size_bytes,
                           settings.shards.transfer_cache_max,
                           replication_mode(settings, list(storage_nodes())),
                           settings.replication.ack_timeout_ms / 1000)
    shards = RayShards.start(configs, options, topology)
    if not topology.shards_created:  # each made its directory: from now on, refuse a missing one
        mark_shards_created(data_dir, topology)
    for status in shards.statuses():
        log.info("shard %d ready: %d accounts, log at record %d, recovered in %.0f ms",
                 status.shard, status.accounts, status.last_seq, status.recovery_ms)
    return shards


def stop_shards(shards: RayShards) -> bool:
    """Close every shard's log; False (logged) if one could not be closed."""
    try:
        shards.close()
    except Exception:
        log.exception("closing shards")
        return False
    return True


def serve(settings: Settings) -> int:
    configure_logging(settings.logging.level, settings.logging.json_lines)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    unreachable = ray_cluster_unreachable(settings.ray.address)
    if unreachable:
        log.error("refusing to start: %s", unreachable)
        return 2
    try:  # before Ray starts: a wrong --shards is told in a moment, not after seconds
        check_saved_layout(Path(settings.data.dir).resolve(), settings.shards.count,
                           settings.shards.slots)
    except TopologyMismatch as error:
        log.error("refusing to start: %s", error)
        return 2
    ray_dashboard_url = start_ray(settings)
    stopped = False  # the shards stopped cleanly: said last, once Ray is down
    try:
        try:
            topology = open_topology(settings)
        except TopologyMismatch as error:
            log.error("refusing to start: %s", error)
            return 2
        try:
            shards = start_shards(settings, topology)
        except ray.exceptions.RayActorError as error:
            log.error("a shard could not start: %s", error)
            return 2
        except SwitchAlreadyRunning as error:
            log.error("refusing to start: %s", error)
            return 2
        controller = ReplicationController(shards, Path(settings.data.dir).resolve(),
                                           shards.options.replication_mode
                                           if shards.options else "off").start()
        try:
            query_actor = start_query_actor(topology)
            if settings.server.workers > 1:  # N ingress processes, this one supervises
                return supervise_workers(settings, shards, topology, query_actor,
                                         ray_dashboard_url)
            return serve_http(settings, ingress_app(settings, shards, topology, query_actor,
                                                    ray_dashboard_url),
                              on_started=lambda: show_serving(settings, topology,
                                                              ray_dashboard_url))
        finally:
            controller.stop()
            log.info("stopping shards")
            stopped = stop_shards(shards)
    finally:
        ray.shutdown()  # (its relay of the shards' lines ends: the last word is ours)
        if stopped:
            log.info("stopped: every acknowledged write is in the shards' logs")
        sys.stdout.flush()
