"""GET /metrics, and the live dashboard: one static page that polls /dashboard/data.

Everything here is read-only: no route of this module changes state. The page and its
charting library (uPlot, MIT, in static/vendor) are plain files: no build step.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST
from starlette.requests import Request
from starlette.responses import FileResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles

from switch.api.errors import dumps_exact
from switch.observe.cluster import replication_shown
from switch.observe.metrics import Metrics
from switch.observe.monitor import Monitor

STATIC_DIR = Path(__file__).resolve().parent / "static"
ACCEPTED = {"ok", "exists"}


def dashboard_data(monitor: Monitor, ray_dashboard_url: str | None,
                   switch_layer: Callable[[], dict[str, Any]] | None = None) -> dict[str, Any]:
    """`switch_layer`: positions against caps and open windows (switch/hub/watch.py)."""
    slots = Counter(monitor.router.placement.slot_table)
    shards = [{
        "shard": s["shard"], "node_id": s.get("node_id", ""), "node_ip": s.get("node_ip", ""),
        "pid": s.get("pid"), "state": s["state"], "restarts": s["restarts"],
        "slots": slots[s["shard"]], "accounts": s["accounts"],
        "transfers": s["transfers"], "in_doubt": s["in_doubt"], "queue_depth": s["queue_depth"],
        "last_seq": s["last_seq"], "log_bytes": s["log_bytes"],
        "snapshot_age_seconds": s["snapshot_age_seconds"], "recovery_ms": s["recovery_ms"],
        "epoch": s["replication"].epoch if s.get("replication") else 1,
        "replication": replication_shown(s.get("replication")),
        "follower_lag_records": s["replication"].lag_records if s.get("replication")
        else None,
    } for s in monitor.shards]
    nodes: dict[str, dict[str, Any]] = {}
    for shard in shards:
        node = nodes.setdefault(shard["node_id"], {"node_id": shard["node_id"],
                                                   "ip": shard["node_ip"], "shards": []})
        node["shards"].append(shard["shard"])
    ledgers = [{
        "ledger": code, "debits_posted": dp, "credits_posted": cp, "debits_pending": dpe,
        "credits_pending": cpe, "balanced": dp == cp and dpe == cpe,
    } for code, (dp, cp, dpe, cpe) in sorted(monitor.totals.items())]
    return {
        "time": monitor.last_tick,
        "ray_dashboard_url": ray_dashboard_url,
        "nodes": list(nodes.values()),
        "shards": shards,
        "series": {name: list(values) for name, values in monitor.series.items()},
        "shard_series": {str(index): {name: list(values) for name, values in series.items()}
                         for index, series in monitor.shard_series.items()},
        "hottest": monitor.hottest,
        "ledgers": ledgers,
        "rejections": {code: count for code, count in monitor.results_total.most_common()
                       if code not in ACCEPTED},
        "switch_layer": switch_layer() if switch_layer is not None else None,
    }


def dashboard_routes(monitor: Monitor, metrics: Metrics, ray_dashboard_url: str | None,
                     switch_layer: Callable[[], dict[str, Any]] | None = None
                     ) -> list[BaseRoute]:
    async def metrics_endpoint(request: Request) -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    async def dashboard(request: Request) -> Response:
        return FileResponse(STATIC_DIR / "dashboard.html", media_type="text/html")

    async def data(request: Request) -> Response:
        return Response(dumps_exact(dashboard_data(monitor, ray_dashboard_url, switch_layer)),
                        media_type="application/json", headers={"Cache-Control": "no-store"})

    return [
        Route("/metrics", metrics_endpoint, methods=["GET"]),
        Route("/dashboard", dashboard, methods=["GET"]),
        Route("/dashboard/data", data, methods=["GET"]),
        Mount("/dashboard/static", StaticFiles(directory=STATIC_DIR), name="static"),
    ]
