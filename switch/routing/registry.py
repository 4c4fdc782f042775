"""Participants and keys through the router: the registry's shard, and status everywhere.

The registry lives in one shard's log (actors/ledger/registry.py). A participant's status
is also sent to every other shard, since each refuses debits of a disabled participant's
accounts; the answer waits for all of them. If one does not answer, the caller retries: a
repeat is `unchanged` where it was applied and applies where it was not.
"""

from __future__ import annotations

import asyncio

from actors.ledger.events import NdcAlarm
from actors.ledger.registry import (
    REGISTRY_SHARD,
    SYSTEM,
    ApiKey,
    Participant,
    RegistryResult,
)
from actors.messages import (
    CreateKey,
    CreateParticipant,
    GetRegistry,
    RecordNdcAlarm,
    RegistryReply,
    RegistryView,
    RevokeKey,
    SetAlarmThreshold,
    SetParticipantStatus,
    expect,
)
from switch.routing.router import Router

_APPLIES = (RegistryResult.ok, RegistryResult.unchanged)


class RegistryClient:
    def __init__(self, router: Router) -> None:
        self.router = router

    async def _ask(self, command: CreateParticipant | SetParticipantStatus | CreateKey
                   | RevokeKey | SetAlarmThreshold | RecordNdcAlarm) -> RegistryReply:
        return expect(await self.router.ask(REGISTRY_SHARD, command), RegistryReply)

    async def read(self, known_version: int) -> RegistryView:
        return expect(await self.router.ask(REGISTRY_SHARD, GetRegistry(known_version)),
                      RegistryView)

    async def create_participant(self, participant: Participant, key_id: str) -> RegistryReply:
        return await self._ask(CreateParticipant(participant, key_id))

    async def set_status(self, participant_id: str, status: str, key_id: str) -> RegistryReply:
        reply = await self._ask(SetParticipantStatus(participant_id, status, key_id, True))
        if reply.result in _APPLIES:  # unchanged too: an earlier try may have stopped midway
            others = [shard for shard in range(len(self.router.links))
                      if shard != REGISTRY_SHARD]
            await asyncio.gather(*(self.router.ask(shard, SetParticipantStatus(
                participant_id, status, key_id, False)) for shard in others))
        return reply

    async def reconcile_statuses(self, participants: list[Participant]) -> None:
        """At start: tell every other shard each participant's status again, in case a
        change reached the registry but not all of them (a repeat changes nothing)."""
        others = [shard for shard in range(len(self.router.links)) if shard != REGISTRY_SHARD]
        await asyncio.gather(*(self.router.ask(shard, SetParticipantStatus(
            participant.id, participant.status, SYSTEM, False))
            for participant in participants for shard in others))

    async def create_key(self, key: ApiKey, key_id: str) -> RegistryReply:
        return await self._ask(CreateKey(key, key_id))

    async def revoke_key(self, revoked_key_id: str, key_id: str) -> RegistryReply:
        return await self._ask(RevokeKey(revoked_key_id, key_id))

    async def set_alarm_threshold(self, participant_id: str, ledger: str, percent: int,
                                  key_id: str) -> RegistryReply:
        return await self._ask(SetAlarmThreshold(participant_id, ledger, percent, key_id))

    async def record_ndc_alarm(self, alarm: NdcAlarm) -> RegistryReply:
        return await self._ask(RecordNdcAlarm(alarm))
