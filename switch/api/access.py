"""What a participant may create and see: object-level checks the routes make.

The shards decide who may *debit* an account (actors/ledger/ledger.py: a participant only
its own). Here: what accounts a participant may open, and which objects it may read. An
object of another participant answers as if it did not exist (404); in an event page or a
query it is left out. Owners never change, so the owners this ingress has looked up are
kept (a bounded map).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable

from actors.ledger.events import (
    AccountCreated,
    AlarmThresholdSet,
    Event,
    LimitsChanged,
    NdcAlarm,
    PendingResolved,
    ReservationVoided,
    TransferCommitted,
    TransferReserved,
    transfer_id_of,
)
from actors.ledger.limits import Limits
from actors.ledger.model import (
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    Account,
    Transfer,
)
from actors.ledger.registry import Participant
from actors.messages import AccountView, GetAccount, GetTransfer, TransferView, expect
from switch.api.auth import Principal
from switch.hub.model import reserved
from switch.read.events import Delivered
from switch.routing.router import Router

OWNERS_KEPT_MAX = 100_000


def account_refusal(principal: Principal, participant: Participant | None, account: Account,
                    limits: Limits | None) -> str | None:
    """Why this principal may not open this account ("forbidden"), or None. A participant
    opens only accounts it owns, on its ledgers, that cannot go negative, without limits.
    Ids and owners under the switch layer's prefix are its own (switch/hub/model.py)."""
    if reserved(account.id) or reserved(account.owner):
        return "id_reserved"
    if not principal.is_participant:
        return None
    flags = account.flags
    if (participant is None or account.owner != principal.participant_id
            or account.ledger not in participant.ledgers
            or not flags & DEBITS_MUST_NOT_EXCEED_CREDITS
            or flags & CREDITS_MUST_NOT_EXCEED_DEBITS or limits is not None):
        return "forbidden"
    return None


def owns(principal: Principal, account: Account) -> bool:
    """May this principal read this account (a participant: only its own)?"""
    return not principal.is_participant or account.owner == principal.participant_id


class Visibility:
    def __init__(self, router: Router) -> None:
        self.router = router
        self._owners: dict[str, str] = {}

    async def owners(self, account_ids: Iterable[str]) -> dict[str, str | None]:
        """Each account's owner (None: no such account)."""
        found: dict[str, str | None] = {}
        missing = []
        for account_id in set(account_ids):
            owner = self._owners.get(account_id)
            if owner is None:
                missing.append(account_id)
            else:
                found[account_id] = owner
        if not missing:  # (the usual case: a payment's two wallets, known)
            return found
        views = await asyncio.gather(*(self.router.ask(self.router.shard_of(account_id),
                                                       GetAccount(account_id))
                                       for account_id in missing))
        for account_id, view in zip(missing, views, strict=True):
            account = expect(view, AccountView).account
            found[account_id] = None if account is None else account.owner
            if account is not None:
                if len(self._owners) >= OWNERS_KEPT_MAX:
                    self._owners.clear()
                self._owners[account_id] = account.owner
        return found

    async def sees_transfer(self, principal: Principal, transfer: Transfer) -> bool:
        """A participant sees the transfers it sent and those on one of its accounts."""
        if not principal.is_participant or transfer.participant_id == principal.participant_id:
            return True
        owners = await self.owners([transfer.debit_account_id, transfer.credit_account_id])
        return principal.participant_id in owners.values()

    async def visible_events(self, principal: Principal, delivered: list[Delivered]
                             ) -> list[Delivered]:
        """The events a participant may see: about its accounts, transfers it sees, or its
        own NDC alarm and threshold. An
        event naming only a transfer id is looked up at its shard (the transfer's home);
        the cross-shard protocol's own steps elsewhere are not shown."""
        if not principal.is_participant:
            return delivered
        transfers = await self._transfers_of(delivered)
        accounts = {account_id for d in delivered for account_id in _accounts_of(d.event)}
        accounts.update(side for t in transfers.values() if t is not None
                        for side in (t.debit_account_id, t.credit_account_id))
        owners = await self.owners(accounts)
        mine = principal.participant_id
        shown = []
        for d in delivered:
            if isinstance(d.event, NdcAlarm | AlarmThresholdSet):  # its own alarms
                if d.event.participant_id == mine:
                    shown.append(d)
                continue
            transfer = _transfer_of(d.event) or transfers.get((d.shard, transfer_id_of(d.event)))
            named = set(_accounts_of(d.event))
            if transfer is not None:
                if transfer.participant_id == mine:
                    shown.append(d)
                    continue
                named.update((transfer.debit_account_id, transfer.credit_account_id))
            if any(owners.get(account_id) == mine for account_id in named):
                shown.append(d)
        return shown

    async def _transfers_of(self, delivered: list[Delivered]
                            ) -> dict[tuple[int, str], Transfer | None]:
        wanted = {(d.shard, transfer_id_of(d.event)) for d in delivered
                  if _transfer_of(d.event) is None and not _accounts_of(d.event)
                  and transfer_id_of(d.event)}
        ordered = list(wanted)
        views = await asyncio.gather(*(self.router.ask(shard, GetTransfer(transfer_id))
                                       for shard, transfer_id in ordered))
        return {place: expect(view, TransferView).transfer
                for place, view in zip(ordered, views, strict=True)}


def _transfer_of(event: Event) -> Transfer | None:
    if isinstance(event, TransferCommitted | TransferReserved | ReservationVoided):
        return event.transfer  # (a release in a record before format 8: None)
    if isinstance(event, PendingResolved):
        return event.resolution
    return None


def _accounts_of(event: Event) -> tuple[str, ...]:
    if isinstance(event, AccountCreated):
        return (event.account.id,)
    if isinstance(event, LimitsChanged):
        return (event.account_id,)
    return ()
