"""The ledger's store in LMDB: tables in the shard's log environment, written in the same
transaction as the batch's log record, so they are exactly as durable as the log.

Tables (every value starts with the sequence number of the record that wrote it, so a repair
that cuts the log can cut the tables at the same place):

    transfers  id                                -> seq | StoredTransfer
    posted     seq u64, n u32 (a position)       -> seq | previous position (u64, u32) | id
    history    account id, 0, seq u64, n u32     -> seq | transfer id (read only: written by
               releases before history was chained; older entries of those accounts)
    chains     chain key                         -> seq | ChainDecision
    pending    pending transfer id               -> seq | PendingStatus (final ones)
    balances   account id, 0, timestamp u64      -> seq | Balances
    meta       b"applied_seq"                    -> u64: the last record whose writes are here

`posted` holds every account's history as chains (actors/ledger/store.py): its keys grow with
the log, so a batch appends its entries to the last pages. Keyed by account, a batch of 1,000
transfers dirtied about 2,000 pages, and its commit took a third longer.

Reads within a batch see the batch's own writes (an overlay), then a bounded cache of
recently indexed transfers, then LMDB through one read transaction per batch.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Callable, Iterator
from typing import Any

import lmdb
import msgspec

from actors.ledger.model import Transfer
from actors.ledger.pending import PendingStatus
from actors.ledger.store import (
    Balances,
    ChainDecision,
    SlotEntries,
    StoredTransfer,
    coalesced,
    page_of,
    position_of,
    split_position,
    stage_legacy,
    walk_history,
)

SEQ = struct.Struct(">Q")
HISTORY_SUFFIX = struct.Struct(">QI")
COUNT = struct.Struct(">I")
TABLES = (b"transfers", b"posted", b"history", b"chains", b"pending", b"balances", b"meta")
OPTIONAL_TABLES = {b"posted"}  # absent from data of the release before it (read only there)
APPLIED_SEQ = b"applied_seq"
SEPARATOR = b"\x00"  # ids never hold it (ID_PATTERN)
TRANSFER_CACHE_MAX_DEFAULT = 4_096  # as config/default.toml; ~500 B each, up to twice this
REBUILD_RECORDS_PER_TRANSACTION = 10_000

_encode = msgspec.msgpack.Encoder().encode
_stored = msgspec.msgpack.Decoder(StoredTransfer).decode
_chain = msgspec.msgpack.Decoder(ChainDecision).decode
_pending = msgspec.msgpack.Decoder(PendingStatus).decode
_balances = msgspec.msgpack.Decoder(Balances).decode

# How a write meets an entry already there: NEW must find none (else the batch fails: a
# bug), KEEP leaves it, SET replaces it; APPEND is NEW for keys after every stored one.
NEW, KEEP, SET, APPEND = 0, 1, 2, 3
Write = tuple[Any, list[tuple[bytes, bytes]], int]  # table, (key, value) items, mode


class IndexConflict(Exception):
    """A write that must be new found an entry: the batch is refused, nothing is written."""


class LmdbStore:
    """Implements actors.ledger.store.LedgerStore over one shard's LMDB environment."""

    def __init__(self, env: lmdb.Environment, tables: dict[bytes, Any] | None,
                 cache_max: int = TRANSFER_CACHE_MAX_DEFAULT) -> None:
        self._env = env
        self._tables = tables  # None: a read-only environment written before these tables
        self._cache_max = cache_max
        self._cache: dict[str, StoredTransfer] = {}  # committed, oldest first
        self._overlay: dict[str, StoredTransfer] = {}  # this batch's
        # This batch's writes, per table, in order.
        self._transfers_new: list[StoredTransfer] = []
        self._transfers_kept: list[StoredTransfer] = []  # indexed unless indexed already
        self._transfers_replaced: list[StoredTransfer] = []  # over any copy (slot moves)
        self._history: list[tuple[str, int]] = []  # transfer id, previous position
        self._chains: list[tuple[str, ChainDecision]] = []
        self._pending: list[tuple[str, PendingStatus]] = []
        self._noted: list[tuple[str, tuple[int, int, int, int]]] = []
        self._points: list[tuple[str, list[Balances]]] = []  # another shard's (a slot move)
        self._reading: lmdb.Transaction | None = None
        self._rebuilding: lmdb.Transaction | None = None  # recovery writing what was missing
        self._rebuilt = 0
        self._next_seq = self.applied_seq + 1  # the record the batch's history goes into

    # ---- batches ----

    def begin(self) -> None:
        """A batch starts: reads go through one read transaction until it ends."""
        self.end_reads()
        if self._tables is not None:
            self._reading = self._env.begin(buffers=False)

    def end_reads(self) -> None:
        if self._reading is not None:
            self._reading.abort()
            self._reading = None

    def begin_at(self, seq: int) -> None:
        self._next_seq = seq

    @property
    def applied_seq(self) -> int:
        raw = self._get(b"meta", APPLIED_SEQ)
        return SEQ.unpack(raw)[0] if raw is not None else 0

    def staged_writes(self, seq: int, timestamp_ns: int) -> list[Write]:
        """The batch's writes, per table, for the transaction that appends record `seq`."""
        tables = self._require_tables()
        prefix = SEQ.pack(seq)
        encode = _encode
        writes: list[Write] = []
        if self._transfers_new:
            writes.append((tables[b"transfers"], [
                (stored.transfer.id.encode(), prefix + encode(stored))
                for stored in self._transfers_new], NEW))
        if self._transfers_kept:
            writes.append((tables[b"transfers"], [
                (stored.transfer.id.encode(), prefix + encode(stored))
                for stored in self._transfers_kept], KEEP))
        if self._transfers_replaced:
            writes.append((tables[b"transfers"], [
                (stored.transfer.id.encode(), prefix + encode(stored))
                for stored in self._transfers_replaced], SET))
        if self._history:
            if seq != self._next_seq:  # the positions handed out name another record
                raise IndexConflict(f"history staged for record {self._next_seq} goes into "
                                    f"record {seq}")
            number, position = COUNT.pack, HISTORY_SUFFIX.pack
            writes.append((tables[b"posted"], [
                (prefix + number(n), prefix + position(*split_position(previous)) +
                 transfer_id.encode())
                for n, (transfer_id, previous) in enumerate(self._history)], APPEND))
        if self._chains:
            writes.append((tables[b"chains"], [(key.encode(), prefix + encode(decision))
                                               for key, decision in self._chains], NEW))
        if self._pending:
            writes.append((tables[b"pending"], [(pending_id.encode(), prefix + encode(status))
                                                for pending_id, status in self._pending], SET))
        points = [(account_id.encode() + SEPARATOR + SEQ.pack(timestamp_ns),
                   prefix + encode(Balances(timestamp_ns, *balances)))
                  for account_id, balances in coalesced(self._noted).items()
                  if self._last_balances(account_id) != balances]
        points += [(account_id.encode() + SEPARATOR + SEQ.pack(point.timestamp),
                    prefix + encode(point))
                   for account_id, moved in self._points for point in moved]
        if points:
            writes.append((tables[b"balances"], points, SET))
        writes.append((tables[b"meta"], [(APPLIED_SEQ, SEQ.pack(seq))], SET))
        return writes

    # ---- recovery ----

    def replayed(self, seq: int, timestamp_ns: int, write: bool) -> None:
        """Recovery applied record `seq`: keep what it wrote if the store lacks it (`write`),
        else forget it (the store has it since the record was committed)."""
        if not write:
            self._clear_batch()
            self._next_seq = seq + 1
            return
        if self._rebuilding is None:
            self._rebuilding = self._env.begin(write=True)
        put_all(self._rebuilding, self.staged_writes(seq, timestamp_ns))
        self._next_seq = seq + 1
        self._clear_batch()
        self._rebuilt += 1
        if self._rebuilt % REBUILD_RECORDS_PER_TRANSACTION == 0:
            self.finish_replay()

    def finish_replay(self) -> None:
        if self._rebuilding is not None:
            self._rebuilding.commit()
            self._rebuilding = None

    def import_legacy(self, seq: int, index: Any) -> None:
        """What a format-1 snapshot at `seq` held that now lives here (actors/legacy.py)."""
        self.begin_at(seq)
        stage_legacy(self, index)
        self.replayed(seq, 0, write=True)
        self.finish_replay()

    def flush(self, seq: int, timestamp_ns: int) -> None:
        """The record is durable (its writes with it): the overlay becomes cached state."""
        cache = self._cache
        cache.update(self._overlay)
        if len(cache) > 2 * self._cache_max:  # drop the oldest half: amortized O(1) a write
            self._cache = dict(list(cache.items())[-self._cache_max:])
        self._clear_batch()
        self._next_seq = seq + 1

    def discard(self) -> None:
        self._clear_batch()

    def _clear_batch(self) -> None:
        self._overlay.clear()
        self._transfers_new.clear()
        self._transfers_kept.clear()
        self._transfers_replaced.clear()
        self._history.clear()
        self._chains.clear()
        self._pending.clear()
        self._noted.clear()
        self._points.clear()

    # ---- LedgerStore ----

    def transfer(self, transfer_id: str) -> StoredTransfer | None:
        found = self._overlay.get(transfer_id)
        if found is None:
            found = self._cache.get(transfer_id)
        if found is None:
            raw = self._get(b"transfers", transfer_id.encode())
            found = None if raw is None else _stored(raw[SEQ.size:])
        return found

    def add_transfer(self, stored: StoredTransfer, if_absent: bool = False) -> None:
        transfer_id = stored.transfer.id
        if transfer_id in self._overlay or (if_absent and self.transfer(transfer_id)):
            if if_absent:
                return
            raise AssertionError(f"transfer {transfer_id} indexed twice")
        self._overlay[transfer_id] = stored
        (self._transfers_kept if if_absent else self._transfers_new).append(stored)

    def add_history(self, account_id: str, transfer_id: str, previous: int) -> int:
        self._history.append((transfer_id, previous))
        return position_of(self._next_seq, len(self._history) - 1)

    def history(self, account_id: str, head: int, limit: int, before: int | None
                ) -> tuple[list[Transfer], int | None]:
        start, older_than = head, None  # older_than: a position in the table before chains
        if before is not None:
            entry = self._posted(before)
            if entry is None:
                start, older_than = 0, before
            else:
                start = entry[1]
        found = walk_history(self._posted, start, limit + 1)
        if len(found) <= limit:  # the chain ends: older entries may predate chains
            found += self._unchained(account_id, older_than, limit + 1 - len(found))
        return page_of(found, limit, self._transfer_of)

    def _posted(self, position: int) -> tuple[str, int] | None:
        """The chained history entry at `position`: (transfer id, previous position)."""
        seq, n = split_position(position)
        if seq == self._next_seq and n < len(self._history):
            return self._history[n]
        raw = self._get(b"posted", SEQ.pack(seq) + COUNT.pack(n))
        if raw is None:
            return None
        previous_seq, previous_n = HISTORY_SUFFIX.unpack_from(raw, SEQ.size)
        return raw[SEQ.size + HISTORY_SUFFIX.size:].decode(), position_of(previous_seq,
                                                                        previous_n)

    def _transfer_of(self, transfer_id: str) -> Transfer:
        stored = self.transfer(transfer_id)
        if stored is None:
            raise AssertionError(f"history names {transfer_id}, which is not indexed")
        return stored.transfer

    def _unchained(self, account_id: str, before: int | None, count: int
                   ) -> list[tuple[int, str]]:
        """Entries of the table keyed by account (written before chains), newest first."""
        if self._tables is None or count <= 0:
            return []
        prefix = account_id.encode() + SEPARATOR
        end = prefix + (HISTORY_SUFFIX.pack(*split_position(before)) if before is not None
                        else b"\xff")
        found: list[tuple[int, str]] = []
        with self._env.begin(db=self._tables[b"history"], buffers=False) as txn:
            cursor = txn.cursor()
            more = cursor.set_range(end)
            more = cursor.prev() if more else cursor.last()
            while more and len(found) < count and cursor.key().startswith(prefix):
                seq, n = HISTORY_SUFFIX.unpack(cursor.key()[len(prefix):])
                found.append((position_of(seq, n), cursor.value()[SEQ.size:].decode()))
                more = cursor.prev()
        return found

    def chain(self, key: str) -> ChainDecision | None:
        for staged_key, decision in self._chains:
            if staged_key == key:
                return decision
        raw = self._get(b"chains", key.encode())
        return None if raw is None else _chain(raw[SEQ.size:])

    def add_chain(self, key: str, decision: ChainDecision) -> None:
        self._chains.append((key, decision))

    def pending_final(self, pending_id: str) -> PendingStatus | None:
        for staged_id, status in reversed(self._pending):
            if staged_id == pending_id:
                return status
        raw = self._get(b"pending", pending_id.encode())
        return None if raw is None else _pending(raw[SEQ.size:])

    def add_pending_final(self, pending_id: str, status: PendingStatus) -> None:
        self._pending.append((pending_id, status))

    def add_balances(self, account_id: str, balances: tuple[int, int, int, int]) -> None:
        self._noted.append((account_id, balances))

    def add_balance_points(self, account_id: str, points: list[Balances]) -> None:
        self._points.append((account_id, points))

    def replace_transfer(self, stored: StoredTransfer) -> None:
        self._overlay[stored.transfer.id] = stored
        self._cache.pop(stored.transfer.id, None)
        self._transfers_replaced.append(stored)

    def slot_entries(self, in_slot: Callable[[str], bool]) -> SlotEntries:
        transfers = dict(self._scan(b"transfers", _stored, in_slot))
        transfers.update({key: stored for key, stored in self._overlay.items() if in_slot(key)})
        chains = dict(self._scan(b"chains", _chain, in_slot))
        chains.update({key: decision for key, decision in self._chains if in_slot(key)})
        pending = dict(self._scan(b"pending", _pending, in_slot))
        pending.update({key: status for key, status in self._pending if in_slot(key)})
        return list(transfers.values()), list(chains.items()), list(pending.items())

    def _scan(self, table: bytes, decode: Callable[[bytes], Any],
              in_slot: Callable[[str], bool] = lambda key: True) -> Iterator[tuple[str, Any]]:
        """Every entry of a table whose key is in the slot (a full scan: slot moves only)."""
        if self._tables is None:
            return
        with self._env.begin(db=self._tables[table], buffers=False) as txn:
            cursor = txn.cursor()
            for raw_key in cursor.iternext(keys=True, values=False):
                key = raw_key.decode()
                if in_slot(key):
                    yield key, decode(cursor.value()[SEQ.size:])

    def balance_history(self, account_id: str, since_ns: int, until_ns: int, limit: int
                        ) -> tuple[list[Balances], int | None]:
        if self._tables is None:
            return [], None
        prefix = account_id.encode() + SEPARATOR
        page: list[Balances] = []
        with self._env.begin(db=self._tables[b"balances"], buffers=False) as txn:
            cursor = txn.cursor()
            found = cursor.set_range(prefix + SEQ.pack(min(since_ns + 1, 2**64 - 1)))
            while found and cursor.key().startswith(prefix):
                point = _balances(cursor.value()[SEQ.size:])
                if point.timestamp > until_ns:
                    break
                if len(page) == limit:
                    return page, page[-1].timestamp
                page.append(point)
                found = cursor.next()
        return page, None

    def _last_balances(self, account_id: str) -> tuple[int, int, int, int] | None:
        if self._tables is None:
            return None
        prefix = account_id.encode() + SEPARATOR
        with self._read_txn() as txn:
            cursor = txn.cursor(db=self._tables[b"balances"])
            found = cursor.set_range(prefix + b"\xff")
            found = cursor.prev() if found else cursor.last()
            if not found or not bytes(cursor.key()).startswith(prefix):
                return None
            point = _balances(cursor.value()[SEQ.size:])
        return (point.debits_posted, point.credits_posted, point.debits_pending,
                point.credits_pending)

    # ---- storage ----

    @contextlib.contextmanager
    def _read_txn(self) -> Iterator[lmdb.Transaction]:
        """The rebuild's write transaction while recovery writes, else a fresh read one."""
        if self._rebuilding is not None:
            yield self._rebuilding
            return
        with self._env.begin(buffers=False) as txn:
            yield txn

    def _get(self, table: bytes, key: bytes) -> bytes | None:
        db = None if self._tables is None else self._tables.get(table)
        if db is None:  # no tables, or not this one (data of an older release, read only)
            return None
        current = self._rebuilding or self._reading
        if current is not None:
            raw = current.get(key, db=db)
        else:
            with self._env.begin(db=db, buffers=False) as txn:
                raw = txn.get(key)
        return None if raw is None else bytes(raw)

    def _require_tables(self) -> dict[bytes, Any]:
        if self._tables is None:
            raise RuntimeError("a read-only store takes no writes")
        return self._tables

    def cut_from(self, seq: int) -> int:
        """Delete every entry written by record `seq` or later (repair cuts the log there);
        returns how many. The applied sequence number becomes seq - 1."""
        tables = self._require_tables()
        removed = 0
        with self._env.begin(write=True) as txn:
            for name in TABLES[:-1]:
                doomed = [bytes(key) for key, value in txn.cursor(db=tables[name])
                          if entry_seq(value) >= seq]
                for key in doomed:
                    txn.delete(key, db=tables[name])
                removed += len(doomed)
            txn.put(APPLIED_SEQ, SEQ.pack(max(0, min(seq - 1, self.applied_seq))),
                    db=tables[b"meta"])
        self._cache.clear()
        return removed

    def copy_into(self, target: LmdbStore, up_to_seq: int) -> int:
        """Copy what records up to `up_to_seq` wrote into another store (a replay into a new
        directory takes its log's prefix and this with it); returns how many entries. A
        store without tables (data of an older release) copies nothing: the target then
        rebuilds from its log."""
        if self._tables is None:
            return 0
        tables = target._require_tables()
        copied = 0
        with self._env.begin(buffers=False) as source, target._env.begin(write=True) as txn:
            for name in TABLES[:-1]:
                if name not in self._tables:
                    continue
                for key, value in source.cursor(db=self._tables[name]):
                    if entry_seq(value) <= up_to_seq:
                        txn.put(bytes(key), bytes(value), db=tables[name])
                        copied += 1
            txn.put(APPLIED_SEQ, SEQ.pack(up_to_seq), db=tables[b"meta"])
        return copied


def put_all(txn: lmdb.Transaction, writes: list[Write]) -> None:
    """Store a batch's writes in the caller's transaction; a NEW write that finds an entry
    raises IndexConflict (the caller's transaction then aborts: nothing is written)."""
    for table, items, mode in writes:
        consumed, added = txn.cursor(db=table).putmulti(items, overwrite=mode == SET,
                                                        append=mode == APPEND)
        if mode in (NEW, APPEND) and added != consumed:
            raise IndexConflict(f"{consumed - added} of {consumed} entries were already stored")


def open_tables(env: lmdb.Environment, readonly: bool) -> dict[bytes, Any] | None:
    """The store's tables; None for a read-only look at a log written before they existed."""
    if readonly:
        with env.begin() as txn:
            names = {bytes(key) for key, _ in txn.cursor()}
        if not set(TABLES) - OPTIONAL_TABLES <= names:
            return None
        return {name: env.open_db(name, create=False) for name in TABLES if name in names}
    return {name: env.open_db(name, create=True) for name in TABLES}


def entry_seq(value: bytes) -> int:
    return int(SEQ.unpack(value[:SEQ.size])[0])
