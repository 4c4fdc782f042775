"""The event stream: every committed event, in commit order per shard, resumable by cursor.

Events come from each shard's log feed (`ShardLink.read_log`, served on the shard's reads
thread), never from its files: the ingress may run on another node than the shards, and
consumers never stall the write path. A cursor holds, per shard, the position after the last
event delivered: (record sequence number, index of the event in the record). Resuming from a
cursor gives every later event exactly once.

Across shards, events are merged by their record's commit timestamp: the order is exact
within a shard and approximate across shards; a consumer that needs to process each
account's events in order gets that, since an account lives on one shard.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import msgspec
import orjson

from actors.codec import decode_events
from actors.ledger.events import EVENT_TYPES, SLOT_EVENTS, Claim, Event, kind_of
from actors.ledger.limits import Limits
from actors.ledger.model import Account, Transfer
from actors.ledger.parts import SlotState
from actors.ledger.registry import ApiKey, Participant
from actors.messages import LogFeed
from switch.api.views import account_json, transfer_json
from switch.client.wire import account_of, transfer_of
from switch.routing.channel import ShardUnavailable
from switch.routing.transport import ShardLink

RECORDS_PER_READ_MAX = 1000
BYTES_PER_READ_MAX = 4 << 20  # per shard and request: bounds what one read holds in memory
SEQ_MAX = 2**63 - 1
READ_TIMEOUT_S = 5.0  # a restarting shard holds a read until it has recovered: 503 sooner


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
    if len(positions) != shards or any(not 1 <= seq <= SEQ_MAX or not 0 <= index <= SEQ_MAX
                                       for seq, index in positions):
        raise CursorInvalid("the cursor is not one this switch issued")
    return positions


def _shown(value: Any) -> Any:
    if isinstance(value, Transfer):
        return transfer_json(value)
    if isinstance(value, Account):
        return account_json(value)
    if isinstance(value, Limits | Claim | Participant | ApiKey):
        return {name: _shown(getattr(value, name)) for name in value.__struct_fields__}
    if isinstance(value, bytes):  # a key's secret hash
        return value.hex()
    if isinstance(value, list):
        return [_shown(item) for item in value]
    if isinstance(value, SlotState):  # a slot move's (the WAL tool shows it whole)
        return msgspec.to_builtins(value)
    return value


def event_json(event: Event) -> dict[str, Any]:
    """An event as the API and the WAL tool show it: its type and every field, by name."""
    shown: dict[str, Any] = {"type": kind_of(event)}
    for name in event.__struct_fields__:
        shown[name] = _shown(getattr(event, name))
    return shown


_EVENT_CLASSES: dict[str, type] = {str(cls.__struct_config__.tag): cls for cls in EVENT_TYPES}


def _read(value: Any, kind: Any) -> Any:
    """A shown value back into the type its event field declares."""
    if value is None:
        return None
    text = str(kind)
    if isinstance(value, list) and "list" in text:
        return [_read(item, text.removeprefix("list[").removesuffix("]")) for item in value]
    if "SlotState" in text:
        return msgspec.convert(value, SlotState)
    if isinstance(value, dict):
        if "Transfer" in text:
            return transfer_of(value)
        if "Account" in text:
            return account_of(value)
        if "Limits" in text:
            return Limits(**value)
        if "Participant" in text:
            return Participant(**value)
        if "ApiKey" in text:
            return ApiKey(**{**value, "secret_hash": bytes.fromhex(value["secret_hash"])})
        if "Claim" in text:
            fields = dict(value)
            fields["resolving"] = _read(fields.get("resolving"), "Transfer")
            return Claim(**fields)
    return value


def event_from_json(shown: dict[str, Any]) -> Event:
    """An event as `event_json` showed it (the API and `payswitch wal export`), back: an
    export holds every field, so it rebuilds the ledger it came from."""
    cls = _EVENT_CLASSES[shown["type"]]
    kinds = {field.name: field.type for field in msgspec.structs.fields(cls)}
    # An export made before a field was added lacks it: the field's default then.
    event: Event = cls(**{name: _read(shown[name], kinds[name]) for name in kinds
                          if name in shown})
    return event


@dataclass(frozen=True, slots=True)
class Delivered:
    shard: int
    seq: int
    index: int
    timestamp_ns: int
    event: Event

    def json(self) -> dict[str, Any]:
        return {"shard": self.shard, "seq": self.seq, "index": self.index,
                "timestamp_ns": self.timestamp_ns, "event": event_json(self.event)}


async def _read_log(shard: int, link: ShardLink, from_seq: int, records_max: int,
                    bytes_max: int) -> LogFeed:
    try:
        return await asyncio.wait_for(link.read_log(from_seq, records_max, bytes_max),
                                      READ_TIMEOUT_S)
    except Exception as error:  # its process died or is starting again: 503, not a bug
        raise ShardUnavailable(f"shard {shard} is unavailable ({error!r})") from error


class EventStream:
    def __init__(self, links: Sequence[ShardLink]) -> None:
        self.links = list(links)

    @property
    def shards(self) -> int:
        return len(self.links)

    async def latest(self) -> str:
        """A cursor at the current end of every shard's log: only later events follow it."""
        feeds = await asyncio.gather(*(_read_log(shard, link, SEQ_MAX, 1, 1)
                                       for shard, link in enumerate(self.links)))
        return encode_cursor([(feed.last_seq + 1, 0) for feed in feeds])

    async def read(self, cursor: str, limit: int) -> tuple[list[Delivered], str]:
        """Up to `limit` events after the cursor, and the cursor after them."""
        positions = decode_cursor(cursor, self.shards)
        found = await asyncio.gather(*(
            self._after(shard, link, *positions[shard], limit)
            for shard, link in enumerate(self.links)))
        candidates = [delivered for shard_found in found for delivered in shard_found]
        candidates.sort(key=lambda d: (d.timestamp_ns, d.shard, d.seq, d.index))
        chosen = candidates[:limit]
        for delivered in chosen:
            positions[delivered.shard] = (delivered.seq, delivered.index + 1)
        return chosen, encode_cursor(positions)

    @staticmethod
    async def _after(shard: int, link: ShardLink, seq: int, index: int, limit: int
                     ) -> list[Delivered]:
        feed = await _read_log(shard, link, seq, min(limit, RECORDS_PER_READ_MAX),
                               BYTES_PER_READ_MAX)
        found: list[Delivered] = []
        for record in feed.records:
            events = decode_events(record.payload)
            start = index if record.seq == seq else 0
            found.extend(Delivered(shard, record.seq, i, record.timestamp_ns, events[i])
                         for i in range(start, len(events))
                         if not isinstance(events[i], SLOT_EVENTS))  # the switch's own
            if len(found) >= limit:
                break
        return found


