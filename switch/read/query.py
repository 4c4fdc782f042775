"""Queries over the whole ledger, answered by a read model, never by the shards' write path.

The read model follows every shard's log feed (`ShardLink.read_log`: committed records, served
on the shard's reads thread) and keeps, in an LMDB environment of its own (a scratch
directory, rebuilt at each start), what the filters need: each account's fixed fields and
each transfer at its home, ordered by (timestamp, id), with pending transfers' status. So it
holds nothing per account in memory, and never opens a shard's files. Balances are not kept
here: a page of accounts asks their shards for them when it is answered.

Each query first catches up with what was committed since the last one, then scans.
"""

from __future__ import annotations

import asyncio
import base64
import struct
from collections.abc import Awaitable, Callable, Iterator, Sequence
from typing import Any

import msgspec
import orjson

from actors.codec import decode_events
from actors.ledger.events import (
    AccountCreated,
    Event,
    PartCommitted,
    PendingExpired,
    PendingResolved,
    ReservationVoided,
    TransferCommitted,
    TransferReserved,
)
from actors.ledger.model import PENDING, Account, Roles, Transfer
from actors.ledger.pending import EXPIRED, PENDING_STATUS, PendingStatus
from actors.topology import Placement, Topology
from persistence.read_model import ReadModel, Transaction
from switch.routing.transport import ShardLink

RECORDS_PER_CATCH_UP = 5_000
# Records per write transaction. LMDB (writemap=False) keeps the pages a transaction dirtied in
# a free list for the next one and never gives them back: the largest transaction sets the
# process's memory for good. 16 MiB of records held ~55 MiB at 1M accounts; 1 MiB, a few.
BYTES_PER_CATCH_UP = 1 << 20
KEY = struct.Struct(">Q")

_encode = msgspec.msgpack.Encoder().encode
_account = msgspec.msgpack.Decoder(Account).decode
_transfer = msgspec.msgpack.Decoder(Transfer).decode
_pending = msgspec.msgpack.Decoder(PendingStatus).decode

# (shard, account ids) -> the accounts as their shards hold them now (None: unknown)
FetchAccounts = Callable[[int, list[str]], Awaitable[list[Account | None]]]


class QueryInvalid(ValueError):
    """A filter or cursor this engine cannot use (the API answers 400)."""


def encode_cursor(key: list[Any]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(key)).decode().rstrip("=")


def decode_cursor(text: str | None) -> tuple[int, str] | None:
    if not text:
        return None
    try:
        padded = text + "=" * (-len(text) % 4)
        timestamp, identifier = orjson.loads(base64.urlsafe_b64decode(padded))
        if not (isinstance(timestamp, int) and 0 <= timestamp < 2**64):
            raise ValueError("a cursor's time is an unsigned 64-bit integer")
        return timestamp, str(identifier)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise QueryInvalid("the cursor is not one this switch issued") from None


def _ordered(timestamp: int, identifier: str) -> bytes:
    return KEY.pack(timestamp) + identifier.encode()


