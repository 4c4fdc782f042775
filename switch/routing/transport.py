"""The transport seam: how the router, the event stream and the read model reach a shard.

`ShardLink` is the whole interface: a batch of commands (encoded once per call), the shard's
status, and its log feed (committed records, for readers that must never open the shard's
files). The Ray implementation is `actors.shard.actor.RayShard` (actor options, names and
placement live there only); `LocalShard` is the in-process twin, for unit and model tests.
Both pass one contract suite (tests/switch/test_shard_links.py).
"""

from __future__ import annotations

import asyncio
import os
from typing import Any, Protocol

from actors.messages import LogFeed
from actors.shard.host import ShardHost
from actors.shard.stats import ShardStatus


class ShardLink(Protocol):
    index: int

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        """Run a batch (encoded commands) on the shard; returns its encoded BatchReply."""

    async def status(self) -> ShardStatus: ...

    async def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed:
        """Committed records from `from_seq`: the log feed."""

    async def placement(self) -> dict[str, Any]:
        """Where the shard runs (node, pid), for the dashboard."""


class ShardGone(Exception):
    """The shard behind a link is closed (the twin's stand-in for a dead actor)."""


class LocalShard:
    """The in-process twin: a ShardHost called directly, one call at a time. Each call first
    yields to the event loop, so concurrent callers interleave as they would with Ray."""

    def __init__(self, index: int, host: ShardHost) -> None:
        self.index = index
        self.host: ShardHost | None = host

    def _live(self) -> ShardHost:
        if self.host is None:
            raise ShardGone(f"shard {self.index} is closed")
        return self.host

    async def call(self, blob: bytes, request_ids: list[str]) -> bytes:
        await asyncio.sleep(0)
        return self._live().handle(blob, request_ids)

    async def status(self) -> ShardStatus:
        await asyncio.sleep(0)
        return self._live().status()

    async def read_log(self, from_seq: int, records_max: int, bytes_max: int) -> LogFeed:
        await asyncio.sleep(0)
        return self._live().read_log(from_seq, records_max, bytes_max)

    async def placement(self) -> dict[str, Any]:
        return {"node_id": "local", "node_ip": "127.0.0.1", "pid": os.getpid()}

    def close(self) -> None:
        if self.host is not None:
            self.host.close()
            self.host = None
