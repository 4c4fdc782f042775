"""Rate limits shared by the ingress processes of one machine (`payswitch serve --workers N`).

A client on one keep-alive connection reaches one worker only: with each worker holding its
own buckets at `1/N` of a key's rate, that client got `1/N` of its rate. Here every worker
takes its tokens from one table: a file in the workers' shared directory (the one the
supervisor makes for the metrics), mapped into each process and changed under an exclusive
`flock` (a few microseconds a request). The clock is CLOCK_MONOTONIC, the same in every
process of the machine.

The table has a fixed number of slots, one per key seen since the start (open addressing on
a hash of the key id). Should it fill up, a key without a slot falls back to this process's
own bucket at `1/N` of its rate, as before.
"""

from __future__ import annotations

import fcntl
import hashlib
import mmap
import os
import struct
from pathlib import Path

from switch.api.auth import Principal, TokenBuckets

BUCKETS_FILE = "rate_buckets.bin"  # (not *.db: prometheus_client reads those)
SLOTS = 16_384
PROBES_MAX = 64
_SLOT = struct.Struct("<8sdd")  # key id hash (zero: free), tokens, when (monotonic seconds)
_FREE = bytes(8)


def _hash_of(key_id: str) -> bytes:
    digest = hashlib.blake2b(key_id.encode(), digest_size=8).digest()
    return digest if digest != _FREE else b"\x01" + digest[1:]


class SharedTokenBuckets:
    """A token bucket per key, `rate_per_s` tokens a second and at most `burst` saved (a
    key's own rate and burst, when it has them), shared by every worker."""

    def __init__(self, directory: Path, rate_per_s: float, burst: int, workers: int) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        size = SLOTS * _SLOT.size
        self._fd = os.open(directory / BUCKETS_FILE, os.O_RDWR | os.O_CREAT, 0o600)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            if os.fstat(self._fd).st_size < size:  # the first worker here makes it
                os.ftruncate(self._fd, size)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        self._table = mmap.mmap(self._fd, size)
        self._overflow = TokenBuckets(rate_per_s, burst, workers)

    def wait_s(self, principal: Principal, now: float) -> float:
        """0 and one token taken, or how long until one is there (nothing taken)."""
        rate = principal.requests_per_second or self.rate_per_s
        burst = max(1.0, principal.burst or self.burst)
        key = _hash_of(principal.key_id)
        fcntl.flock(self._fd, fcntl.LOCK_EX)
        try:
            offset = self._slot_of(key)
            if offset is None:
                return self._overflow.wait_s(principal, now)
            found, tokens, when = _SLOT.unpack_from(self._table, offset)
            if found != key:  # a key seen for the first time: a full bucket
                tokens, when = burst, now
            now = max(now, when)  # (read before the lock: another worker may be ahead)
            tokens = min(burst, tokens + (now - when) * rate)
            taken = tokens >= 1
            _SLOT.pack_into(self._table, offset, key, tokens - 1 if taken else tokens, now)
        finally:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
        return 0.0 if taken else (1 - tokens) / rate

    def _slot_of(self, key: bytes) -> int | None:
        """The key's slot, or the free one it takes (None: no room within PROBES_MAX)."""
        start = int.from_bytes(key, "little") % SLOTS
        for probe in range(PROBES_MAX):
            offset = ((start + probe) % SLOTS) * _SLOT.size
            found = self._table[offset:offset + 8]
            if found in (key, _FREE):
                return offset
        return None
