"""Finish what a crash (or a failed call) left half done, from the durable decisions.

Three passes, each idempotent, at start-up before the API serves and then periodically:
1. parts in doubt (reserved for a cross-shard transfer, never finalized): ask the transfer's
   home (a linked chain's coordinator, for a chain's member) whether this attempt committed;
   post it, hold it (a pending transfer) or void it;
2. pending transfers claimed by a post or void never finalized: ask the post or void's home
   whether it committed; resolve the pending transfer with it, or release the claim;
3. held parts of pending transfers that are resolved (posted, voided, expired) at their home:
   settle them.
A transfer under way in this router is skipped: its own rounds will finish it.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from actors import messages as p
from actors.ledger.pending import PENDING_STATUS, POSTED
from actors.ledger.verdicts import claim_verdict, part_verdict
from switch.routing.router import Router

log = logging.getLogger("payswitch.redrive")


class Redriver:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def run_once(self, min_age_ms: int = 0) -> int:
        """All three passes; returns how many things they settled."""
        return (await self._parts(min_age_ms) + await self._claims(min_age_ms)
                + await self._held(min_age_ms))

    async def forever(self, interval_ms: int) -> None:
        while True:
            await asyncio.sleep(interval_ms / 1000)
            try:
                count = await self.run_once(min_age_ms=interval_ms)
            except Exception:
                log.exception("redrive failed")
                continue
            if count:
                log.info("redrive settled %d parts, claims or held parts", count)

    async def _listed(self, command: list[Any]) -> list[tuple[int, Any]]:
        router = self.router
        replies = await router.scatter([(s, command) for s in range(len(router.channels))])
        found: list[tuple[int, Any]] = []
        for shard, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                log.warning("redrive: shard %d did not answer %s: %r", shard, command[0], reply)
                continue
            found.extend((shard, item) for item in reply)
        return found

    async def _settle(self, calls: list[tuple[int, list[Any]]]) -> int:
        return sum(1 for reply in await self.router.scatter(calls, admitted=True)
                   if reply is True)

    async def _parts(self, min_age_ms: int) -> int:
        """A part asks its transfer's home, or a linked chain member's its coordinator."""
        router = self.router
        parts = [(shard, row, attempt, chain, member) for shard, (row, _, attempt, chain, member)
                 in await self._listed([p.OP_IN_DOUBT, min_age_ms])
                 if row[0] not in router.live]
        verdicts = await router.scatter([
            (router.shard_of(chain), [p.OP_RESOLVE_CHAIN, chain, attempt]) if chain
            else (router.shard_of(row[0]), [p.OP_RESOLVE, row[0], attempt])
            for _, row, attempt, chain, _ in parts])
        return await self._settle([
            (shard, [p.OP_FINALIZE, row[0], attempt, *part_verdict(row, chain, member, verdict)])
            for (shard, row, attempt, chain, member), verdict in zip(parts, verdicts, strict=True)
            if not isinstance(verdict, BaseException) and row[0] not in router.live])

    async def _claims(self, min_age_ms: int) -> int:
        router = self.router
        claims = [(shard, *claim) for shard, claim in await self._listed([p.OP_CLAIMS, min_age_ms])
                  if claim[1] not in router.live]
        verdicts = await router.scatter([
            (router.shard_of(chain), [p.OP_RESOLVE_CHAIN, chain, attempt]) if chain
            else (router.shard_of(rid), [p.OP_RESOLVE, rid, attempt])
            for _, _, rid, attempt, chain, _ in claims])
        return await self._settle([
            (shard, [p.OP_FINALIZE_CLAIM, pid, rid, attempt,
                     claim_verdict(chain, member, verdict)])
            for (shard, pid, rid, attempt, chain, member), verdict
            in zip(claims, verdicts, strict=True)
            if not isinstance(verdict, BaseException) and rid not in router.live])

    async def _held(self, min_age_ms: int) -> int:
        router = self.router
        held = await self._listed([p.OP_HELD, 0])
        statuses = await router.scatter(
            [(router.shard_of(pid), [p.OP_PENDING_STATUS, pid]) for _, (pid, _) in held])
        return await self._settle([
            (shard, [p.OP_SETTLE, pid, status[0] == POSTED, status[1], status[2]])
            for (shard, (pid, _)), status in zip(held, statuses, strict=True)
            if isinstance(status, list) and status[0] != PENDING_STATUS])
