"""Log records and snapshot envelopes: encoding, checksums and the hash chain.

A record is one committed batch of events:

    header  seq u64 | timestamp_ns u64 | payload_bytes u32      (big-endian)
    payload the batch's events, as the shard encoded them
    chain   16 bytes: blake2b(previous record's chain + header + payload)
    crc32   of everything before it

The checksum catches a damaged record on its own; the chain catches a record that was
replaced, dropped or reordered even when its own checksum is valid. Both are asserted when
a record is written and checked again when it is read.
"""

from __future__ import annotations

import hashlib
import struct
import zlib
from dataclasses import dataclass

HEADER = struct.Struct(">QQI")
CRC = struct.Struct(">I")
CHAIN_BYTES = 16
GENESIS_CHAIN = bytes(CHAIN_BYTES)
RECORD_OVERHEAD_BYTES = HEADER.size + CHAIN_BYTES + CRC.size
_HEADER_BYTES, _CRC_BYTES = HEADER.size, CRC.size
_unpack_header, _crc32, _blake2b = HEADER.unpack_from, zlib.crc32, hashlib.blake2b
PAYLOAD_BYTES_MAX = 2**31
SNAPSHOT_HEADER = struct.Struct(">Q16sQ")  # seq, log chain at seq, body bytes


class CorruptRecord(Exception):
    """A stored record or snapshot fails its checksum, its chain, its length or its sequence."""

    def __init__(self, seq: int, reason: str) -> None:
        super().__init__(f"record {seq}: {reason}")
        self.seq = seq
        self.reason = reason

    def __reduce__(self) -> tuple[type[CorruptRecord], tuple[int, str]]:
        return CorruptRecord, (self.seq, self.reason)  # so it crosses process boundaries intact


@dataclass(slots=True)
class Record:
    """Never changed once decoded (not frozen: frozen construction is slower, and recovery
    builds one per record)."""

    seq: int
    timestamp_ns: int
    payload: bytes
    chain: bytes


def chain_of(prev_chain: bytes, body: bytes) -> bytes:
    return hashlib.blake2b(prev_chain + body, digest_size=CHAIN_BYTES).digest()


def encode_record(seq: int, timestamp_ns: int, payload: bytes, prev_chain: bytes) -> Record:
    """Build a record; returns it with its chain (the raw bytes are `raw_of(record)`)."""
    # Checked however Python runs (-O drops asserts): what goes to disk is a record.
    if not (seq > 0 and timestamp_ns > 0 and 0 < len(payload) < PAYLOAD_BYTES_MAX
            and len(prev_chain) == CHAIN_BYTES):
        raise ValueError(f"not a record: seq {seq}, timestamp {timestamp_ns}, "
                         f"{len(payload)} bytes of payload")
    body = HEADER.pack(seq, timestamp_ns, len(payload)) + payload
    return Record(seq, timestamp_ns, payload, chain_of(prev_chain, body))


def raw_of(record: Record) -> bytes:
    head = HEADER.pack(record.seq, record.timestamp_ns, len(record.payload))
    without_crc = head + record.payload + record.chain
    return without_crc + CRC.pack(zlib.crc32(without_crc))


def decode_record(raw: bytes, expected_seq: int, prev_chain: bytes | None) -> Record:
    """Parse and check one stored record.

    `prev_chain` is the chain of the record before it; None skips the chain check (used only
    to find the tail when a log is opened: recovery checks the whole chain).
    """
    # Recovery and verification run this once per record: one slice per part, no more.
    crc_at = len(raw) - _CRC_BYTES
    if crc_at < _HEADER_BYTES + CHAIN_BYTES:
        raise CorruptRecord(expected_seq, f"torn: {len(raw)} bytes is shorter than a header")
    if _crc32(raw[:crc_at]) != int.from_bytes(raw[crc_at:], "big"):
        raise CorruptRecord(expected_seq, "checksum mismatch")
    seq, timestamp_ns, payload_bytes = _unpack_header(raw)
    payload_end = _HEADER_BYTES + payload_bytes
    if payload_end + CHAIN_BYTES != crc_at:
        raise CorruptRecord(expected_seq, "length does not match the header")
    if seq != expected_seq:
        raise CorruptRecord(expected_seq, f"holds sequence number {seq}")
    chain = raw[payload_end:crc_at]
    if prev_chain is not None and _blake2b(prev_chain + raw[:payload_end],
                                           digest_size=CHAIN_BYTES).digest() != chain:
        raise CorruptRecord(expected_seq, "hash chain broken")
    if timestamp_ns <= 0:
        raise CorruptRecord(expected_seq, "holds no timestamp")
    return Record(seq, timestamp_ns, raw[_HEADER_BYTES:payload_end], chain)


def encode_snapshot(seq: int, chain: bytes, body: bytes) -> bytes:
    if not (seq > 0 and len(chain) == CHAIN_BYTES and body):
        raise ValueError(f"not a snapshot: seq {seq}, {len(body)} bytes")
    head = SNAPSHOT_HEADER.pack(seq, chain, len(body))
    crc = zlib.crc32(body, zlib.crc32(head))  # no copy of a body that may be large
    return b"".join((head, body, CRC.pack(crc)))


def decode_snapshot(raw: bytes) -> tuple[int, bytes, bytes]:
    """Returns (seq, log chain at seq, body); raises CorruptRecord if damaged."""
    if len(raw) < SNAPSHOT_HEADER.size + CRC.size:
        raise CorruptRecord(0, "snapshot torn")
    seq, chain, body_bytes = SNAPSHOT_HEADER.unpack_from(raw)
    (crc,) = CRC.unpack_from(raw, len(raw) - CRC.size)
    if len(raw) != SNAPSHOT_HEADER.size + body_bytes + CRC.size:
        raise CorruptRecord(seq, "snapshot length does not match its header")
    if zlib.crc32(memoryview(raw)[: -CRC.size]) != crc:
        raise CorruptRecord(seq, "snapshot checksum mismatch")
    return seq, chain, raw[SNAPSHOT_HEADER.size : -CRC.size]
