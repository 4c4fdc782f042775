"""The read replica in a Ray actor of its own: queries never run on a shard or in the HTTP
server's event loop. One call at a time; each catches up with the logs first."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import ray

from actors.topology import Topology
from switch.read.query import QueryEngine, QueryInvalid


@ray.remote(num_cpus=0, max_concurrency=1)  # type: ignore[call-overload]
class QueryActor:
    def __init__(self, data_dir: str, ledgers: tuple[str, ...], topology: Topology) -> None:
        self.engine = QueryEngine(Path(data_dir), ledgers, topology)

    def query(self, kind: str, *args: Any) -> list[Any]:
        """[ok, result] or [error, message] (a bad filter or cursor)."""
        try:
            return ["ok", getattr(self.engine, kind)(*args)]
        except QueryInvalid as error:
            return ["invalid", str(error)]


def start_query_actor(data_dir: Path, ledgers: tuple[str, ...], topology: Topology) -> Any:
    return QueryActor.remote(str(data_dir), ledgers, topology)  # type: ignore[attr-defined]
