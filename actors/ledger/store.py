"""The ledger's indexes of things that only grow: the core's port to durable storage.

What a shard must keep for ever but rarely reads lives here, not in memory: every transfer
by id (the idempotency index), each account's posted transfers in order, linked chains'
decisions, pending transfers once final, and the balance history of accounts that keep one.
Memory holds only what is live: accounts, parts in doubt, open pending transfers.

The core reads and writes through `LedgerStore`. Writes made while a batch is applied are
buffered and become durable with the batch (`flush`, called with the batch's log record);
reads see them at once. The shard host gives the core the LMDB implementation
(persistence/index.py: written in the record's own transaction, behind a bounded cache);
tests of the core and the WAL tool's audit use `MemoryStore`, the in-memory twin. Both pass
the same contract tests.

An account's history is a chain: each entry has a position, `(seq << 32) | n` (the n-th entry
of log record seq, so a replay gives every entry the position it had), and names the
position of the account's entry before it; the account keeps the newest (`history_head`).
Entries are thus appended in log order: a batch writes a few pages of history, not one page
per account it touched.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable
from typing import Any, Protocol

import msgspec

from actors.ledger.model import Transfer
from actors.ledger.pending import PendingStatus


class StoredTransfer(msgspec.Struct, array_like=True, frozen=True, gc=False):
    transfer: Transfer
    # At its home, the cross-shard attempt whose decision committed it (0: none, or not the
    # home): `Ledger.resolve` answers its parts by it.
    commit_attempt: int = 0


class ChainDecision(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A committed linked chain, at its coordinator."""

    attempt: int
    timestamps: list[int]
    amounts: list[int]
    resolving: list[Transfer | None]  # per member: a post's or void's fields as stored


