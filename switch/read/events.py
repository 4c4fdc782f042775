"""The event stream: every committed event, in commit order per shard, resumable by cursor.

The ingress reads the shards' logs itself, read-only (LMDB serves readers in other processes
without locking the writer), so consumers never stall the write path. A cursor holds, per
shard, the position after the last event delivered: (record sequence number, index of the
event in the record). Resuming from a cursor gives every later event exactly once.

Across shards, events are merged by their record's commit timestamp (one clock per machine):
the order is exact within a shard and approximate across shards; a consumer that needs to
process each account's events in order gets that, since an account lives on one shard.
"""

from __future__ import annotations

import base64
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson

from actors.codec import decode_events
from persistence.layout import shard_directories
from persistence.lmdb_log import LmdbLog
from persistence.records import CorruptRecord
from switch.api.views import account_json, transfer_json

RECORDS_PER_READ_MAX = 1000


class CursorInvalid(ValueError):
    """A cursor this switch did not issue (or one for another number of shards)."""


Position = tuple[int, int]  # (seq of the record, index of the next event in it)


def encode_cursor(positions: list[Position]) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(positions)).decode().rstrip("=")


def decode_cursor(text: str, shards: int) -> list[Position]:
    if text in ("", "0"):
        return [(1, 0)] * shards
    try:
        padded = text + "=" * (-len(text) % 4)
        raw = orjson.loads(base64.urlsafe_b64decode(padded.encode()))
        positions = [(int(seq), int(index)) for seq, index in raw]
    except (ValueError, TypeError, orjson.JSONDecodeError):
        raise CursorInvalid("the cursor is not one this switch issued") from None
    if len(positions) != shards or any(seq < 1 or index < 0 for seq, index in positions):
        raise CursorInvalid("the cursor is not one this switch issued")
    return positions


def event_json(event: list[Any]) -> dict[str, Any]:
    """An event as the API and the WAL tool show it."""
    kind = event[0]
    if kind == "account_created":
        return {"type": kind, "account": account_json(event[1])}
    if kind in ("transfer_committed", "transfer_reserved"):
        shown = {"type": kind, "transfer": transfer_json(event[1]), "roles": event[2],
                 "attempt": event[3]}
        if len(event) > 4 and event[4]:
            shown["chain"] = event[4]
        return shown
    if kind in ("reservation_posted", "part_committed"):
        return {"type": kind, "transfer_id": event[1], "timestamp": event[2],
                "amount": event[3] if len(event) > 3 and event[3] else None}
    if kind == "chain_committed":
        return {"type": kind, "chain": event[1], "timestamps": event[3], "amounts": event[4]}
    if kind == "limits_changed":
        return {"type": kind, "account_id": event[1], "limits": event[2]}
    return {"type": kind, "transfer_id": event[1]}


@dataclass(frozen=True, slots=True)
class Delivered:
    shard: int
    seq: int
    index: int
    timestamp_ns: int
    event: list[Any]

    def json(self) -> dict[str, Any]:
        return {"shard": self.shard, "seq": self.seq, "index": self.index,
                "timestamp_ns": self.timestamp_ns, "event": event_json(self.event)}


class EventStream:
    def __init__(self, data_dir: Path) -> None:
        self.data_dir = data_dir
        self._logs: list[LmdbLog] | None = None

    def _open(self) -> list[LmdbLog]:
        if self._logs is None:
            self._logs = [LmdbLog(directory, 1 << 20, readonly=True)
                          for _, directory in shard_directories(self.data_dir)]
        return self._logs

    @property
    def shards(self) -> int:
        return len(self._open())

    def latest(self) -> str:
        """A cursor at the current end of every shard's log: only later events follow it."""
        return encode_cursor([(log.tail_seq() + 1, 0) for log in self._open()])

    def read(self, cursor: str, limit: int) -> tuple[list[Delivered], str]:
        """Up to `limit` events after the cursor, and the cursor after them."""
        logs = self._open()
        positions = decode_cursor(cursor, len(logs))
        candidates: list[Delivered] = []
        for shard, (log, (seq, index)) in enumerate(zip(logs, positions, strict=True)):
            candidates.extend(self._after(shard, log, seq, index, limit))
        candidates.sort(key=lambda d: (d.timestamp_ns, d.shard, d.seq, d.index))
        chosen = candidates[:limit]
        for delivered in chosen:
            positions[delivered.shard] = (delivered.seq, delivered.index + 1)
        return chosen, encode_cursor(positions)

    @staticmethod
    def _after(shard: int, log: LmdbLog, seq: int, index: int, limit: int) -> list[Delivered]:
        found: list[Delivered] = []
        for record in log.records_from(seq, min(limit, RECORDS_PER_READ_MAX)):
            events = decode_events(record.payload)
            start = index if record.seq == seq else 0
            found.extend(Delivered(shard, record.seq, i, record.timestamp_ns, events[i])
                         for i in range(start, len(events)))
            if len(found) >= limit:
                break
        return found

    def close(self) -> None:
        for log in self._logs or []:
            log.close()
        self._logs = None


__all__ = ["CorruptRecord", "CursorInvalid", "EventStream", "event_json"]
