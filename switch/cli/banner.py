"""What an operator sees once the switch serves: on a terminal, one screen with its URLs and
where its data and key are; in JSON logs (stderr not a terminal, or `logging.json = true`),
one `serving` line carrying the same as fields."""

from __future__ import annotations

import importlib.metadata
import logging
import sys
from pathlib import Path

from actors.topology import Topology
from switch.api.registry_api import OPERATOR_KEY_FILE
from switch.cli.settings import Settings

log = logging.getLogger("payswitch")


def counted(count: int, noun: str) -> str:
    """"1 shard", "2 shards": the console's counts (one shard is the default on 2 cores)."""
    return f"{count} {noun}" if count == 1 else f"{count} {noun}s"


def server_url(settings: Settings) -> str:
    scheme = "https" if settings.server.tls_cert else "http"
    host = settings.server.host
    return f"{scheme}://{f'[{host}]' if ':' in host else host}:{settings.server.port}"


def serving_facts(settings: Settings, topology: Topology, ray_dashboard_url: str | None
                  ) -> dict[str, str]:
    """Name -> what to show, in the order shown."""
    url = server_url(settings)
    data_dir = Path(settings.data.dir).resolve()
    followers = sum(1 for node in topology.replica_nodes if node)
    facts = {
        "api": f"{url}/v1  (OpenAPI: {url}/openapi.json)",
        "dashboard": f"{url}/dashboard",
        "metrics": f"{url}/metrics",
        "health": f"{url}/healthz  {url}/readyz",
        "data": f"{data_dir}: {counted(topology.shard_count, 'shard')}, {topology.slots} "
                f"slots, {counted(followers, 'follower')}, topology epoch {topology.epoch}",
        "operator_key": f"{data_dir / OPERATOR_KEY_FILE} (send: Authorization: Bearer <key>)",
        "ingress": f"{settings.server.workers} process(es)",
    }
    if ray_dashboard_url:
        facts["ray_dashboard"] = ray_dashboard_url
    return facts


def show_serving(settings: Settings, topology: Topology, ray_dashboard_url: str | None
                 ) -> None:
    facts = serving_facts(settings, topology, ray_dashboard_url)
    url = server_url(settings)
    if settings.logging.json_lines:
        log.info("serving on %s", url, extra={"serving": facts})
        return
    width = max(len(name) for name in facts) + 3
    lines = [f"payswitch {_version()} serving on {url}", ""]
    lines += [f"  {name.replace('_', ' '):<{width}}{value}" for name, value in facts.items()]
    lines += ["", "  Ctrl-C stops it (open requests drain first). Runbooks: docs/OPERATIONS.md",
              ""]
    print("\n".join(lines), file=sys.stderr, flush=True)


def _version() -> str:
    try:
        return importlib.metadata.version("payswitch")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout not installed
        return "(from source)"
