"""Micro-batching toward one shard: whatever is waiting goes out as one call.

Callers submit groups of commands (one request's share for this shard) and get a future for
their replies. While a call is in flight, new groups queue; when it returns, everything
queued (up to `call_commands_max`) leaves as the next call: one encoded blob, one call over
the shard's link, one group commit on the shard. There is no timer: under light load a call
carries one group, under heavy load it carries many. The queue is bounded; a full queue
refuses at once.

A call that fails with anything but a shard's own refusal (its actor died, its connection
dropped) makes the channel probe the shard (its status, over the control link). A shard whose
probe does not answer within PROBE_GRACE_S is *recovering* (Ray restarts a dead shard actor,
which recovers from its log): until a probe answers, every group for it is refused at once
with ShardUnavailable (503 with Retry-After) instead of waiting behind a restart. Redrive
settles what the failed calls left in doubt once it answers again.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from actors.codec import decode_reply, encode_commands
from actors.messages import (
    FAILED_INTERNAL,
    FAILED_REPLICA_UNAVAILABLE,
    FAILED_SLOT_MOVED,
    FAILED_SLOT_MOVING,
    FAILED_STORAGE_FULL,
    Command,
    Failed,
    Reply,
)
from switch.observe.context import request_id_var

log = logging.getLogger("payswitch.router")

# (encoded commands, request ids of the groups in it) -> encoded BatchReply
ShardCall = Callable[[bytes, list[str]], Awaitable[bytes]]
ShardProbe = Callable[[], Awaitable[object]]  # answers once the shard serves again

PROBE_GRACE_S = 0.25  # a probe answered by then: a lost connection, not a dead shard
PROBE_INTERVAL_S = 0.2  # after a probe that failed, before the next (one at a time)
# A call still unanswered after this is probed too: with the Ray transport, calls to a shard
# that died while idle are held until its restart instead of failing.
SLOW_CALL_S = 1.0


@dataclass(slots=True)
class _Group:
    commands: list[Command]
    future: asyncio.Future[list[Reply | Exception]]
    request_id: str


class Overloaded(Exception):
    """A shard's queue is full: the API answers 429 with Retry-After."""


class ShardUnavailable(Exception):
    """A shard did not answer a call (its actor died or is unreachable): 503."""


class SlotMoving(ShardUnavailable):
    """The command is about a slot being moved between shards (503 with Retry-After): or,
    `moved`, about one that has moved, to `shard` (the router asks there)."""

    def __init__(self, message: str, slot: int, shard: int, moved: bool,
                 account: str = "") -> None:
        super().__init__(message)
        self.slot, self.shard, self.moved = slot, shard, moved
        self.account = account  # a pinned account moving alone (else the whole slot)


