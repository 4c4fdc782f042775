"""The switch layer at the ingress: enables participants on their ledgers, moves funds and
net debit caps, all as ledger transfers through the router (switch/hub/model.py says which);
payments are switch/hub/payments.py, HTTP switch/hub/routes.py.

A cap change and a funds-out read a balance and then move money; they take turns across
every ingress process of the machine (`control_lock`, a file lock in the data directory),
and a payment committing meanwhile can still raise the position (the cap bounds it).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Iterable
from dataclasses import replace

from actors.ledger.events import NdcAlarm
from actors.ledger.model import Account, Transfer
from actors.ledger.registry import SYSTEM, Participant
from actors.messages import AccountView, GetAccount, GetTransfer, TransferView, expect
from persistence.lock import IngressLock
from switch.api.access import Visibility
from switch.api.auth import KeyRing
from switch.api.errors import ApiError
from switch.hub.model import (
    Position,
    cap_change,
    cap_id,
    funds_move,
    hub_accounts,
    participant_accounts,
    position_id,
    position_of,
    settlement_id,
)
from switch.routing.registry import RegistryClient
from switch.routing.router import Outcome, Router

log = logging.getLogger("payswitch.hub")
ENABLE_BATCH_MAX = 8190  # accounts per call when enabling many participants at start-up


class Hub:
    def __init__(self, router: Router, visibility: Visibility, keyring: KeyRing,
                 control_lock: IngressLock, alarm_percent_default: int) -> None:
        """`alarm_percent_default`: `hub.alarm_percent`, for a participant and ledger whose
        threshold was never set."""
        self.router = router
        self.visibility = visibility
        self.keyring = keyring
        self.registry = RegistryClient(router)
        self.alarm_percent_default = alarm_percent_default
        # Read-then-move operator actions (caps, funds out, window closes, settlements,
        # enabling a participant) take turns across the machine's ingress processes.
        self.control_lock = control_lock

    # ---- participants ----

    async def enable(self, participants: Iterable[Participant], key_id: str = SYSTEM) -> None:
        """Create the hub's and each participant's accounts on its ledgers (idempotent);
        `key_id`: who made the participant (recorded with the accounts: the audit lists
        those that may go negative)."""
        accounts: list[Account] = []
        ledgers: set[str] = set()
        for participant in participants:
            for ledger in participant.ledgers:
                ledgers.add(ledger)
                accounts += participant_accounts(participant.id, ledger)
        accounts = [a for ledger in sorted(ledgers) for a in hub_accounts(ledger)] + accounts
        if not accounts:
            return
        outcomes: list[Outcome] = []
        for start in range(0, len(accounts), ENABLE_BATCH_MAX):  # within the shards' queues
            outcomes += await self.router.create_accounts(
                accounts[start:start + ENABLE_BATCH_MAX], key_id=key_id)
        for account, outcome in zip(accounts, outcomes, strict=True):
            result = result_of(outcome)
            if result not in ("ok", "exists"):
                raise RuntimeError(f"the switch layer's account {account.id} could not be "
                                   f"created: {result}")

    def known_ledger(self, ledger: str) -> bool:
        """A ledger some participant is enabled on (the switch layer has accounts there)."""
        return any(ledger in p.ledgers for p in self.keyring.participants.values())

    def enabled(self, participant_id: str, ledger: str) -> bool:
        participant = self.keyring.participants.get(participant_id)
        return participant is not None and ledger in participant.ledgers

    # ---- positions, caps and funds ----

    async def position(self, participant_id: str, ledger: str) -> Position:
        """Its standing on one ledger; ApiError 404 when it is not enabled there."""
        if not self.enabled(participant_id, ledger):
            raise ApiError(404, "ledger_not_enabled")
        accounts = await self._accounts(participant_id, ledger)
        if None in accounts:  # enabled before its accounts were made (a crash between)
            await self.enable([self.keyring.participants[participant_id]])
            accounts = await self._accounts(participant_id, ledger)
        position, cap, settlement = (a for a in accounts if a is not None)
        return replace(position_of(ledger, position, cap, settlement),
                       alarm_percent=self.alarm_percent(participant_id, ledger))

    def alarm_percent(self, participant_id: str, ledger: str) -> int:
        participant = self.keyring.participants.get(participant_id)
        set_here = participant.alarm_percents.get(ledger) if participant is not None else None
        return set_here or self.alarm_percent_default

    async def set_alarm(self, participant_id: str, ledger: str, percent: int, key_id: str
                        ) -> str:
        """Its NDC alarm threshold on one ledger: "ok" or "unchanged" (ApiError if not)."""
        reply = await self.registry.set_alarm_threshold(participant_id, ledger, percent,
                                                        key_id)
        if reply.result in ("participant_not_found", "ledger_not_enabled"):
            raise ApiError(404, reply.result)
        if reply.result == "percent_invalid":
            raise ApiError(422, reply.result)
        await self.keyring.refresh()  # this ingress shows it at once; the others within
        return reply.result  # auth.refresh_interval_ms

    async def record_alarm(self, position: Position, participant_id: str) -> None:
        """A position seen above its threshold: an `ndc_alarm` event on /v1/events."""
        await self.registry.record_ndc_alarm(NdcAlarm(
            participant_id, position.ledger, position.position, position.net_debit_cap,
            position.alarm_percent, 0, SYSTEM))

    async def _accounts(self, participant_id: str, ledger: str) -> list[Account | None]:
        ids = (position_id(ledger, participant_id), cap_id(ledger, participant_id),
               settlement_id(ledger, participant_id))
        views = await asyncio.gather(*(self.router.ask(self.router.shard_of(account_id),
                                                       GetAccount(account_id))
                                       for account_id in ids))
        return [expect(view, AccountView).account for view in views]

    async def set_cap(self, participant_id: str, ledger: str, wanted: int, key_id: str
                      ) -> tuple[str, Position]:
        async with self.control_lock.held():
            now = await self.position(participant_id, ledger)
            if wanted > now.settlement_balance:
                raise ApiError(422, "net_debit_cap_above_settlement")
            change = cap_change(ledger, participant_id, _fresh_id("cap"), now.net_debit_cap,
                                wanted, key_id)
            if change is None:
                return "unchanged", now
            result = await self.apply(change)
            if result == "exceeds_credits":
                raise ApiError(422, "net_debit_cap_below_position")
            return result, await self.position(participant_id, ledger)

    async def move_funds(self, participant_id: str, ledger: str, funds_id: str, direction: str,
                         amount: int, key_id: str) -> tuple[str, Position]:
        move = funds_move(ledger, participant_id, f"hub:funds:{funds_id}", direction, amount,
                          key_id)
        async with self.control_lock.held():
            if direction == "out" and not await self.exists(move.id):  # a retry: as sent
                now = await self.position(participant_id, ledger)
                if now.settlement_balance - amount < now.position:
                    raise ApiError(422, "settlement_below_position")
                if now.settlement_balance - amount < now.net_debit_cap:
                    raise ApiError(422, "settlement_below_net_debit_cap")  # lower it first
            result = await self.apply(move)
            if result == "exceeds_credits":
                raise ApiError(422, "exceeds_settlement_balance")
            return result, await self.position(participant_id, ledger)

    async def exists(self, transfer_id: str) -> bool:
        view = await self.router.ask(self.router.shard_of(transfer_id), GetTransfer(transfer_id))
        return expect(view, TransferView).transfer is not None

    async def apply(self, transfer: Transfer) -> str:
        (outcome,) = await self.router.create_transfers([transfer])
        return result_of(outcome)

def result_of(outcome: Outcome) -> str:
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome[0]


def _fresh_id(kind: str) -> str:
    return f"hub:{kind}:{uuid.uuid4().hex}"
