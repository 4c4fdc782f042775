"""The client's time-ordered ids (switch/client/ids.py)."""

from __future__ import annotations

import os
import re
import threading
import uuid

from actors.ledger.model import ID_PATTERN
from switch.client import IdGenerator, new_id


class Clock:
    def __init__(self, ms: int) -> None:
        self.ms = ms

    def __call__(self) -> int:
        return self.ms


def test_an_id_is_a_uuid7_the_switch_accepts_stamped_with_its_millisecond() -> None:
    clock = Clock(1_796_000_000_123)
    made = IdGenerator(clock)()
    assert re.fullmatch(ID_PATTERN, made)
    parsed = uuid.UUID(made)
    assert (parsed.version, parsed.variant) == (7, uuid.RFC_4122)
    assert str(parsed) == made
    assert parsed.int >> 80 == clock.ms
    assert re.fullmatch(ID_PATTERN, new_id())


def test_ids_grow_within_a_millisecond_across_milliseconds_and_when_the_clock_steps_back(
        ) -> None:
    clock = Clock(1_000)
    ids = IdGenerator(clock)
    made = [ids() for _ in range(1000)]  # one millisecond
    clock.ms += 1
    made += [ids() for _ in range(10)]
    clock.ms -= 500  # the clock stepped back: still later than every id before
    made += [ids() for _ in range(10)]
    clock.ms += 2_000
    made += [ids()]
    assert made == sorted(made)
    assert len(set(made)) == len(made)
    assert uuid.UUID(made[-1]).int >> 80 == clock.ms


def test_a_later_millisecond_sorts_after_every_id_of_an_earlier_one() -> None:
    clock = Clock(5)
    ids = IdGenerator(clock)
    ids()
    ids._counter = (1 << 74) - 2  # the counter about to run out within the millisecond
    first, second = ids(), ids()
    assert second > first and uuid.UUID(second).int >> 80 == 6  # moved on a millisecond
    clock.ms = 6
    assert ids() > second


def test_threads_sharing_one_generator_get_unique_ids_each_growing() -> None:
    ids = IdGenerator()
    made: list[list[str]] = [[] for _ in range(8)]

    def make(mine: list[str]) -> None:
        mine.extend(ids() for _ in range(2_000))

    threads = [threading.Thread(target=make, args=(mine,)) for mine in made]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert all(mine == sorted(mine) for mine in made)
    assert len({made_id for mine in made for made_id in mine}) == 16_000


def test_an_id_reads_its_whole_counter_when_it_carries_past_the_last_group() -> None:
    ids = IdGenerator(Clock(7))
    ids()
    ids._counter = (5 << 60) + (1 << 48) - 3  # three ids before the last group wraps
    made = [ids() for _ in range(6)]
    counters = [uuid.UUID(one).int & ((1 << 62) - 1) | (uuid.UUID(one).int >> 64 & 0xFFF) << 62
                for one in made]
    assert counters == [(5 << 60) + (1 << 48) - 2 + n for n in range(6)]
    assert made == sorted(made)


def test_a_forked_child_does_not_count_on_from_its_parent() -> None:
    """A child of os.fork (a pre-fork server, multiprocessing) is another process: counting
    on from the parent's counter, both made the same ids in the same millisecond (found by
    review: 28 of 200 pairs)."""
    clock = Clock(1_000)  # parent and child in one millisecond, always
    ids = IdGenerator(clock)
    ids()
    reading, writing = os.pipe()
    child = os.fork()
    if child == 0:  # the child: its next ids, to the parent, then out without cleanup
        os.write(writing, " ".join(ids() for _ in range(3)).encode())
        os._exit(0)
    os.close(writing)
    _, status = os.waitpid(child, 0)
    made_in_child = os.read(reading, 4096).decode().split()
    os.close(reading)
    assert os.waitstatus_to_exitcode(status) == 0
    assert len(made_in_child) == 3
    assert not set(made_in_child) & {ids() for _ in range(3)}
