"""Queries over the whole ledger, answered by a read replica, never by the shards.

The replica replays every shard's log (read-only, the same `Ledger.apply` as recovery) into
its own ledgers, catching up on each query with what was committed since the last one. So a
query sees everything committed before it started, never stalls a shard's batches, and costs
the write path nothing. It runs in a Ray actor of its own (switch/query_actor.py) so that its
catching up and scanning do not hold up the HTTP server either.

Balance history: for accounts with the `history` flag, the replica records the account's
balances after every event that changed them.
"""

from __future__ import annotations

import base64
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from actors.codec import decode_events, decode_snapshot_body
from actors.ledger import snapshot
from actors.ledger.ledger import ACCOUNT_CREATED, TRANSFER_COMMITTED, TRANSFER_RESERVED, Ledger
from actors.ledger.model import HISTORY, Account, Transfer
from actors.topology import Placement, Topology
from persistence.layout import shard_directories
from persistence.lmdb_log import LmdbLog
from persistence.scan import starting_point

RECORDS_PER_CATCH_UP = 5_000


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
        return int(timestamp), str(identifier)
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise QueryInvalid("the cursor is not one this switch issued") from None


@dataclass
class _Replica:
    log: LmdbLog
    ledger: Ledger
    next_seq: int = 1


@dataclass
class QueryEngine:
    data_dir: Path
    ledgers: tuple[str, ...]
    topology: Topology
    replicas: list[_Replica] = field(default_factory=list)
    balances: defaultdict[str, list[list[int]]] = field(
        default_factory=lambda: defaultdict(list))  # account -> [timestamp, 4 balances]

    def _open(self) -> None:
        if self.replicas:
            return
        for _, directory in shard_directories(self.data_dir):
            log = LmdbLog(directory, 1 << 20, readonly=True)
            replica = _Replica(log, Ledger(self.ledgers))
            first_seq, _, body = starting_point(log)  # a compacted log starts at a snapshot
            if body is not None:
                snapshot.load(replica.ledger, decode_snapshot_body(body))
            replica.next_seq = first_seq
            self.replicas.append(replica)
        self.placement = Placement(self.topology)

    def catch_up(self) -> int:
        """Apply what the shards committed since the last call; returns how many records."""
        self._open()
        applied = 0
        for replica in self.replicas:
            while True:
                records = replica.log.records_from(replica.next_seq, RECORDS_PER_CATCH_UP)
                for record in records:
                    for event in decode_events(record.payload):
                        touched = _touched(replica.ledger, event)
                        replica.ledger.apply(event)
                        self._note_balances(replica.ledger, touched, record.timestamp_ns)
                    replica.next_seq = record.seq + 1
                applied += len(records)
                if len(records) < RECORDS_PER_CATCH_UP:
                    break
        return applied

    def _note_balances(self, ledger: Ledger, touched: list[str], timestamp: int) -> None:
        for account_id in touched:
            account = ledger.accounts.get(account_id)
            if account is not None and account.flags & HISTORY:
                current = [timestamp, account.debits_posted, account.credits_posted,
                           account.debits_pending, account.credits_pending]
                history = self.balances[account_id]
                if not history or history[-1][1:] != current[1:]:
                    history.append(current)

    # ---- queries ----

    def transfers(self, filters: dict[str, Any], limit: int, cursor: str | None
                  ) -> tuple[list[list[Any]], str | None]:
        """Transfers matching every filter, oldest first from the cursor."""
        self.catch_up()
        after = decode_cursor(cursor)
        found = []
        for index, replica in enumerate(self.replicas):
            for transfer in replica.ledger.transfers.values():
                if self.placement.shard_of(transfer.id) != index:
                    continue  # a copy on one of its accounts' shards: count it at its home
                if _transfer_matches(transfer, replica.ledger, filters, after):
                    found.append(transfer)
        return _page(found, limit, lambda t: [t.row(), replica_status(self, t)])

    def accounts(self, filters: dict[str, Any], limit: int, cursor: str | None
                 ) -> tuple[list[list[Any]], str | None]:
        self.catch_up()
        after = decode_cursor(cursor)
        found = [account for replica in self.replicas
                 for account in replica.ledger.accounts.values()
                 if _account_matches(account, filters, after)]
        return _page(found, limit, lambda a: [a.row()])

    def balance_history(self, account_id: str, since_ns: int, until_ns: int, limit: int,
                        cursor: str | None) -> tuple[list[list[int]] | None, str | None]:
        """None if the account does not exist or does not keep its history."""
        self.catch_up()
        account = next((r.ledger.accounts[account_id] for r in self.replicas
                        if account_id in r.ledger.accounts), None)
        if account is None or not account.flags & HISTORY:
            return None, None
        after = decode_cursor(cursor)
        start = after[0] if after else since_ns - 1
        entries = [e for e in self.balances.get(account_id, [])
                   if start < e[0] <= until_ns]
        page = entries[:limit]
        following = encode_cursor([page[-1][0], ""]) if len(entries) > limit else None
        return page, following

    def close(self) -> None:
        for replica in self.replicas:
            replica.log.close()


def _touched(ledger: Ledger, event: list[Any]) -> list[str]:
    """The accounts an event may change (looked up before it is applied)."""
    kind = event[0]
    if kind == ACCOUNT_CREATED:
        return [event[1][0]]
    if kind in (TRANSFER_COMMITTED, TRANSFER_RESERVED):
        return [event[1][1], event[1][2]]
    reservation = ledger.reservations.get(event[1]) if isinstance(event[1], str) else None
    if reservation is not None:
        return [reservation.transfer.debit_account_id, reservation.transfer.credit_account_id]
    return []


def replica_status(engine: QueryEngine, transfer: Transfer) -> list[Any] | None:
    for replica in engine.replicas:
        status = replica.ledger.pending_status(transfer.id)
        if status is not None:
            return status
    return None


def _transfer_matches(transfer: Transfer, ledger: Ledger, filters: dict[str, Any],
                      after: tuple[int, str] | None) -> bool:
    if after is not None and (transfer.timestamp, transfer.id) <= after:
        return False
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
    if wanted is not None:
        status = ledger.pending_status(transfer.id)
        if status is None or status[0] != wanted:
            return False
    return True


def _account_matches(account: Account, filters: dict[str, Any],
                     after: tuple[int, str] | None) -> bool:
    if after is not None and (account.timestamp, account.id) <= after:
        return False
    return all(filters.get(name) is None or getattr(account, name) == filters[name]
               for name in ("owner", "code", "user_data", "ledger"))


def _page(found: list[Any], limit: int, render: Any) -> tuple[list[list[Any]], str | None]:
    found.sort(key=lambda item: (item.timestamp, item.id))
    page = found[:limit]
    following = encode_cursor([page[-1].timestamp, page[-1].id]) if len(found) > limit else None
    return [render(item) for item in page], following
