"""`GET /v1/cluster` (operator, auditor): the nodes as Ray knows them now, and each shard with
its storage node, the Ray node and process it runs in, its state and restarts.

Nodes are asked of Ray at each request (off the event loop); shards come from the monitor's
latest poll (switch/observe/monitor.py), so a recovering shard shows as such. Each shard is
its slots' only writer (`role` leader) under its leader epoch (raised by each failover), with
its replication as its leader says: `off`, `in_sync` (sync: batches wait for the follower),
`catching_up` (the follower is being copied; batches do not wait), `async`, or `blocked`
(the follower did not confirm; calls are refused until the controller records it out of
sync), and how many records its follower lacks. Its storage node is the one its process
runs on now (after a failover, the follower's).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import Awaitable, Callable
from typing import Any

from starlette.requests import Request
from starlette.responses import Response

from actors.shard.replication import ReplicationState
from switch.api.errors import json_response
from switch.observe.monitor import Monitor

NODES_TIMEOUT_S = 5.0

ListNodes = Callable[[], list[dict[str, Any]]]


def cluster_endpoint(monitor: Monitor, list_nodes: ListNodes | None
                     ) -> Callable[[Request], Awaitable[Response]]:
    async def cluster(request: Request) -> Response:
        return json_response(await cluster_view(monitor, list_nodes))

    return cluster


async def cluster_view(monitor: Monitor, list_nodes: ListNodes | None) -> dict[str, Any]:
    topology = monitor.router.placement.topology
    nodes: list[dict[str, Any]] | None = []
    nodes_error = None
    if list_nodes is not None:
        try:
            nodes = await asyncio.wait_for(asyncio.to_thread(list_nodes), NODES_TIMEOUT_S)
        except Exception as error:  # Ray's GCS unreachable or slow: the shards still show
            nodes, nodes_error = None, f"Ray's node list did not come: {error!r}"
    rows = {row["shard"]: row for row in monitor.shards}
    slots = Counter(monitor.router.placement.slot_table)  # as this router knows it now
    names = {node["node_id"]: node["storage_node"] for node in nodes or []}
    shards = []
    for shard in range(topology.shard_count):
        row = rows.get(shard, {})
        state = row.get("replication")
        shards.append({
            "shard": shard, "storage_node": names.get(row.get("node_id")) or (
                topology.shard_nodes[shard] if topology.shard_nodes else None),
            "node_id": row.get("node_id"),
            "pid": row.get("pid"), "state": row.get("state", "starting"),
            "restarts": row.get("restarts", 0), "slots": slots[shard], "role": "leader",
            "epoch": state.epoch if state is not None else topology.shard_epoch(shard),
            "replication": replication_shown(state),
            "follower_lag_records": state.lag_records if state is not None else None})
    return {"switch_id": topology.switch_id, "epoch": monitor.router.placement.epoch,
            "nodes": nodes,
            **({"nodes_error": nodes_error} if nodes_error else {}), "shards": shards,
            "pins": dict(monitor.router.placement.pins)}  # accounts on a shard of their own


def replication_shown(state: ReplicationState | None) -> str:
    if state is None or state.mode == "off":
        return "off"
    if state.blocked:
        return "blocked"
    if state.mode == "async":
        return "async"
    return "in_sync" if state.waits else "catching_up"
