"""Events as log payloads: one record holds the events of one batch, as an orjson array."""

from __future__ import annotations

from typing import Any

import orjson

from actors.ledger.ledger import Event, Ledger


def encode_events(events: list[Event]) -> bytes:
    return orjson.dumps(events)


def decode_events(payload: bytes) -> list[Event]:
    events: list[Event] = orjson.loads(payload)
    assert isinstance(events, list) and events, "a record holds a non-empty list of events"
    return events


def apply_payload(ledger: Ledger, payload: bytes) -> None:
    """Apply one record's events: what recovery, replay and verification all run."""
    for event in decode_events(payload):
        ledger.apply(event)


def decode_snapshot_body(body: bytes) -> dict[str, Any]:
    data: dict[str, Any] = orjson.loads(body)
    return data
