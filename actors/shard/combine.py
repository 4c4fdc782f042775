"""One writer for many callers: batches that arrive while the shard commits go out together.

Each ingress process (and Ray's own calls) hands the shard batches from its own thread. The
shard is their single writer: one batch runs at a time, under one lock. Run one by one, N
ingress processes would cost N commits where one ingress costs one, since each brings what
queued in its own router. So callers combine (flat combining): a caller queues its batch,
then takes the write lock; whoever holds it runs every batch queued by then as one batch,
with one commit, and hands each caller its own reply. A caller whose batch was run by
another finds its reply ready once it gets the lock, and leaves at once.

Must not: run a batch outside the write lock, or answer a caller before the commit that
carries its batch (the host's `handle_many` commits before it returns).
"""

from __future__ import annotations

import threading
from collections.abc import Callable

Batch = tuple[bytes, list[str]]  # encoded commands, the request ids they serve
HandleMany = Callable[[list[Batch]], list[bytes]]


class ShardStopping(Exception):
    """The thread that ran a merged group was interrupted (KeyboardInterrupt, SystemExit):
    the other callers of that group get this, and must ask what was committed."""


class _Slot:
    __slots__ = ("batch", "done", "error", "reply")

    def __init__(self, batch: Batch) -> None:
        self.batch = batch
        self.done = False
        self.reply = b""
        self.error: BaseException | None = None


class CombiningWriter:
    """Runs callers' batches through `handle_many`, one group at a time, merged.
    `batches_max`: at most this many callers' batches in one group (each is bounded
    by the router's call size, so a group's size is bounded too)."""

    def __init__(self, handle_many: HandleMany, batches_max: int = 16) -> None:
        self._handle_many = handle_many
        self._batches_max = batches_max
        self.write_lock = threading.Lock()  # held while a group runs: the single writer
        self._queue_lock = threading.Lock()  # guards _queue only, never held while running
        self._queue: list[_Slot] = []
        self.groups = 0  # groups run, and the batches they carried (for tests and metrics)
        self.batches = 0

    def queued(self) -> int:
        """Batches waiting for the writer now."""
        with self._queue_lock:
            return len(self._queue)

    def run(self, blob: bytes, request_ids: list[str]) -> bytes:
        slot = _Slot((blob, request_ids))
        with self._queue_lock:
            self._queue.append(slot)
        while True:
            with self.write_lock:
                if not slot.done:
                    self._run_group()
            if slot.done:
                break
        if slot.error is not None:
            raise slot.error
        return slot.reply

    def _run_group(self) -> None:
        """Under the write lock: the oldest queued batches, as one."""
        with self._queue_lock:
            group = self._queue[:self._batches_max]
            del self._queue[:self._batches_max]
        if not group:
            return
        self.groups += 1
        self.batches += len(group)
        try:
            replies = self._handle_many([slot.batch for slot in group])
            for slot, reply in zip(group, replies, strict=True):
                slot.reply = reply
        except Exception as error:  # every caller of the group sees it, and must ask
            for slot in group:
                slot.error = error
        except BaseException as error:  # KeyboardInterrupt, SystemExit: for this thread,
            for slot in group:  # the others get an Exception they handle
                slot.error = ShardStopping(f"the shard is stopping: {error!r}")
            raise
        finally:
            for slot in group:  # never a caller left waiting for a group that ended
                slot.done = True
