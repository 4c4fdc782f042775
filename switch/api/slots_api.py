"""POST /v1/cluster/slot-moves (operator): move a slot to another shard, online.

The move runs in this ingress process (switch/routing/slot_move.py), through its router, and
saves the data directory's topology under its lock; the other ingress processes' routers
learn the slot's new shard from the old shard's answer to their next command about it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from actors.ledger.registry import OPERATOR
from actors.topology import Topology
from persistence.lock import IngressLock
from persistence.topology import load_topology, update_topology
from switch.api.auth import require
from switch.api.errors import ApiError, json_response
from switch.api.schemas import Id
from switch.routing.router import Router
from switch.routing.slot_move import SlotMoveRefused, move_slot, moved_in, pin_account

Parse = Callable[[Request, TypeAdapter[Any]], Awaitable[Any]]
BUSY_TIMEOUT_MS_MAX = 600_000


class SlotMoveIn(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    slot: Annotated[StrictInt, Field(ge=0)]
    to_shard: Annotated[StrictInt, Field(ge=0)]
    # How long the move waits for the slot's transfers in doubt to be decided
    busy_timeout_ms: Annotated[StrictInt, Field(ge=0, le=BUSY_TIMEOUT_MS_MAX)] = 10_000


SLOT_MOVE = TypeAdapter(SlotMoveIn)


class PinIn(BaseModel):
    """An account to place on a shard of its own choosing (a hot account); to its slot's
    shard: unpinned."""

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)

    account_id: Id
    to_shard: Annotated[StrictInt, Field(ge=0)]
    busy_timeout_ms: Annotated[StrictInt, Field(ge=0, le=BUSY_TIMEOUT_MS_MAX)] = 10_000
    # First move every other slot and pinned account off that shard: a shard of its own
    alone: StrictBool = False


PIN = TypeAdapter(PinIn)


SLOT_MOVES_LOCK_FILE = "slot-moves.lock"  # one move at a time among the ingress processes


def slot_routes(router: Router, data_dir: Path, parse: Parse) -> list[Route]:
    one_at_a_time = IngressLock(data_dir / SLOT_MOVES_LOCK_FILE)
    def load() -> Topology:
        topology = load_topology(data_dir)
        if topology is None:
            raise ApiError(503, "topology_missing", f"{data_dir} has no topology.json")
        return topology

    def save(slot: int, shard: int, epoch: int, account: str) -> Topology:
        return update_topology(data_dir, lambda saved: moved_in(saved, slot, shard, epoch,
                                                                account))

    async def post_slot_move(request: Request) -> Response:
        require(request, OPERATOR)
        body: SlotMoveIn = await parse(request, SLOT_MOVE)
        try:
            async with one_at_a_time.held():
                moved = await move_slot(router, load, save, body.slot, body.to_shard,
                                        body.busy_timeout_ms / 1000)
        except SlotMoveRefused as refused:
            raise ApiError(refused.status, refused.code, refused.message) from None
        return json_response(moved.json())

    async def post_pin(request: Request) -> Response:
        require(request, OPERATOR)
        body: PinIn = await parse(request, PIN)
        try:
            async with one_at_a_time.held():
                moved = await pin_account(router, load, save, body.account_id,
                                          body.to_shard, body.busy_timeout_ms / 1000,
                                          body.alone)
        except SlotMoveRefused as refused:
            raise ApiError(refused.status, refused.code, refused.message) from None
        return json_response(moved.json())

    return [Route("/v1/cluster/slot-moves", post_slot_move, methods=["POST"]),
            Route("/v1/cluster/pins", post_pin, methods=["POST"])]
