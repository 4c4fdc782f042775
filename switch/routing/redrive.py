"""Finish what a crash (or a failed call) left half done, from the durable decisions.

Four passes, each idempotent, at start-up before the API serves and then periodically; the
work of each follows what is in doubt, never the history or the number of parts held:
0. transfers staged at their home and undecided (one durable round, `Router.staged_commit`):
   ask each part's shard whether this attempt's part is there (`ProbePart`; one that is not
   is fenced there, so it never arrives late); all there: the transfer committed (its answer
   may have said so), else it did not. The home records that decision; pass 1 finishes;
1. parts in doubt (reserved for a cross-shard transfer, never finalized): ask the transfer's
   home (a linked chain's coordinator, for a chain's member) whether this attempt committed;
   post it, hold it (a pending transfer) or void it. A part held so late may belong to a
   pending transfer resolved meanwhile: its home is asked, and the part settled if so;
2. pending transfers claimed by a post or void never finalized: ask the post or void's home
   whether it committed; resolve the pending transfer with it, or release the claim;
3. pending transfers final at their home (posted, voided, expired) whose held parts may not
   all be settled (each home lists them: `ListSettling`): settle the parts on both accounts'
   shards, then tell the home (`SettleDone`).
A transfer under way in this router is skipped: its own rounds will finish it. With several
ingress processes (`--workers`), a part or claim another router made may be under way there:
it is taken up only once older than `foreign_min_age_ms` (its maker's rounds are done by
then, or its maker died). Taking it up earlier would still be safe (the home fences the
attempt it voids, whose late commit then answers `in_flight`), but would fail live work.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from actors.ledger.ledger import HOLD, STAGED, VOID
from actors.ledger.pending import PENDING_STATUS, POSTED
from actors.ledger.queries import PartInDoubt, Settling
from actors.ledger.verdicts import (
    claim_verdict,
    is_staged,
    part_verdict,
    remote_shards,
    staged_decision,
)
from actors.messages import (
    Applied,
    ChainVerdict,
    ClaimsReply,
    Command,
    Finalize,
    FinalizeClaim,
    GetPendingStatus,
    InDoubtReply,
    ListClaims,
    ListInDoubt,
    ListSettling,
    PartProbed,
    PendingStatusReply,
    ProbePart,
    Resolve,
    ResolveChain,
    Settle,
    SettleDone,
    SettlingReply,
    VerdictReply,
    expect,
)
from switch.routing.router import Call, Router, settled_at_homes

log = logging.getLogger("payswitch.redrive")


class Redriver:
    def __init__(self, router: Router, foreign_min_age_ms: int = 0) -> None:
        """`foreign_min_age_ms`: 0 when no other router runs (one ingress process, or the
        start-up before any serves): every part is this router's to settle."""
        self.router = router
        self.foreign_min_age_ms = foreign_min_age_ms

    async def run_once(self, min_age_ms: int = 0) -> int:
        """All four passes; returns how many things they settled."""
        in_doubt = await self._old_enough(ListInDoubt, min_age_ms, lambda part: part.attempt)
        return (await self._staged(in_doubt) + await self._parts(in_doubt)
                + await self._claims(min_age_ms) + await self._settling(min_age_ms))

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

    async def _old_enough(self, listing: Callable[[int], Command], min_age_ms: int,
                          attempt_of: Callable[[Any], int]) -> list[tuple[int, Any]]:
        """What `listing` finds: this router's (or a dead predecessor's, with no other
        router about) at `min_age_ms`; another router's at `foreign_min_age_ms`."""
        found = await self._listed(listing(min_age_ms))
        if self.foreign_min_age_ms <= min_age_ms:
            return found
        made_here = self.router.made_here
        return [(s, item) for s, item in found if made_here(attempt_of(item))] + [
            (s, item) for s, item in await self._listed(listing(self.foreign_min_age_ms))
            if not made_here(attempt_of(item))]

    async def _listed(self, command: Command) -> list[tuple[int, Any]]:
        router = self.router
        replies = await router.scatter([(s, command) for s in range(len(router.channels))])
        found: list[tuple[int, Any]] = []
        for shard, reply in enumerate(replies):
            if isinstance(reply, BaseException):
                log.warning("redrive: shard %d did not answer %s: %r", shard,
                            type(command).__name__, reply)
                continue
            if not isinstance(reply, InDoubtReply | ClaimsReply | SettlingReply):
                raise TypeError(f"shard {shard} answered {type(command).__name__} with "
                                f"{type(reply).__name__}")
            items = reply.claims if isinstance(reply, ClaimsReply) else \
                reply.items if isinstance(reply, SettlingReply) else reply.parts
            found.extend((shard, item) for item in items)
        return found

    async def _settle(self, calls: list[Call]) -> int:
        return sum(1 for reply in await self.router.scatter(calls, admitted=True)
                   if isinstance(reply, Applied) and reply.applied)

    def _decider(self, transfer_id: str, chain: str, attempt: int) -> Call:
        """Who decided a part or claim: its chain's coordinator, or its transfer's home."""
        shard_of = self.router.shard_of
        if chain:
            return shard_of(chain), ResolveChain(chain, attempt)
        return shard_of(transfer_id), Resolve(transfer_id, attempt)

    async def _staged(self, in_doubt: list[tuple[int, PartInDoubt]]) -> int:
        """A staged transfer is decided by its parts: committed if every one is there."""
        router = self.router
        staged = [(home, part) for home, part in in_doubt
                  if is_staged(part) and part.transfer.id not in router.live]
        calls: list[Call] = []
        owners: list[int] = []
        for place, (_, part) in enumerate(staged):
            transfer = part.transfer
            sides = [transfer.debit_account_id, transfer.credit_account_id]
            for shard in remote_shards(part, router.shard_of):
                calls.append((shard, ProbePart(transfer.id, part.attempt, [
                    side for side in sides if router.shard_of(side) == shard])))
                owners.append(place)
        present: list[bool | None] = [True] * len(staged)  # None: a part did not answer
        for place, reply in zip(owners, await router.scatter(calls, admitted=True),
                                strict=True):
            if not isinstance(reply, PartProbed):
                if present[place]:
                    present[place] = None  # asked again next time (unless one is absent)
            elif not reply.present:
                present[place] = False  # fenced there: it can never commit
        return await self._settle([
            (home, Finalize(part.transfer.id, part.attempt, staged_decision(part.transfer)
                            if here else VOID, part.transfer.timestamp))
            for (home, part), here in zip(staged, present, strict=True)
            if here is not None and part.transfer.id not in router.live])

    async def _parts(self, in_doubt: list[tuple[int, PartInDoubt]]) -> int:
        """A part asks its transfer's home, or a linked chain member's its coordinator (as
        listed before pass 0: a staged transfer's parts ask its home's decision of now)."""
        live = self.router.live
        parts = [(shard, part) for shard, part in in_doubt
                 if part.transfer.id not in live and not is_staged(part)]
        verdicts = await self.router.scatter([
            self._decider(part.transfer.id, part.chain, part.attempt) for _, part in parts])
        finals = [(shard, part, part_verdict(part.transfer, part.chain, part.member,
                                             _verdict(verdict)))
                  for (shard, part), verdict in zip(parts, verdicts, strict=True)
                  if not isinstance(verdict, BaseException) and part.transfer.id not in live
                  and not _undecided(verdict)]
        settled = await self._settle([(shard, Finalize(part.transfer.id, part.attempt, *final))
                                      for shard, part, final in finals])
        held = [(shard, part.transfer.id) for shard, part, final in finals if final[0] == HOLD]
        return settled + await self._settle_if_final(held)

    async def _settle_if_final(self, held: list[tuple[int, str]]) -> int:
        """Parts just held: if their pending transfer is already final, settle them now."""
        router = self.router
        statuses = await router.scatter([(router.shard_of(pending_id),
                                          GetPendingStatus(pending_id)) for _, pending_id in held])
        return await self._settle([
            (shard, Settle(pending_id, reply.status.status == POSTED,
                           reply.status.amount_posted, reply.status.resolution))
            for (shard, pending_id), reply in zip(held, statuses, strict=True)
            if isinstance(reply, PendingStatusReply) and reply.status is not None
            and reply.status.status != PENDING_STATUS])

    async def _claims(self, min_age_ms: int) -> int:
        live = self.router.live
        claims = [(shard, claim) for shard, claim in await self._old_enough(
                      ListClaims, min_age_ms, lambda claim: claim.attempt)
                  if claim.resolving_id not in live]
        verdicts = await self.router.scatter([
            self._decider(claim.resolving_id, claim.chain, claim.attempt) for _, claim in claims])
        return await self._settle([
            (shard, FinalizeClaim(claim.pending_id, claim.resolving_id, claim.attempt,
                                  claim_verdict(claim.chain, claim.member, _verdict(verdict))))
            for (shard, claim), verdict in zip(claims, verdicts, strict=True)
            if not isinstance(verdict, BaseException) and claim.resolving_id not in live])

    async def _settling(self, min_age_ms: int) -> int:
        """Final pending transfers whose parts may be held: settle both accounts' shards, then
        tell each home which are done (those whose every settle was answered)."""
        router = self.router
        items = await self._listed(ListSettling(min_age_ms))
        calls, owners = settle_calls(router.shard_of, items)
        replies = await router.scatter(calls, admitted=True)
        done = settled_at_homes(owners, replies)
        await router.scatter([(home, SettleDone(ids)) for home, ids in done.items()],
                             admitted=True)
        return sum(1 for reply in replies if isinstance(reply, Applied) and reply.applied)


