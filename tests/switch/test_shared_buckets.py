"""Rate limits shared by the workers of one machine (switch/api/shared_buckets.py): two
tables over one directory stand for two ingress processes (the file, its mapping and its
lock are the real ones)."""

from __future__ import annotations

from pathlib import Path

import pytest

import switch.api.shared_buckets as shared
from switch.api.auth import Principal, TokenBuckets
from switch.api.shared_buckets import SharedTokenBuckets

KEY = Principal("k1", "participant", "psp", requests_per_second=10, burst=10)


def takes(buckets: SharedTokenBuckets | TokenBuckets, principal: Principal, now: float,
          tries: int) -> int:
    return sum(buckets.wait_s(principal, now) == 0 for _ in range(tries))


def test_one_worker_gives_a_key_its_whole_rate_and_the_other_sees_what_it_took(
        tmp_path: Path) -> None:
    """A client on one connection meets one worker: it gets the key's whole burst there
    (each worker's own buckets at 1/2 gave it half), and the other worker's bucket for the
    key is the same one."""
    first = SharedTokenBuckets(tmp_path, 100, 100, workers=2)
    second = SharedTokenBuckets(tmp_path, 100, 100, workers=2)
    assert takes(TokenBuckets(100, 100, workers=2), KEY, 1000.0, 20) == 5  # (as before)
    assert takes(first, KEY, 1000.0, 20) == 10
    assert second.wait_s(KEY, 1000.0) == pytest.approx(0.1)  # empty: a token in 1/10 s
    assert takes(second, KEY, 1000.5, 20) == 5  # refilled at the key's rate, in either
    other = Principal("k2", "participant", "psp")  # the switch's rate and burst
    assert takes(second, other, 1000.5, 200) == 100


def test_a_worker_whose_clock_was_read_earlier_does_not_rewind_the_bucket(
        tmp_path: Path) -> None:
    """`now` is read before the lock: a worker that waited for it holds an older reading
    than the last taker's. The bucket's time never goes back (that would credit the gap
    twice)."""
    first = SharedTokenBuckets(tmp_path, 100, 100, workers=2)
    second = SharedTokenBuckets(tmp_path, 100, 100, workers=2)
    one = Principal("k1", "participant", "psp", requests_per_second=1, burst=1)
    assert first.wait_s(one, 100.0) == 0
    assert second.wait_s(one, 99.5) > 0  # read before the lock, refused
    assert first.wait_s(one, 100.5) > 0  # half a token since 100.0, not one since 99.5


def test_keys_beyond_the_table_fall_back_to_each_workers_share(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shared, "SLOTS", 4)
    monkeypatch.setattr(shared, "PROBES_MAX", 4)
    buckets = SharedTokenBuckets(tmp_path, 100, 100, workers=2)
    for n in range(4):
        assert takes(buckets, Principal(f"k{n}", "participant", "p", 10, 10), 1.0, 20) == 10
    assert takes(buckets, Principal("k4", "participant", "p", 10, 10), 1.0, 20) == 5
