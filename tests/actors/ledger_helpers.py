"""Helpers the core's table and model tests share: apply a decision's events as the shard
host would (the store's writes flushed as with a committed record), and read the store."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from msgspec.structs import replace

from actors.ledger.ledger import Ledger
from actors.ledger.model import Account, Transfer
from actors.shard.host import ShardHost
from actors.topology import Placement, round_robin
from switch.routing.router import Router
from switch.routing.transport import LocalShard


def apply_all(ledger: Ledger, events: Sequence[Any]) -> None:
    """Apply events, then make what they wrote to the store durable (a record's commit)."""
    for event in events:
        ledger.apply(event)
    store = ledger.store
    store.flush(store.applied_seq + 1, 0)


def history(ledger: Ledger, account_id: str) -> list[Transfer]:
    """An account's posted transfers, oldest first."""
    account = ledger.accounts.get(account_id)  # none here: a home without the accounts
    head = account.history_head if account is not None else 0
    page, _ = ledger.store.history(account_id, head, 1_000_000, None)
    return page[::-1]


def accounts_now(ledger: Ledger) -> dict[str, Account]:
    """Copies of the accounts: what they are now, unchanged by what follows."""
    return {account.id: replace(account) for account in ledger.accounts.values()}


def local_router(hosts: Sequence[ShardHost], slots: int = 64) -> Router:
    """The real router over in-process shard hosts (the transport's twin, LocalShard)."""
    links = [LocalShard(index, host) for index, host in enumerate(hosts)]
    return Router(links, Placement(round_robin(len(hosts), slots)), 10_000, 8190)
