"""Account ids to row numbers in about 40 bytes an id, where a dict of str to int takes ~140.

A shard holds every account it has ever opened. In a `dict[str, int]` each of them costs a
str object (~64 bytes for a 12-character id), an int object for its row (32 bytes past 256)
and the dict's own slot and index (~42 bytes): more than the account's 64-byte row itself
(bench/RESULTS.md, memory). Here the ids are bytes one after the other in one buffer, with
the offset where each ends, and an open-addressing table of 64-bit slots finds a row from an
id's hash: the high half of the hash as a tag (so nearly every probe that is not the id is
turned away without reading it), the low half the row number + 1 (0: an empty slot).

The table is at most half full, so a lookup reads 1.5 slots on average. Python's `hash` of a
str is fixed within a process (seeded per process), and the table is rebuilt in each process
from a snapshot or the log, never stored. Ids are never removed (accounts are never deleted).
"""

from __future__ import annotations

from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate

_SLOTS_MIN = 1 << 10
_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1
_HASH_MASK = (1 << 64) - 1
ROWS_MAX = _ROW_MASK - 1  # a slot holds row + 1 in its low half
_hash_of = hash  # a seam: tests make ids collide


class IdIndex:
    """Ids in the order they were added, each with its row: `ids[row]`, `row_of(id)`."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        encoded = [account_id.encode() for account_id in ids]
        if len(encoded) > ROWS_MAX:
            raise ValueError(f"more than {ROWS_MAX} accounts in one table")
        self._bytes = bytearray(b"".join(encoded))  # every id's UTF-8 bytes, one by one
        self._ends = array("Q", accumulate(map(len, encoded)))  # per row: where its id ends
        self._place_all(max(_SLOTS_MIN, 1 << (2 * len(encoded)).bit_length()))

    def __len__(self) -> int:
        return len(self._ends)

    def __contains__(self, account_id: object) -> bool:
        return isinstance(account_id, str) and self.row_of(account_id) is not None

    def __iter__(self) -> Iterator[str]:
        data, start = self._bytes, 0
        for end in self._ends:
            yield data[start:end].decode()
            start = end

    def id_of(self, row: int) -> str:
        start = self._ends[row - 1] if row else 0
        return self._bytes[start:self._ends[row]].decode()

    def row_of(self, account_id: str) -> int | None:
        """The id's row, or None."""
        hashed = _hash_of(account_id) & _HASH_MASK
        tag, slots, mask = hashed >> _ROW_BITS, self._slots, self._mask
        key = account_id.encode()
        slot = hashed & mask
        while held := slots[slot]:
            if held >> _ROW_BITS == tag:
                row = (held & _ROW_MASK) - 1
                start = self._ends[row - 1] if row else 0
                if self._bytes[start:self._ends[row]] == key:
                    return row
            slot = (slot + 1) & mask
        return None

    def add(self, account_id: str) -> int:
        """The new id's row (the next one). The caller has checked that it is new."""
        row = len(self._ends)
        if row >= ROWS_MAX:
            raise ValueError(f"more than {ROWS_MAX} accounts in one table")
        self._bytes += account_id.encode()
        self._ends.append(len(self._bytes))
        if 2 * (row + 1) > len(self._slots):
            self._place_all(2 * len(self._slots))  # this row included
        else:
            self._place(_hash_of(account_id) & _HASH_MASK, row)
        return row

    def _place(self, hashed: int, row: int) -> None:
        slots, mask = self._slots, self._mask
        slot = hashed & mask
        while slots[slot]:
            slot = (slot + 1) & mask
        slots[slot] = (hashed >> _ROW_BITS) << _ROW_BITS | (row + 1)

    def _place_all(self, size: int) -> None:
        """Every row again, in a table of `size` slots (a power of two)."""
        self._slots, self._mask = array("Q", [0]) * size, size - 1
        place = self._place
        for row, account_id in enumerate(self):
            place(_hash_of(account_id) & _HASH_MASK, row)