class ShardCallFailed(Exception):
    """A shard did not apply a command (or a whole batch): internal_error (a bug, logged
    by the shard) or storage_full. Nothing of what it refused was applied."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


def is_item_failure(error: BaseException) -> bool:
    """A shard's refusal that, in an array, is that item's result (internal_error: a bug,
    logged by the shard; storage_full: its log is full), the other items being applied;
    any other error fails the whole request (429, 503)."""
    return isinstance(error, ShardCallFailed) and error.code in (FAILED_INTERNAL,
                                                                 FAILED_STORAGE_FULL)


class ShardChannel:
    def __init__(
        self,
        shard_index: int,
        call: ShardCall,
        queue_commands_max: int,
        call_commands_max: int,
        probe: ShardProbe | None = None,
    ) -> None:
        if not 0 < call_commands_max <= queue_commands_max:
            raise ValueError("a call must fit in the queue")
        self.shard_index = shard_index
        self._call = call
        self._queue_commands_max = queue_commands_max
        self.call_commands_max = call_commands_max
        self._queue: deque[_Group] = deque()
        self.queued_commands = 0
        self._drain_task: asyncio.Task[None] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self.calls = 0
        self.commands_sent = 0
        self._probe = probe
        self._probing: asyncio.Task[None] | None = None
        self.recovering_since_s: float | None = None  # wall clock, while recovering
        # Told of each slot a shard says has moved (the router's placement learns it).
        self.on_slot_moved: Callable[[int, int, str, bool], None] = \
            lambda slot, shard, account, pinned: None

    def submit(self, commands: list[Command], admitted: bool = False
               ) -> asyncio.Future[list[Reply | Exception]]:
        """Queue a group; its future resolves to one reply per command, in order.

        `admitted`: the commands finish work already under way (a commit after reservations,
        a finalize): never refused, since refusing them would only leave money in doubt for
        redrive. The queue limit applies to new work.
        """
        if not 0 < len(commands) <= self.call_commands_max:
            raise ValueError(f"a group holds 1 to {self.call_commands_max} commands")
        if self.recovering_since_s is not None:
            raise ShardUnavailable(f"shard {self.shard_index} is recovering")
        if not admitted and self.queued_commands + len(commands) > self._queue_commands_max:
            raise Overloaded(f"shard {self.shard_index} queue is full")
        if self._loop is None:  # cached: get_running_loop() is a syscall on Python 3.11
            self._loop = asyncio.get_running_loop()
        future: asyncio.Future[list[Reply | Exception]] = self._loop.create_future()
        self._queue.append(_Group(commands, future, request_id_var.get()))
        self.queued_commands += len(commands)
        if self._drain_task is None:
            self._drain_task = self._loop.create_task(self._drain())
        return future

    async def _drain(self) -> None:
        try:
            while self._queue:
                if self.recovering_since_s is not None:  # queued before it was known
                    groups = list(self._queue)
                    self._queue.clear()
                    self.queued_commands = 0
                    _fail(groups, ShardUnavailable(f"shard {self.shard_index} is recovering"))
                    return
                await self._send(self._take_call())
        finally:
            self._drain_task = None

    def _take_call(self) -> list[_Group]:
        groups = [self._queue.popleft()]
        size = len(groups[0].commands)
        while self._queue and size + len(self._queue[0].commands) <= self.call_commands_max:
            groups.append(self._queue.popleft())
            size += len(groups[-1].commands)
        self.queued_commands -= size
        return groups

    async def _send(self, groups: list[_Group]) -> None:
        commands = [command for group in groups for command in group.commands]
        request_ids = list(dict.fromkeys(  # a coalesced group names several: "a,b"
            one for g in groups if g.request_id for one in g.request_id.split(",")))
        self.calls += 1
        self.commands_sent += len(commands)
        assert self._loop is not None
        slow = self._loop.call_later(SLOW_CALL_S, self._start_probing)
        try:
            reply = decode_reply(await self._call(encode_commands(commands), request_ids))
        except Exception as error:
            log.error("shard %d call failed: %r", self.shard_index, error)
            _fail(groups, ShardUnavailable(f"shard {self.shard_index} is unavailable"))
            self._start_probing()
            return
        finally:
            slow.cancel()
        if reply.failed == FAILED_REPLICA_UNAVAILABLE:  # nothing applied; 503 until decided
            _fail(groups, ShardUnavailable(reply.message))
            return
        if reply.failed:
            _fail(groups, ShardCallFailed(reply.failed, reply.message))
            return
        replies, start = reply.replies, 0
        if len(replies) != len(commands):
            _fail(groups, ShardCallFailed("internal_error", f"shard {self.shard_index} sent "
                                          f"{len(replies)} replies to {len(commands)} commands"))
            return
        for group in groups:
            end = start + len(group.commands)
            if not group.future.done():
                group.future.set_result([
                    self._refusal(r) if isinstance(r, Failed) else r
                    for r in replies[start:end]])
            start = end

    def _refusal(self, failed: Failed) -> ShardCallFailed | SlotMoving:
        if failed.code == FAILED_SLOT_MOVED:
            self.on_slot_moved(failed.slot, failed.shard, failed.account, failed.pinned)
            return SlotMoving(failed.message, failed.slot, failed.shard, moved=True)
        if failed.code == FAILED_SLOT_MOVING:
            return SlotMoving(failed.message, failed.slot, failed.shard, moved=False,
                              account=failed.account)
        return ShardCallFailed(failed.code, failed.message)

    def _start_probing(self) -> None:
        if self._probe is not None and self._probing is None:
            assert self._loop is not None
            self._probing = self._loop.create_task(self._probe_until_answered(self._probe))

    async def _probe_until_answered(self, probe: ShardProbe) -> None:
        """One probe at a time (a restarting actor holds each until it has recovered: they
        must not pile up while a shard waits for its node); a new one after one fails (one
        sent before Ray knew the old process was gone fails on its address in about 1 s)."""
        answer = asyncio.ensure_future(probe())
        try:
            while True:
                done, _ = await asyncio.wait({answer}, timeout=PROBE_GRACE_S)
                if done and not answer.cancelled() and answer.exception() is None:
                    return
                if self.recovering_since_s is None:
                    self.recovering_since_s = time.time()
                    why = repr(answer.exception()) if done and not answer.cancelled() else \
                        f"no answer in {PROBE_GRACE_S} s"
                    log.warning("shard %d is recovering (%s): what needs it answers 503 until "
                                "it serves again", self.shard_index, why)
                if done:
                    await asyncio.sleep(PROBE_INTERVAL_S)
                    answer = asyncio.ensure_future(probe())
        finally:
            if self.recovering_since_s is not None:
                log.warning("shard %d serves again after %.1f s", self.shard_index,
                            time.time() - self.recovering_since_s)
            self.recovering_since_s = None
            self._probing = None


def _fail(groups: list[_Group], error: Exception) -> None:
    for group in groups:
        if not group.future.done():
            group.future.set_exception(error)
