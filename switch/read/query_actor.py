"""The read model in a Ray actor of its own: queries never run on a shard or in the HTTP
server's event loop. It reaches the shards only through their links (their log feeds, and
`GetAccount` for a page's balances), never through their files."""

from __future__ import annotations

import os
from typing import Any

import ray

from actors.codec import decode_reply, encode_commands
from actors.ledger.model import Account
from actors.messages import FAILED_SLOT_MOVED, AccountView, Failed, GetAccount
from actors.shard.actor import NAMESPACE, RayShard, RayShards, actor_name, create_named
from actors.topology import Topology
from switch.read.query import QueryEngine, QueryInvalid
from switch.routing.router import SLOT_HOPS_MAX


# A cache of what the shards logged, rebuilt from their feeds when it starts: Ray restarts it
# when its process dies, and queries answer 503 read_model_unavailable meanwhile.
@ray.remote(num_cpus=0, max_restarts=-1)
class QueryActor:
    def __init__(self, topology: Topology) -> None:
        # The shards by their names (actor handles as arguments would go through the object
        # store, which Ray warns about at every start for an actor it restarts).
        self.links = [RayShard(index, actor, topology.switch_id)
                      for index, actor in enumerate(RayShards.find(topology).actors)]
        self.engine = QueryEngine(self.links, topology, self._fetch_accounts)

    async def _fetch_accounts(self, shard: int, account_ids: list[str], hops: int = 0
                              ) -> list[Account | None]:
        reply = decode_reply(await self.links[shard].call(
            encode_commands([GetAccount(account_id) for account_id in account_ids]), []))
        found: list[Account | None] = []
        for account_id, view in zip(account_ids, reply.replies, strict=True):
            if isinstance(view, Failed) and view.code == FAILED_SLOT_MOVED and \
                    hops < SLOT_HOPS_MAX:  # its slot moved: asked where it went
                self.engine.placement.move(view.slot, view.shard, view.account, view.pinned)
                found += await self._fetch_accounts(view.shard, [account_id], hops + 1)
            else:
                found.append(view.account if isinstance(view, AccountView) else None)
        return found

    async def query(self, kind: str, *args: Any) -> list[Any]:
        """["ok", result] or ["invalid", message] (a bad filter or cursor)."""
        try:
            return ["ok", await getattr(self.engine, kind)(*args)]
        except QueryInvalid as error:
            return ["invalid", str(error)]

    def pid(self) -> int:
        return os.getpid()

    def close(self) -> None:
        self.engine.close()


QUERY_ROLE = "query"


def start_query_actor(topology: Topology) -> Any:
    """The read model of the switch whose shards run under the topology's names."""
    def create(name: str) -> Any:
        return QueryActor.options(  # type: ignore[attr-defined]
            name=name, namespace=NAMESPACE).remote(topology)
    return create_named(topology.switch_id, QUERY_ROLE, create)


def find_query_actor(topology: Topology) -> Any:
    """The read model another process of this switch started."""
    return ray.get_actor(actor_name(topology.switch_id, QUERY_ROLE), namespace=NAMESPACE)
