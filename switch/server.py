"""`payswitch serve`: start Ray and the shards, recover, then serve the API.

Start-up order: Ray (embedded by default), one shard actor per configured shard (each locks
its data directory and recovers from its log), then the router and the HTTP server, whose
start-up re-drives every cross-shard transfer a crash left in doubt before taking traffic.
"""

from __future__ import annotations

import contextlib
import logging
import sys
from pathlib import Path
from typing import Any

import ray
import uvicorn

from actors.host import ShardConfig
from actors.runtime import configure_logging, tune_gc
from actors.shard import start_shard
from switch.app import create_app
from switch.channel import ShardChannel
from switch.context import RequestIdFilter
from switch.query_actor import start_query_actor
from switch.ray_metrics import RayMetrics
from switch.router import Router
from switch.settings import Settings

log = logging.getLogger("payswitch")


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
    context = ray.init(**options)
    url = getattr(context, "dashboard_url", None)
    return f"http://{url}" if url else None


def start_shards(settings: Settings) -> list[Any]:
    """Start every shard and wait until each has recovered; raises if any cannot start."""
    data_dir = Path(settings.data.dir).resolve()
    data_dir.mkdir(parents=True, exist_ok=True)
    shards = [
        start_shard(
            ShardConfig(index, tuple(settings.ledgers), settings.wal.snapshot_every_events,
                        settings.api.history_page_max, settings.gc.generation0_threshold,
                        settings.gc.freeze_after_start, settings.logging.level,
                        settings.logging.json),
            data_dir,
            settings.wal.map_size_bytes,
        )
        for index in range(settings.shard_count)
    ]
    for index, status in enumerate(ray.get([shard.status.remote() for shard in shards])):
        log.info("shard %d ready: %s", index, status)
    return shards


def build_router(settings: Settings, shards: list[Any]) -> Router:
    channels = [
        ShardChannel(
            index,
            shard.handle.remote,
            settings.router.shard_queue_commands_max,
            settings.router.call_commands_max,
        )
        for index, shard in enumerate(shards)
    ]
    return Router(channels, settings.shards.slots)


def stop_shards(shards: list[Any]) -> None:
    try:
        ray.get([shard.close.remote() for shard in shards], timeout=30)
    except Exception:
        log.exception("closing shards")


def serve(settings: Settings) -> int:
    configure_logging(settings.logging.level, settings.logging.json)
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    ray_dashboard_url = start_ray(settings)
    try:
        try:
            shards = start_shards(settings)
        except ray.exceptions.RayActorError as error:
            log.error("a shard could not start: %s", error)
            return 2
        try:
            placements = ray.get([shard.placement.remote() for shard in shards])
            query_actor = start_query_actor(Path(settings.data.dir).resolve(),
                                            tuple(settings.ledgers), settings.shards.slots)
            app = create_app(build_router(settings, shards), settings,
                             ray_dashboard_url=ray_dashboard_url, placements=placements,
                             on_tick=RayMetrics().publish, query_actor=query_actor)
            config = uvicorn.Config(
                app,
                host=settings.server.host,
                port=settings.server.port,
                loop="uvloop",
                http="httptools",
                lifespan="on",
                access_log=False,  # ours is RequestContext's, with request ids
                log_config=None,  # keep the JSON handler configured above
                log_level="info",
                timeout_graceful_shutdown=10,
            )
            server = uvicorn.Server(config)
            tune_gc(settings.gc.generation0_threshold, settings.gc.freeze_after_start)
            with contextlib.suppress(KeyboardInterrupt):  # re-raised by uvicorn after it drains
                server.run()
            log.info("stopping shards")
            return 0 if server.started else 1
        finally:
            stop_shards(shards)
    finally:
        ray.shutdown()
        sys.stdout.flush()
