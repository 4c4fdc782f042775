"""One ingress process: its router over the shards, the HTTP application, uvicorn.

`payswitch serve` runs one in its own process (`server.workers = 1`), or N worker processes
of switch/cli/workers.py run one each, every one its own Ray driver with its own router.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Callable
from typing import Any

import ray
import uvicorn
from starlette.applications import Starlette

from actors.runtime import tune_gc
from actors.shard.actor import RayShards, cluster_nodes
from actors.topology import Placement, Topology
from switch.api.app import create_app
from switch.api.http_protocol import CoalescingHttpToolsProtocol
from switch.cli.settings import Settings
from switch.observe.ray_metrics import RayMetrics
from switch.routing.router import Router
from switch.routing.socket_link import SocketShard
from switch.routing.transport import ShardLink


def build_router(settings: Settings, shards: RayShards, topology: Topology) -> Router:
    """The router's batches go over each shard's data port unless `shards.transport` says
    "ray" (switch/routing/socket_link.py says why)."""
    links: list[ShardLink] = list(shards.links)
    if settings.shards.transport == "socket":
        links = [SocketShard(link) for link in shards.links]
    router = Router(links, Placement(topology), settings.router.shard_queue_commands_max,
                    settings.router.call_commands_max,
                    answer_after_finalize=settings.server.workers > 1,
                    staged_commit=settings.router.staged_commit)
    router.accounts_per_participant_max = settings.auth.accounts_per_participant_max
    return router


def ingress_app(settings: Settings, shards: RayShards, topology: Topology, query_actor: Any,
                ray_dashboard_url: str | None, worker_index: int | None = None) -> Starlette:
    """The HTTP application of one ingress process: its own router over the shards.
    `worker_index`: None for the only one, else which of `server.workers`."""
    return create_app(build_router(settings, shards, topology), settings,
                      ray_dashboard_url=ray_dashboard_url, placements=shards.placements(),
                      on_tick=RayMetrics().publish, query_actor=query_actor,
                      list_nodes=cluster_nodes, worker_index=worker_index)


def run_start_up(settings: Settings, shards: RayShards, topology: Topology,
                 query_actor: Any) -> None:
    """The start-up the one ingress runs in its lifespan, run by the supervisor of several
    before any of them serves (so none settles another's live work, or undoes a change
    another made). Over the shards' Ray links: this process keeps no data connections."""
    router = Router(list(shards.links), Placement(topology),
                    settings.router.shard_queue_commands_max, settings.router.call_commands_max)
    app = create_app(router, settings, query_actor=query_actor)
    asyncio.run(app.state.start_up())


class _Server(uvicorn.Server):
    """uvicorn's server, telling `on_started` once it listens."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[], None] | None) -> None:
        super().__init__(config)
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)
        if self.started and self.on_started is not None:
            self.on_started()


def serve_http(settings: Settings, app: Starlette, sock: socket.socket | None = None,
               on_started: Callable[[], None] | None = None) -> int:
    """Serve until SIGINT or SIGTERM (uvicorn drains open requests first); 0 once stopped.
    `on_started`: called once the port listens (the banner)."""
    config = uvicorn.Config(
        app,
        host=settings.server.host,
        port=settings.server.port,
        loop="uvloop",
        http=CoalescingHttpToolsProtocol,  # one write per response
        lifespan="on",
        access_log=False,  # ours is RequestContext's, with request ids
        log_config=None,  # keep the JSON handler configured above
        log_level="info",
        timeout_graceful_shutdown=10,
        ssl_certfile=settings.server.tls_cert or None,
        ssl_keyfile=settings.server.tls_key or None,
    )
    server = _Server(config, on_started)
    tune_gc(settings.gc.generation0_threshold, settings.gc.freeze_after_start)
    with contextlib.suppress(KeyboardInterrupt):  # re-raised by uvicorn after it drains
        server.run(sockets=None if sock is None else [sock])
    return 0 if server.started else 1


def ray_address() -> str:
    """This process's Ray cluster, as another process of this machine joins it."""
    return str(ray.get_runtime_context().gcs_address)