class QueryEngine:
    def __init__(self, links: Sequence[ShardLink], topology: Topology,
                 fetch_accounts: FetchAccounts, model: ReadModel | None = None) -> None:
        self.links = list(links)
        self.placement = Placement(topology)
        self.fetch_accounts = fetch_accounts
        self.model = model or ReadModel()
        self.next_seq = [1] * len(self.links)
        self._catching_up = asyncio.Lock()  # queries run concurrently; one catches up at once

    async def catch_up(self) -> int:
        """Apply what the shards committed since the last call; returns how many records."""
        async with self._catching_up:
            return await self._catch_up()

    async def _catch_up(self) -> int:
        applied = 0
        for shard, link in enumerate(self.links):
            while True:
                feed = await link.read_log(self.next_seq[shard], RECORDS_PER_CATCH_UP,
                                           BYTES_PER_CATCH_UP)
                with self.model.env.begin(write=True) as txn:
                    for record in feed.records:
                        for event in decode_events(record.payload):
                            self._note(txn, shard, event)
                        self.next_seq[shard] = record.seq + 1
                applied += len(feed.records)
                if not feed.records or self.next_seq[shard] > feed.last_seq:
                    break
        return applied

    def _note(self, txn: Transaction, shard: int, event: Event) -> None:
        model = self.model
        if isinstance(event, AccountCreated):
            account = event.account
            txn.put(_ordered(account.timestamp, account.id), _encode(account), db=model.accounts)
            txn.put(account.id.encode(), account.owner.encode(), db=model.owners)
        elif isinstance(event, TransferCommitted):
            self._stored(txn, event.transfer)
        elif isinstance(event, TransferReserved) and event.roles & Roles.home and event.chain:
            txn.put(event.transfer.id.encode(), _encode(event.transfer), db=model.reserved)
        elif isinstance(event, PartCommitted):
            raw = txn.pop(event.transfer_id.encode(), db=model.reserved)
            if event.resolving is not None:
                self._stored(txn, event.resolving.stamped(event.timestamp))
            elif raw is not None:
                member = _transfer(raw).stamped(event.timestamp)
                self._stored(txn, member.resized(event.amount) if event.amount else member)
        elif isinstance(event, ReservationVoided):
            txn.delete(event.transfer_id.encode(), db=model.reserved)
        elif isinstance(event, PendingResolved):
            txn.put(event.pending_id.encode(), _encode(PendingStatus(
                event.status, event.amount_posted, event.resolution)), db=model.status)
        elif isinstance(event, PendingExpired):
            txn.put(event.pending_id.encode(), _encode(PendingStatus(EXPIRED, 0, None)),
                    db=model.status)

    def _stored(self, txn: Transaction, transfer: Transfer) -> None:
        model = self.model
        txn.put(_ordered(transfer.timestamp, transfer.id), _encode(transfer), db=model.transfers)
        if transfer.flags & PENDING:
            txn.put(transfer.id.encode(), _encode(PendingStatus(PENDING_STATUS, 0, None)),
                    db=model.status, overwrite=False)

    # ---- queries ----

    async def transfers(self, filters: dict[str, Any], limit: int, cursor: str | None
                        ) -> tuple[list[tuple[Transfer, PendingStatus | None]], str | None]:
        """Transfers matching every filter, oldest first from the cursor, with a pending
        transfer's status."""
        await self.catch_up()
        found: list[tuple[Transfer, PendingStatus | None]] = []
        following = None
        with self.model.env.begin(buffers=False) as txn:
            for transfer in self._scan(txn, self.model.transfers, _transfer, cursor):
                status = _status(txn, self.model, transfer)
                if _transfer_matches(transfer, status, filters) and _party_to(
                        txn, self.model, transfer, filters.get("party")):
                    if len(found) == limit:
                        following = encode_cursor([found[-1][0].timestamp, found[-1][0].id])
                        break
                    found.append((transfer, status))
        return found, following

    async def accounts(self, filters: dict[str, Any], limit: int, cursor: str | None
                       ) -> tuple[list[Account], str | None]:
        """Accounts matching every filter, oldest first, with their balances now."""
        await self.catch_up()
        found: list[Account] = []
        following = None
        with self.model.env.begin(buffers=False) as txn:
            for account in self._scan(txn, self.model.accounts, _account, cursor):
                if all(filters.get(name) is None or getattr(account, name) == filters[name]
                       for name in ("owner", "code", "user_data", "ledger")):
                    if len(found) == limit:
                        following = encode_cursor([found[-1].timestamp, found[-1].id])
                        break
                    found.append(account)
        return await self._current(found), following

    async def _current(self, accounts: list[Account]) -> list[Account]:
        by_shard: dict[int, list[int]] = {}
        for position, account in enumerate(accounts):
            by_shard.setdefault(self.placement.shard_of(account.id), []).append(position)
        current = list(accounts)
        for shard, positions in by_shard.items():
            fetched = await self.fetch_accounts(shard, [accounts[i].id for i in positions])
            for position, now in zip(positions, fetched, strict=True):
                if now is not None:
                    current[position] = now
        return current

    @staticmethod
    def _scan(txn: Transaction, table: Any, decode: Callable[[bytes], Any],
              cursor: str | None) -> Iterator[Any]:
        after = decode_cursor(cursor)
        position = txn.cursor(db=table)
        start = _ordered(*after) if after is not None else b""
        found = position.set_range(start)
        while found:
            if after is None or position.key() != start:
                yield decode(bytes(position.value()))
            found = position.next()

    def close(self) -> None:
        self.model.close()


def _status(txn: Transaction, model: ReadModel, transfer: Transfer
            ) -> PendingStatus | None:
    if not transfer.flags & PENDING:
        return None
    raw = txn.get(transfer.id.encode(), db=model.status)
    return None if raw is None else _pending(raw)


def _party_to(txn: Transaction, model: ReadModel, transfer: Transfer, party: str | None
              ) -> bool:
    """No party asked, or the transfer was sent by it or is on one of its accounts."""
    if party is None or transfer.participant_id == party:
        return True
    wanted = party.encode()
    return any(txn.get(side.encode(), db=model.owners) == wanted
               for side in (transfer.debit_account_id, transfer.credit_account_id))


def _transfer_matches(transfer: Transfer, status: PendingStatus | None,
                      filters: dict[str, Any]) -> bool:
    account = filters.get("account_id")
    if account is not None and account not in (transfer.debit_account_id,
                                                transfer.credit_account_id):
        return False
    for name in ("code", "user_data", "ledger"):
        if filters.get(name) is not None and getattr(transfer, name) != filters[name]:
            return False
    if not filters.get("from_ns", 0) <= transfer.timestamp <= filters.get("to_ns", 2**64):
        return False
    wanted = filters.get("pending_status")
    return wanted is None or (status is not None and status.status == wanted)
