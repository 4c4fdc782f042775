"""Every byte the switch writes or sends, encoded and decoded through the declared types.

- A log record's payload: the batch's events. Format 2 is one version byte (2) then the
  events as msgpack; format 1 (releases up to 48c71b7) was an orjson array, which starts
  with `[`. A payload of any other format is refused (`FormatUnknown`), never skipped.
- A snapshot's body: the ledger's live state (actors/ledger/snapshot.py), versioned alike:
  format 4 holds accounts as packed rows (actors/ledger/accounts.py), format 3 as a list of
  structs with their history heads, format 2 without heads (read alike: heads are 0, and
  history is read from the table keyed by account); a format-1 body is an orjson object (it
  starts with `{`).
- A call to a shard: the commands (actors/messages.py) as msgpack; its reply a `BatchReply`.

msgpack holds integers of 64 bits; amounts and balances fit (they are checked at the edge and
by the ledger), and sums that may not (ledger totals) travel as decimal strings.
"""

from __future__ import annotations

import msgspec

from actors import legacy
from actors.ledger.events import Event
from actors.ledger.snapshot import Snapshot
from actors.ledger.state import LedgerState
from actors.messages import BatchReply, Command

# Format 2: msgpack records (events as tagged arrays); format 3 adds the registry's events and
# trailing fields (who acted), format 4 `attempt_fenced`, format 5 `alarm_threshold_set` and
# `ndc_alarm` (and a participant's alarm thresholds), format 6 staged transfers (a
# `transfer_reserved` with the home role outside a chain, settled by its home's
# `transfer_committed` or `reservation_voided`, which an older release would apply as a
# second hold); all read by the same decoder (fields added since have defaults). A new event
# kind, or a new meaning of one, is a new format: an older release then stops with "upgrade
# payswitch" instead of failing on a tag it does not know or misreading one.
FORMAT_VERSION = 8  # of records written by this release (7: slot moves' events; 8: a
# voided reservation carries its part, read from format 7 as None)
FORMAT_MSGPACK_OLDEST = 2
FORMAT_BYTE = bytes([FORMAT_VERSION])
SNAPSHOT_FORMAT = 10  # of snapshots written by this release (6: account ids as two buffers;
# 7: fenced attempts, which an older release would drop; 8: participants' alarm thresholds;
# 9: may hold staged transfers, which an older release would leave in doubt; 10: slots
# leaving or gone, whose commands an older release would run)
LEGACY_RECORD_START = ord("[")  # format 1: an orjson array of events
LEGACY_SNAPSHOT_START = ord("{")  # format 1: an orjson object

_encoder = msgspec.msgpack.Encoder()
_events = msgspec.msgpack.Decoder(list[Event])
_snapshot = msgspec.msgpack.Decoder(Snapshot)
_commands = msgspec.msgpack.Decoder(list[Command])
_reply = msgspec.msgpack.Decoder(BatchReply)


class FormatUnknown(ValueError):
    """A record or snapshot of a format this release cannot read."""


def encode_events(events: list[Event]) -> bytes:
    if not events:
        raise ValueError("a record holds at least one event")
    return FORMAT_BYTE + _encoder.encode(events)


def format_of(payload: bytes, newest: int = FORMAT_VERSION) -> int:
    """The format of a record's payload (or with `newest`=SNAPSHOT_FORMAT, a snapshot's)."""
    first = payload[0] if payload else -1
    if FORMAT_MSGPACK_OLDEST <= first <= newest:
        return first
    if first in (LEGACY_RECORD_START, LEGACY_SNAPSHOT_START):
        return 1
    raise FormatUnknown(f"format {first} is not one this release reads (it reads 1 to "
                        f"{newest}): upgrade payswitch to read this data")


def decode_events(payload: bytes) -> list[Event]:
    """A record's events, whatever format it was written in; raises FormatUnknown or
    msgspec.ValidationError (a record that does not hold what its format declares)."""
    if format_of(payload) == 1:
        return legacy.events(payload)
    events = _events.decode(memoryview(payload)[1:])
    if not events:
        raise msgspec.ValidationError("a record holds at least one event")
    return events


def apply_payload(ledger: LedgerState, payload: bytes) -> None:
    """Apply one record's events: what recovery, replay and verification all run. A record
    is a batch: its accounts may be let go of after it (`AccountTable.trim`)."""
    apply = ledger.apply
    for event in decode_events(payload):
        apply(event)
    ledger.accounts.trim()


def encode_snapshot(snapshot: Snapshot) -> bytes:
    return bytes([SNAPSHOT_FORMAT]) + _encoder.encode(snapshot)


def snapshot_format(body: bytes) -> int:
    return format_of(body, SNAPSHOT_FORMAT)


def decode_snapshot(body: bytes) -> tuple[Snapshot, legacy.LegacyIndex | None]:
    """The live state, and for a format-1 snapshot what it held that now lives in the store."""
    if snapshot_format(body) == 1:
        return legacy.snapshot(body)
    return _snapshot.decode(memoryview(body)[1:]), None


def encode_commands(commands: list[Command]) -> bytes:
    return _encoder.encode(commands)


def decode_commands(blob: bytes) -> list[Command]:
    return _commands.decode(blob)


def encode_reply(reply: BatchReply) -> bytes:
    return _encoder.encode(reply)


def decode_reply(blob: bytes) -> BatchReply:
    return _reply.decode(blob)
