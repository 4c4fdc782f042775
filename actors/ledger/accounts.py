"""A shard's accounts, as packed rows, with the accounts in use as structs: what keeps memory
per account small without slowing the ledger down.

An `Account` struct with its strings and integers costs a shard about 600 bytes in CPython
(a 112-byte struct, separate int objects for its balances, timestamp and history head, its
own copies of the ledger and owner strings, a dict slot). Here an account at rest is a row of
64 bytes in one buffer (balances, history head and timestamp as unsigned 64-bit integers, code
and flags as 32-bit ones, ledger and owner as indexes into lists of the few distinct names)
and its id in an `IdIndex` (id_index.py: ~37 bytes, where a dict entry with its str and int
took ~124): about 101 bytes an account. A row is one
piece of memory, so reading or writing one touches one or two cache lines (a column per field
touched twelve places, and cost twice as much on a miss).

The ledger reads and changes `Account` structs, as it always did: `get` makes one from its
row the first time an account is used and keeps it *live*, so a hot account is a dict lookup
like before (reading the buffer through a proxy on every access cost a third of a shard's
throughput: bench/RESULTS.md). The live struct is the account's truth until it is written
back to its row: `trim`, between batches, writes back and lets go of the oldest once more
than `live_max` are live (oldest: made live first, not least used); `snapshot_rows` writes
back every one first.

Rows are never removed (accounts are never deleted); the index keeps ids in row order, which
gives the ids of a snapshot's rows.
"""

from __future__ import annotations

import struct
import sys
from array import array
from collections import Counter
from collections.abc import Iterator
from operator import attrgetter

import msgspec

from actors.ledger.id_index import IdIndex
from actors.ledger.model import Account

# A row, little-endian: what a live struct can change first (written back in one piece), then
# what is fixed when the account is created, then padding to 64 bytes.
MUTABLE = struct.Struct("<5QI")  # debits/credits posted/pending, history head, flags
ROW = struct.Struct("<5QIQIIB3x")  # ... then timestamp, code, owner index, ledger index
ROW_BYTES = ROW.size
_OWNER_WORD = struct.calcsize("<5QIQI") // 4  # the owner index, as the n-th u32 of a row
_LEDGER_OFFSET = struct.calcsize("<5QIQII")  # the ledger index, a byte
_MUTABLE_FIELDS = attrgetter("debits_posted", "credits_posted", "debits_pending",
                             "credits_pending", "history_head", "flags")
LIVE_MAX_DEFAULT = 32_768  # live structs kept per shard between batches (~150 B each)
LEDGERS_MAX = 256  # a row's ledger index is one byte


