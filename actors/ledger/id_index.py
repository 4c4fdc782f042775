"""Account ids to row numbers in about 37 bytes an id, where a dict of str to int takes ~124.

A shard holds every account it has ever opened. In a `dict[str, int]` each of them costs a
str object (~64 bytes for a 12-character id), an int object for its row (32 bytes past 256)
and the dict's own slot and index (~42 bytes): more than the account's 64-byte row itself
(bench/RESULTS.md, memory). Here the ids are bytes one after the other in one buffer, with
the offset where each ends, and an open-addressing table of 64-bit slots finds a row from an
id's hash: the high half of the hash as a tag (so nearly every probe that is not the id is
turned away without reading it), the low half the row number + 1 (0: an empty slot).

The table is at most half full, so a lookup reads 1.5 slots on average. Python's `hash` of a
bytes object is fixed within a process (seeded per process), and the table is rebuilt in each
process from a snapshot or the log, never stored: a snapshot holds the ids' bytes and their
ends (`buffers`), copied in milliseconds where listing 500,000 ids as str took a shard's
thread ~95 ms (`python -m bench.id_index`). Ids are never removed (accounts are never deleted).
"""

from __future__ import annotations

import sys
from array import array
from collections.abc import Iterable, Iterator
from itertools import accumulate, chain

_SLOTS_MIN = 1 << 10
_ROW_BITS = 32
_ROW_MASK = (1 << _ROW_BITS) - 1
_HASH_MASK = (1 << 64) - 1
ROWS_MAX = _ROW_MASK - 1  # a slot holds row + 1 in its low half
_hash_of = hash  # a seam: tests make ids collide


class IdIndex:
    """Ids in the order they were added, each with its row: `id_of(row)`, `row_of(id)`."""

    def __init__(self, ids: Iterable[str] = ()) -> None:
        encoded = [account_id.encode() for account_id in ids]
        if not all(encoded):
            raise ValueError("an id is at least one character")
        self._bytes = bytearray(b"".join(encoded))  # every id's UTF-8 bytes, one by one
        self._ends = array("Q", accumulate(map(len, encoded)))  # per row: where its id ends
        self._place_all()

    @classmethod
    def from_buffers(cls, id_bytes: bytes, id_ends: bytes) -> IdIndex:
        """The index `buffers` gave (a snapshot's): raises ValueError if they do not hold one
        (ends not rising, past the bytes, an empty id, an id twice)."""
        index = cls.__new__(cls)
        index._bytes = bytearray(id_bytes)
        index._ends = array("Q")
        index._ends.frombytes(id_ends[:len(id_ends) - len(id_ends) % 8])
        if sys.byteorder != "little":
            index._ends.byteswap()
        ends = index._ends
        rising = all(start < end for start, end in zip(chain([0], ends), ends, strict=False))
        if len(id_ends) % 8 or not rising or (ends[-1] if ends else 0) != len(id_bytes):
            raise ValueError("a snapshot's ids are not a list of ids")
        if not id_bytes.isascii():  # ids are ASCII (ID_PATTERN); others must be UTF-8 each
            try:
                list(index)
            except UnicodeDecodeError:
                raise ValueError("a snapshot's ids are not UTF-8") from None
        index._place_all()
        return index

    def buffers(self) -> tuple[bytes, bytes]:
        """The ids' bytes and where each ends (u64, little-endian): what a snapshot holds."""
        ends = array("Q", self._ends)
        if sys.byteorder != "little":
            ends.byteswap()
        return bytes(self._bytes), ends.tobytes()

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
        if not 0 <= row < len(self._ends):
            raise IndexError(f"no row {row}")
        return self._key_at(row).decode()

    def _key_at(self, row: int) -> bytearray:
        return self._bytes[self._ends[row - 1] if row else 0:self._ends[row]]

    def row_of(self, account_id: str) -> int | None:
        """The id's row, or None."""
        key = account_id.encode()
        hashed = _hash_of(key) & _HASH_MASK
        tag, slots, mask = hashed >> _ROW_BITS, self._slots, self._mask
        slot = hashed & mask
        while held := slots[slot]:
            if held >> _ROW_BITS == tag:  # `_key_at`, inlined: this is the hot path
                row = (held & _ROW_MASK) - 1
                if self._bytes[self._ends[row - 1] if row else 0:self._ends[row]] == key:
                    return row
            slot = (slot + 1) & mask
        return None

    def add(self, account_id: str) -> int:
        """The new id's row (the next one); ValueError, and nothing changed, if it is empty
        or already here."""
        row = len(self._ends)
        if row >= ROWS_MAX:
            raise ValueError(f"more than {ROWS_MAX} accounts in one table")
        key = account_id.encode()
        if not key:
            raise ValueError("an id is at least one character")
        self._bytes += key
        self._ends.append(len(self._bytes))
        try:
            if 2 * (row + 1) > len(self._slots):
                self._place_all()  # this row included
            else:
                self._place(key, row)
        except ValueError:
            del self._bytes[-len(key):]
            self._ends.pop()
            self._place_all()  # as it was
            raise
        return row

    def _place(self, key: bytes, row: int) -> None:
        hashed = _hash_of(key) & _HASH_MASK
        tag, slots, mask = hashed >> _ROW_BITS, self._slots, self._mask
        slot = hashed & mask
        while held := slots[slot]:
            if held >> _ROW_BITS == tag and self._key_at((held & _ROW_MASK) - 1) == key:
                raise ValueError(f"id {key.decode()!r} is in the index twice")
            slot = (slot + 1) & mask
        slots[slot] = tag << _ROW_BITS | (row + 1)

    def _place_all(self) -> None:
        """Every row again, in a table of slots at most half full."""
        count = len(self._ends)
        if count > ROWS_MAX:
            raise ValueError(f"more than {ROWS_MAX} accounts in one table")
        size = max(_SLOTS_MIN, 1 << (2 * count).bit_length())
        self._slots, self._mask = array("Q", [0]) * size, size - 1
        data, start, place = bytes(self._bytes), 0, self._place
        for row, end in enumerate(self._ends):
            place(data[start:end], row)
            start = end