def settle_calls(shard_of: Callable[[str], int], items: list[tuple[int, Settling]]
                 ) -> tuple[list[Call], list[tuple[int, str, list[int]]]]:
    """Settle commands for final pending transfers' parts, and for each (its home, its id,
    the places of its commands)."""
    calls: list[Call] = []
    owners: list[tuple[int, str, list[int]]] = []
    for home, item in items:
        status = item.status
        shards = sorted({shard_of(item.debit_account_id), shard_of(item.credit_account_id)})
        owners.append((home, item.pending_id, list(range(len(calls), len(calls) + len(shards)))))
        calls += [(shard, Settle(item.pending_id, status.status == POSTED, status.amount_posted,
                                 status.resolution, [account for account in (
                                     item.debit_account_id, item.credit_account_id)
                                     if shard_of(account) == shard]))
                  for shard in shards]
    return calls, owners


def _undecided(reply: Any) -> bool:
    """The home has this attempt staged, undecided: pass 0 decides it first."""
    return isinstance(reply, VerdictReply) and reply.verdict.outcome == STAGED


def _verdict(reply: Any) -> Any:
    """A decider's reply as the verdict functions take it."""
    if isinstance(reply, VerdictReply):
        return reply.verdict
    return expect(reply, ChainVerdict).decision