class AccountRows(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The table as a snapshot holds it: the rows' bytes (`ROW` each), the distinct ledger and
    owner names the rows index, user data of the rows that have some, and the ids in row
    order: since snapshot format 6 as the index's buffers (`IdIndex.buffers`), before it as a
    list (`ids`, empty since)."""

    ids: list[str]
    rows: bytes
    ledgers: list[str]
    owners: list[str]
    user_data: dict[int, str]
    id_bytes: bytes = b""
    id_ends: bytes = b""


class AccountTable:
    """Every account of a shard: `get`, `[]`, `in`, `len`, `values` as a dict of accounts
    would answer them, `add` to create one, `trim` between batches."""

    def __init__(self, live_max: int | None = None) -> None:
        self.live_max = LIVE_MAX_DEFAULT if live_max is None else live_max
        self.live: dict[str, Account] = {}  # in use: their truth until written back
        self._live_rows: list[int] = []  # their rows, in the same (insertion) order
        self.rows = IdIndex()  # id -> row number, ids in row order
        self.data = bytearray()  # ROW_BYTES per row
        self.ledgers: list[str] = []
        self.owners: list[str] = []
        self._ledger_of: dict[str, int] = {}
        self._owner_of: dict[str, int] = {}
        self.user_data: dict[int, str] = {}
        self._owned: Counter[int] = Counter()  # accounts per owner index

    # ---- as a dict of accounts ----

    def __len__(self) -> int:
        return len(self.rows)

    def __contains__(self, account_id: object) -> bool:
        return account_id in self.rows

    def __bool__(self) -> bool:
        return bool(self.rows)

    def __iter__(self) -> Iterator[str]:
        return iter(self.rows)

    def get(self, account_id: str) -> Account | None:
        """The account, live (changes to it are the account's), or None."""
        account = self.live.get(account_id)
        if account is not None:
            return account
        row = self.rows.row_of(account_id)
        if row is None:
            return None
        account = self.live[account_id] = self._struct(account_id, row)
        self._live_rows.append(row)
        return account

    def __getitem__(self, account_id: str) -> Account:
        account = self.get(account_id)
        if account is None:
            raise KeyError(account_id)
        return account

    def values(self) -> Iterator[Account]:
        """Every account as it is now, to read: live ones as they are, the others made from
        their rows (not kept live: a change to one of those is lost)."""
        live = self.live
        for row, account_id in enumerate(self.rows):
            yield live.get(account_id) or self._struct(account_id, row)

    def at_rest(self, account_id: str) -> Account:
        """The account as its row holds it (a live struct may be newer)."""
        row = self.rows.row_of(account_id)
        if row is None:
            raise KeyError(account_id)
        return self._struct(account_id, row)

    # ---- rows ----

    def add(self, account: Account) -> Account:
        """A new account's row; returns it live (a struct of its own: `account` is not kept)."""
        if account.id in self.rows:
            raise ValueError(f"account {account.id} is already in the table")
        if account.ledger not in self._ledger_of and len(self.ledgers) == LEDGERS_MAX:
            raise ValueError(f"more than {LEDGERS_MAX} ledgers on one shard")
        owner_index = self._owner_of.get(account.owner, len(self.owners))
        ledger_index = self._ledger_of.get(account.ledger, len(self.ledgers))
        try:  # before anything is kept: a row is added whole or not at all
            row_bytes = ROW.pack(*_MUTABLE_FIELDS(account), account.timestamp, account.code,
                                 owner_index, ledger_index)
        except struct.error:
            raise ValueError(f"account {account.id} has a field outside its row's range"
                             ) from None
        self._name_index(account.owner, self.owners, self._owner_of)
        self._name_index(account.ledger, self.ledgers, self._ledger_of)
        row = self.rows.add(account.id)
        self.data += row_bytes
        self._owned[owner_index] += 1
        if account.user_data:
            self.user_data[row] = account.user_data
        return self[account.id]

    def owned(self, owner: str) -> int:
        """How many accounts of this table `owner` owns."""
        index = self._owner_of.get(owner)
        return 0 if index is None else self._owned[index]

    def _count_owners(self) -> None:
        """Counted from the rows where a table is made from rows (a snapshot, a slot leaving:
        work of the table's size there already), not inside a batch."""
        self._owned = Counter(self._owner_indexes())

    def _owner_indexes(self) -> array[int]:
        indexes = array("I", self.data)[_OWNER_WORD::ROW_BYTES // 4]
        if sys.byteorder != "little":  # rows are little-endian
            indexes.byteswap()
        return indexes

    @staticmethod
    def _name_index(name: str, names: list[str], index_of: dict[str, int]) -> None:
        if name not in index_of:
            index_of[name] = len(names)
            names.append(name)

    def _struct(self, account_id: str, row: int) -> Account:
        (debits_posted, credits_posted, debits_pending, credits_pending, history_head, flags,
         timestamp, code, owner_index, ledger_index) = ROW.unpack_from(self.data, row * ROW_BYTES)
        return Account(account_id, self.ledgers[ledger_index], code, self.owners[owner_index],
                       flags, self.user_data.get(row, "") if self.user_data else "",
                       timestamp, debits_posted, credits_posted, debits_pending,
                       credits_pending, history_head)

    # ---- live structs ----

    def trim(self) -> None:
        """Between batches (no struct of this table is held by anyone then): past `live_max`
        live accounts, write back all but the newest `live_max / 2` and let them go (half at
        a time, so a batch pays for this once in many)."""
        if len(self.live) > self.live_max:
            accounts = list(self.live.values())
            let_go = len(accounts) - self.live_max // 2
            self._write_back(accounts[:let_go], self._live_rows[:let_go])
            self.live = {account.id: account for account in accounts[let_go:]}
            self._live_rows = self._live_rows[let_go:]

    def _write_back(self, accounts: list[Account], rows: list[int]) -> None:
        # Outside a row's range (below zero, past 2^64 - 1): struct.error. The ledger keeps
        # balances within BALANCE_MAX, so that is a bug, never a client's input.
        data, pack_into, fields = self.data, MUTABLE.pack_into, _MUTABLE_FIELDS
        for account, row in zip(accounts, rows, strict=True):
            pack_into(data, row * ROW_BYTES, *fields(account))

    def without(self, leaving: set[str]) -> AccountTable:
        """The table less these accounts (they moved to another shard with their slot): the
        other rows copied as they are, in order (a slot move's one removal of rows)."""
        self._write_back(list(self.live.values()), self._live_rows)
        table = AccountTable(self.live_max)
        kept_ids: list[str] = []
        kept_rows = bytearray()
        data = self.data
        for row, account_id in enumerate(self.rows):
            if account_id in leaving:
                continue
            if row in self.user_data:
                table.user_data[len(kept_ids)] = self.user_data[row]
            kept_ids.append(account_id)
            kept_rows += data[row * ROW_BYTES:(row + 1) * ROW_BYTES]
        table.rows = IdIndex(kept_ids)
        table.data = kept_rows
        table.ledgers, table.owners = list(self.ledgers), list(self.owners)
        table._ledger_of, table._owner_of = dict(self._ledger_of), dict(self._owner_of)
        table._count_owners()
        return table

    # ---- snapshots ----

    def snapshot_rows(self) -> AccountRows:
        """Every account as rows (live ones written back first; they stay live)."""
        self._write_back(list(self.live.values()), self._live_rows)
        id_bytes, id_ends = self.rows.buffers()
        return AccountRows(ids=[], rows=bytes(self.data), ledgers=list(self.ledgers),
                           owners=list(self.owners), user_data=dict(self.user_data),
                           id_bytes=id_bytes, id_ends=id_ends)

    @classmethod
    def from_rows(cls, snapshot: AccountRows, live_max: int | None = None) -> AccountTable:
        """Raises ValueError for rows that are not a table (their count, an id twice)."""
        if snapshot.ids and (snapshot.id_bytes or snapshot.id_ends):
            raise ValueError("a snapshot's ids are both a list and buffers")
        table = cls(live_max)
        table.rows = (IdIndex(snapshot.ids) if snapshot.ids
                      else IdIndex.from_buffers(snapshot.id_bytes, snapshot.id_ends))
        if len(snapshot.rows) != len(table.rows) * ROW_BYTES:
            raise ValueError(f"a snapshot holds {len(snapshot.rows)} bytes of rows for "
                             f"{len(table.rows)} accounts of {ROW_BYTES} bytes")
        table.data = bytearray(snapshot.rows)
        table.ledgers, table.owners = list(snapshot.ledgers), list(snapshot.owners)
        table._ledger_of = {name: i for i, name in enumerate(table.ledgers)}
        table._owner_of = {name: i for i, name in enumerate(table.owners)}
        table.user_data = dict(snapshot.user_data)
        table._check_names()
        table._count_owners()
        return table

    def _check_names(self) -> None:
        """Every row names a ledger and an owner the table has, and user data belongs to rows
        that exist: else ValueError (a damaged snapshot), not an IndexError later."""
        rows = len(self.rows)
        if not rows:
            return
        ledger_indexes = self.data[_LEDGER_OFFSET::ROW_BYTES]  # one byte a row
        owner_indexes = self._owner_indexes()
        if (max(ledger_indexes) >= len(self.ledgers) or max(owner_indexes) >= len(self.owners)
                or any(not 0 <= row < rows for row in self.user_data)):
            raise ValueError("a snapshot's rows name ledgers, owners or rows it does not hold")

    @classmethod
    def of(cls, accounts: Iterator[Account] | list[Account], live_max: int | None = None
           ) -> AccountTable:
        table = cls(live_max)
        for account in accounts:
            table.add(account)
        table.trim()
        return table