class Balances(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """An account's four balances after a change, at `timestamp` (its log record's time)."""

    timestamp: int
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


SlotEntries = tuple[list[StoredTransfer], list[tuple[str, ChainDecision]],
                    list[tuple[str, PendingStatus]]]


class LedgerStore(Protocol):
    @property
    def applied_seq(self) -> int:
        """The last log record whose writes the store holds."""

    def transfer(self, transfer_id: str) -> StoredTransfer | None: ...

    def add_transfer(self, stored: StoredTransfer, if_absent: bool = False) -> None:
        """Index a transfer; it must be new unless `if_absent` (then a stored one stays)."""

    def add_history(self, account_id: str, transfer_id: str, previous: int) -> int:
        """A transfer posted to the account after the entry at `previous` (its head; 0:
        none); returns the new entry's position, the account's new head."""

    def history(self, account_id: str, head: int, limit: int, before: int | None
                ) -> tuple[list[Transfer], int | None]:
        """Posted transfers, newest first: from `head` (the account's), or after the entry at
        `before`; returns the page and the position to continue from (None: no more)."""

    def begin_at(self, seq: int) -> None:
        """The next batch's record will be `seq` (recovery and audits start mid-log)."""

    def chain(self, key: str) -> ChainDecision | None: ...

    def add_chain(self, key: str, decision: ChainDecision) -> None: ...

    def pending_final(self, pending_id: str) -> PendingStatus | None: ...

    def add_pending_final(self, pending_id: str, status: PendingStatus) -> None: ...

    def add_balances(self, account_id: str, balances: tuple[int, int, int, int]) -> None:
        """Note balances after a change (of an account that keeps its history): they take the
        time of the batch's log record; one point per account per record, none if unchanged."""

    def balance_history(self, account_id: str, since_ns: int, until_ns: int, limit: int
                        ) -> tuple[list[Balances], int | None]:
        """Balances noted in (since_ns, until_ns], oldest first; the last timestamp of the
        page when more follow (the next page's `since_ns`)."""

    def replace_transfer(self, stored: StoredTransfer) -> None:
        """Index a transfer over any copy of it (a slot move brings its home's record)."""

    def slot_entries(self, in_slot: Callable[[str], bool]) -> SlotEntries:
        """What is stored under keys of one slot (a slot move carries it): transfers by id,
        chains' decisions by key, final pending states by id; this batch's writes included."""

    def add_balance_points(self, account_id: str, points: list[Balances]) -> None:
        """Balance history as another shard kept it (a slot move), at its own times."""

    def begin(self) -> None:
        """A batch starts: reads may share one view of the store until `end_reads`."""

    def end_reads(self) -> None: ...

    def flush(self, seq: int, timestamp_ns: int) -> None:
        """The batch's record `seq` is durable: what it wrote is now the stored state."""

    def discard(self) -> None:
        """The batch failed: forget what it wrote."""

    def import_legacy(self, seq: int, index: Any) -> None:
        """What a format-1 snapshot at `seq` held that now lives in the store."""


class MemoryStore:
    """The in-memory twin: for the core's tests, the model tests and the WAL tool's audit.
    Like the LMDB store, it keeps a batch's writes aside until `flush`."""

    def __init__(self) -> None:
        self.transfers: dict[str, StoredTransfer] = {}
        self._history: dict[int, tuple[str, int]] = {}  # position -> transfer id, previous
        self._next_seq = 1
        self.chains: dict[str, ChainDecision] = {}
        self.pending: dict[str, PendingStatus] = {}
        self._balances: defaultdict[str, list[Balances]] = defaultdict(list)
        self.applied_seq = 0
        self._staged_transfers: dict[str, StoredTransfer] = {}
        self._staged_history: list[tuple[str, int]] = []  # transfer id, previous
        self._staged_chains: dict[str, ChainDecision] = {}
        self._staged_pending: dict[str, PendingStatus] = {}
        self._noted: list[tuple[str, tuple[int, int, int, int]]] = []
        self._staged_points: list[tuple[str, list[Balances]]] = []
        # What a compacted log no longer holds (the audit of one: the shard's own store):
        # consulted for transfers, chains and pending outcomes this store never saw.
        self.earlier: LedgerStore | None = None

    def begin(self) -> None:
        """A batch starts (the LMDB store opens its read transaction here)."""

    def begin_at(self, seq: int) -> None:
        self._next_seq = seq

    def end_reads(self) -> None:
        """The batch is over (the LMDB store closes its read transaction here)."""

    def transfer(self, transfer_id: str) -> StoredTransfer | None:
        found = self._staged_transfers.get(transfer_id) or self.transfers.get(transfer_id)
        if found is None and self.earlier is not None:
            return self.earlier.transfer(transfer_id)
        return found

    def add_transfer(self, stored: StoredTransfer, if_absent: bool = False) -> None:
        transfer_id = stored.transfer.id
        if self.transfer(transfer_id) is not None:
            if if_absent:
                return
            raise AssertionError(f"transfer {transfer_id} indexed twice")
        self._staged_transfers[transfer_id] = stored

    def add_history(self, account_id: str, transfer_id: str, previous: int) -> int:
        self._staged_history.append((transfer_id, previous))
        return position_of(self._next_seq, len(self._staged_history) - 1)

    def history(self, account_id: str, head: int, limit: int, before: int | None
                ) -> tuple[list[Transfer], int | None]:
        def entry(position: int) -> tuple[str, int] | None:
            seq, n = split_position(position)
            if seq == self._next_seq and n < len(self._staged_history):
                return self._staged_history[n]
            return self._history.get(position)

        start = head if before is None else (entry(before) or ("", 0))[1]
        found = walk_history(entry, start, limit + 1)
        return page_of(found, limit, self._transfer_of)

    def _transfer_of(self, transfer_id: str) -> Transfer:
        stored = self.transfer(transfer_id)
        if stored is None:
            raise AssertionError(f"history names {transfer_id}, which is not indexed")
        return stored.transfer

    def chain(self, key: str) -> ChainDecision | None:
        found = self._staged_chains.get(key) or self.chains.get(key)
        if found is None and self.earlier is not None:
            return self.earlier.chain(key)
        return found

    def add_chain(self, key: str, decision: ChainDecision) -> None:
        if self.chain(key) is not None:
            raise AssertionError(f"chain {key} decided twice")
        self._staged_chains[key] = decision

    def pending_final(self, pending_id: str) -> PendingStatus | None:
        found = self._staged_pending.get(pending_id) or self.pending.get(pending_id)
        if found is None and self.earlier is not None:
            return self.earlier.pending_final(pending_id)
        return found

    def add_pending_final(self, pending_id: str, status: PendingStatus) -> None:
        self._staged_pending[pending_id] = status

    def add_balances(self, account_id: str, balances: tuple[int, int, int, int]) -> None:
        self._noted.append((account_id, balances))

    def balance_history(self, account_id: str, since_ns: int, until_ns: int, limit: int
                        ) -> tuple[list[Balances], int | None]:
        history = self._balances.get(account_id, [])
        times = [entry.timestamp for entry in history]
        selected = history[bisect_right(times, since_ns):bisect_right(times, until_ns)]
        page = selected[:limit]
        return page, (page[-1].timestamp if len(selected) > limit else None)

    def slot_entries(self, in_slot: Callable[[str], bool]) -> SlotEntries:
        transfers = {**self.transfers, **self._staged_transfers}
        chains = {**self.chains, **self._staged_chains}
        pending = {**self.pending, **self._staged_pending}
        return ([stored for key, stored in transfers.items() if in_slot(key)],
                [(key, decision) for key, decision in chains.items() if in_slot(key)],
                [(key, status) for key, status in pending.items() if in_slot(key)])

    def add_balance_points(self, account_id: str, points: list[Balances]) -> None:
        self._staged_points.append((account_id, points))

    def replace_transfer(self, stored: StoredTransfer) -> None:
        self._staged_transfers[stored.transfer.id] = stored

    def flush(self, seq: int, timestamp_ns: int) -> None:
        self.transfers.update(self._staged_transfers)
        for account_id, points in self._staged_points:  # by time, one point a time (as LMDB)
            by_time = {point.timestamp: point for point in self._balances[account_id]}
            by_time.update({point.timestamp: point for point in points})
            self._balances[account_id] = [by_time[t] for t in sorted(by_time)]
        for n, entry in enumerate(self._staged_history):
            self._history[position_of(self._next_seq, n)] = entry
        self._next_seq = max(self._next_seq, seq) + 1
        self.chains.update(self._staged_chains)
        self.pending.update(self._staged_pending)
        for account_id, balances in coalesced(self._noted).items():
            history = self._balances[account_id]
            if not history or _four(history[-1]) != balances:
                history.append(Balances(timestamp_ns, *balances))
        self.applied_seq = seq
        self.discard()

    def replayed(self, seq: int, timestamp_ns: int, write: bool) -> None:
        """Recovery applied record `seq`: keep its writes if this store lacks them."""
        if write:
            self.flush(seq, timestamp_ns)
        else:
            self.discard()
            self._next_seq = seq + 1

    def finish_replay(self) -> None:
        """Recovery is done (the LMDB store commits what it wrote)."""

    def import_legacy(self, seq: int, index: Any) -> None:
        """What a format-1 snapshot at `seq` held that now lives in the store."""
        self.begin_at(seq)
        stage_legacy(self, index)
        self.flush(seq, 0)

    def discard(self) -> None:
        self._staged_transfers.clear()
        self._staged_history.clear()
        self._staged_chains.clear()
        self._staged_pending.clear()
        self._noted.clear()
        self._staged_points.clear()


def stage_legacy(store: LedgerStore, index: Any) -> None:
    """Stage what a format-1 snapshot held (actors/legacy.py) as writes of one batch."""
    for stored in index.transfers:
        store.add_transfer(stored, if_absent=True)
    for account_id, transfer_ids in index.history.items():
        head = 0
        for transfer_id in transfer_ids:
            head = store.add_history(account_id, transfer_id, head)
        index.accounts[account_id].history_head = head  # the snapshot's: the ledger's now
    for key, decision in index.chains.items():
        store.add_chain(key, decision)
    for pending_id, status in index.pending_final.items():
        store.add_pending_final(pending_id, status)


def position_of(seq: int, n: int) -> int:
    """The position of the n-th history entry of record `seq`."""
    return (seq << 32) | n


def split_position(position: int) -> tuple[int, int]:
    return position >> 32, position & 0xFFFFFFFF


def walk_history(entry: Callable[[int], tuple[str, int] | None], start: int, count: int
                 ) -> list[tuple[int, str]]:
    """Up to `count` (position, transfer id) of a history chain, from `start` back."""
    found: list[tuple[int, str]] = []
    position = start
    while position and len(found) < count:
        current = entry(position)
        if current is None:
            raise AssertionError(f"history names position {position}, which is not stored")
        found.append((position, current[0]))
        position = current[1]
    return found


def page_of(found: list[tuple[int, str]], limit: int, transfer: Callable[[str], Transfer]
            ) -> tuple[list[Transfer], int | None]:
    """A page of at most `limit` of the entries found (one more means more follow)."""
    page = found[:limit]
    following = page[-1][0] if len(found) > limit else None
    return [transfer(transfer_id) for _, transfer_id in page], following


def coalesced(noted: list[tuple[str, tuple[int, int, int, int]]]
              ) -> dict[str, tuple[int, int, int, int]]:
    """Each account's balances at the end of the batch: one point per account per record
    (its time is the record's), so a timestamp names one point of an account's history."""
    return dict(noted)


def _four(point: Balances) -> tuple[int, int, int, int]:
    return (point.debits_posted, point.credits_posted, point.debits_pending,
            point.credits_pending)


