"""Several callers, one writer: batches queued while the shard commits go out as one commit,
each caller gets its own replies, and a failure reaches every caller of its group."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from actors.codec import decode_reply, encode_commands
from actors.shard.combine import Batch, CombiningWriter, ShardStopping
from tests.actors.test_host import account, commit, host_on


class _Gate:
    """A handle_many that holds its first group until released, recording every group."""

    def __init__(self) -> None:
        self.groups: list[list[bytes]] = []
        self.first_running = threading.Event()
        self.release = threading.Event()
        self.fail_with: Exception | None = None

    def __call__(self, batches: list[Batch]) -> list[bytes]:
        self.groups.append([blob for blob, _ in batches])
        if len(self.groups) == 1:
            self.first_running.set()
            assert self.release.wait(10)
        if self.fail_with is not None and len(self.groups) > 1:
            raise self.fail_with
        return [b"reply to " + blob for blob, _ in batches]


def _callers(writer: CombiningWriter, blobs: list[bytes]
             ) -> tuple[list[threading.Thread], dict[bytes, bytes | BaseException]]:
    answers: dict[bytes, bytes | BaseException] = {}

    def call(blob: bytes) -> None:
        try:
            answers[blob] = writer.run(blob, [])
        except Exception as error:
            answers[blob] = error

    threads = [threading.Thread(target=call, args=(blob,)) for blob in blobs]
    return threads, answers


def _queued(writer: CombiningWriter, count: int) -> None:
    deadline = time.monotonic() + 10
    while writer.queued() < count:
        assert time.monotonic() < deadline
        time.sleep(0.001)


def test_batches_queued_while_one_commits_go_out_together_each_caller_its_own_reply() -> None:
    gate = _Gate()
    writer = CombiningWriter(gate)
    threads, answers = _callers(writer, [b"first", b"a", b"b", b"c"])
    threads[0].start()
    assert gate.first_running.wait(10)
    for thread in threads[1:]:
        thread.start()
    _queued(writer, 3)
    gate.release.set()
    for thread in threads:
        thread.join(10)
    assert gate.groups[0] == [b"first"]
    assert sorted(gate.groups[1]) == [b"a", b"b", b"c"] and len(gate.groups) == 2
    assert answers == {blob: b"reply to " + blob for blob in (b"first", b"a", b"b", b"c")}
    assert (writer.groups, writer.batches) == (2, 4)


def test_a_group_is_bounded_and_the_rest_runs_next() -> None:
    gate = _Gate()
    writer = CombiningWriter(gate, batches_max=2)
    threads, answers = _callers(writer, [b"first", b"a", b"b", b"c"])
    threads[0].start()
    assert gate.first_running.wait(10)
    for thread in threads[1:]:
        thread.start()
    _queued(writer, 3)
    gate.release.set()
    for thread in threads:
        thread.join(10)
    assert [len(group) for group in gate.groups] == [1, 2, 1]
    assert len(answers) == 4 and all(isinstance(a, bytes) for a in answers.values())


def test_a_group_that_fails_fails_every_caller_in_it() -> None:
    gate = _Gate()
    gate.fail_with = RuntimeError("after commit")
    writer = CombiningWriter(gate)
    threads, answers = _callers(writer, [b"first", b"a", b"b"])
    threads[0].start()
    assert gate.first_running.wait(10)
    threads[1].start()
    threads[2].start()
    _queued(writer, 2)
    gate.release.set()
    for thread in threads:
        thread.join(10)
    assert answers[b"first"] == b"reply to first"
    assert all(isinstance(answers[blob], RuntimeError) for blob in (b"a", b"b"))


def test_merged_batches_are_one_commit_on_a_real_log(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    setup = encode_commands([account("bank"), account("a", flags=1), account("b")])
    host.handle(setup)
    seq = host.log.last_seq
    replies = host.handle_many([
        (encode_commands([commit("t1", "bank", "a", 100)]), ["r1"]),
        (encode_commands([commit("t2", "a", "b", 60), commit("t3", "a", "b", 60)]), ["r2"]),
    ])
    assert host.log.last_seq == seq + 1  # one record, one fsync'd commit, for both callers
    first, second = (decode_reply(reply) for reply in replies)
    assert [r.result for r in first.replies] == ["ok"]
    assert [r.result for r in second.replies] == ["ok", "exceeds_credits"]
    host.close()


@pytest.mark.parametrize("callers", [2, 8])
def test_concurrent_callers_on_a_real_host_all_commit_in_fewer_commits(
        tmp_path: Path, callers: int) -> None:
    host = host_on(tmp_path)
    host.handle(encode_commands([account("bank"), account("a")]))
    writer = CombiningWriter(host.handle_many)
    per_caller = 50
    seq = host.log.last_seq
    results: list[str] = []
    lock = threading.Lock()

    def caller(index: int) -> None:
        for n in range(per_caller):
            blob = encode_commands([commit(f"t{index}-{n}", "bank", "a", 1)])
            reply = decode_reply(writer.run(blob, []))
            with lock:
                results.extend(r.result for r in reply.replies)

    threads = [threading.Thread(target=caller, args=(i,)) for i in range(callers)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert results == ["ok"] * (callers * per_caller)
    assert host.log.last_seq - seq == writer.groups <= callers * per_caller
    host.close()


def test_a_caller_whose_batch_does_not_decode_fails_alone(tmp_path: Path) -> None:
    host = host_on(tmp_path)
    host.handle(encode_commands([account("bank"), account("a")]))
    replies = host.handle_many([
        (encode_commands([commit("t1", "bank", "a", 5)]), []),
        (b"\xff not commands", []),
        (encode_commands([commit("t2", "bank", "a", 7)]), []),
    ])
    first, garbage, third = (decode_reply(reply) for reply in replies)
    assert garbage.failed == "internal_error" and "does not decode" in garbage.message
    assert [r.result for r in first.replies] == [r.result for r in third.replies] == ["ok"]
    host.close()


def test_an_interrupted_group_leaves_no_caller_waiting() -> None:
    gate = _Gate()
    gate.fail_with = KeyboardInterrupt()  # type: ignore[assignment]
    writer = CombiningWriter(gate)
    answers: dict[bytes, bytes | BaseException] = {}

    def call(blob: bytes) -> None:
        try:
            answers[blob] = writer.run(blob, [])
        except BaseException as error:  # the thread that ran the group: KeyboardInterrupt
            answers[blob] = error

    threads = {blob: threading.Thread(target=call, args=(blob,)) for blob in (b"first", b"a", b"b")}
    threads[b"first"].start()
    assert gate.first_running.wait(10)
    threads[b"a"].start()
    threads[b"b"].start()
    _queued(writer, 2)
    gate.release.set()
    for thread in threads.values():
        thread.join(10)
        assert not thread.is_alive()
    assert answers[b"first"] == b"reply to first"
    assert {type(answers[b"a"]), type(answers[b"b"])} == {KeyboardInterrupt, ShardStopping}
