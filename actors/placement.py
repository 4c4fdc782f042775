"""Where an id lives: slot = crc32(id) mod slots, then slot -> shard by a table.

The router routes with this table and the WAL tool uses it to find a transfer's home when it
audits a stopped switch's data, so both must agree: this module is the one definition.
"""

from __future__ import annotations

import zlib


def slot_of(key: str, slots: int) -> int:
    """Stable across processes and restarts (unlike Python's salted hash())."""
    return zlib.crc32(key.encode()) % slots


def default_slot_table(shards: int, slots: int) -> list[int]:
    """Slots dealt round-robin to shards: the layout until slots are moved explicitly."""
    assert 0 < shards <= slots
    return [slot % shards for slot in range(slots)]


class Placement:
    def __init__(self, slot_table: list[int]) -> None:
        self.slot_table = slot_table
        self._slots = len(slot_table)

    def shard_of(self, key: str) -> int:
        return self.slot_table[zlib.crc32(key.encode()) % self._slots]  # slot_of, inlined: hot
