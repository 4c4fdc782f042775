"""One durable round for a cross-shard transfer, on one shard host over LMDB: its home
stages it (the id and the home's sides held) in the same round as the other shards reserve
their parts. The transfer is committed once all are durable; the home's decision follows.

Recovery decides a staged transfer from its parts (`ProbePart`): a part that is not there is
fenced, so a reservation arriving late is refused and the answer cannot change. These pin
each step, before and after a restart (the fences and staged holds come back from the log).
"""

from __future__ import annotations

from pathlib import Path

from actors.codec import FORMAT_VERSION, SNAPSHOT_FORMAT, encode_events
from actors.ledger.events import TransferReserved
from actors.ledger.ledger import HOLD, POST, STAGED, VOID
from actors.ledger.model import PENDING, POST_PENDING, Roles
from actors.messages import (
    ClaimPending,
    Commit,
    Finalize,
    GetAccount,
    ProbePart,
    Reserve,
    Resolve,
    Stage,
)
from actors.shard.host import ShardHost
from tests.actors.test_host import account, call, host_on, transfer


def _opened(tmp_path: Path) -> ShardHost:
    host = host_on(tmp_path)
    call(host, [account("a"), account("b")])
    return host


def _balances(host: ShardHost, account_id: str) -> tuple[int, int, int, int]:
    (view,) = call(host, [GetAccount(account_id)])
    found = view.account
    return (found.debits_pending, found.debits_posted, found.credits_pending,
            found.credits_posted)


def test_a_staged_transfer_holds_its_id_and_sides_until_its_decision(tmp_path: Path) -> None:
    host = _opened(tmp_path)
    (staged,) = call(host, [Stage(transfer("t1", "a", "x", 5), Roles.debit, 7)])
    assert staged.result == "ok" and staged.transfer.timestamp > 0
    assert _balances(host, "a") == (5, 0, 0, 0)
    # While it is staged: another attempt of the id waits, and recovery asks the parts.
    (other,) = call(host, [Stage(transfer("t1", "a", "x", 5), Roles.debit, 8)])
    (commit,) = call(host, [Commit(transfer("t1", "a", "x", 5), Roles.debit, "ok", 8)])
    (told,) = call(host, [Resolve("t1", 7)])
    assert (other.result, commit.result, told.verdict.outcome) == ("in_flight", "in_flight",
                                                                   STAGED)
    host.close()
    host = host_on(tmp_path)  # staged, from the log
    assert _balances(host, "a") == (5, 0, 0, 0)
    (applied,) = call(host, [Finalize("t1", 7, POST, staged.transfer.timestamp)])
    assert applied.applied
    assert _balances(host, "a") == (0, 5, 0, 0)
    (told,) = call(host, [Resolve("t1", 7)])
    assert told.verdict.outcome == POST and told.verdict.transfer == staged.transfer
    (again,) = call(host, [Stage(transfer("t1", "a", "x", 5), Roles.debit, 9)])
    assert again.result == "exists"
    host.close()


def test_a_staged_transfer_voided_frees_its_id_and_sides(tmp_path: Path) -> None:
    host = _opened(tmp_path)
    call(host, [Stage(transfer("t1", "a", "x", 5, PENDING), Roles.debit, 7)])
    (applied,) = call(host, [Finalize("t1", 7, VOID, 0)])
    assert applied.applied and _balances(host, "a") == (0, 0, 0, 0)
    (retried,) = call(host, [Stage(transfer("t1", "a", "x", 5, PENDING), Roles.debit, 8)])
    assert retried.result == "ok"
    host.close()


def test_a_home_that_fenced_an_attempt_refuses_its_late_staging(tmp_path: Path) -> None:
    """A part was in doubt, its home had nothing: void, and the attempt is fenced there."""
    host = _opened(tmp_path)
    (told,) = call(host, [Resolve("t1", 7)])
    assert told.verdict.outcome == VOID
    (late,) = call(host, [Stage(transfer("t1", "a", "x", 5), Roles.debit, 7)])
    assert late.result == "in_flight" and _balances(host, "a") == (0, 0, 0, 0)
    host.close()


def test_a_part_probed_absent_is_fenced_for_good(tmp_path: Path) -> None:
    host = _opened(tmp_path)
    (probed,) = call(host, [ProbePart("t1", 7)])
    assert not probed.present
    host.close()
    host = host_on(tmp_path)  # the fence is durable
    (late,) = call(host, [Reserve(transfer("t1", "x", "b", 5), Roles.credit, 7)])
    assert late.result == "in_flight" and _balances(host, "b") == (0, 0, 0, 0)
    (retried,) = call(host, [Reserve(transfer("t1", "x", "b", 5), Roles.credit, 8)])
    assert retried.result == "ok"
    (probed,) = call(host, [ProbePart("t1", 8)])
    assert probed.present
    host.close()


def test_a_posted_part_stays_present_beside_a_retrys_reservation(tmp_path: Path) -> None:
    """The decision reached this part (posted) but not the home (still staged); a retry of
    the id reserves here too, its home refusing it. The probe must still say present, or
    recovery would void at the home what this shard posted."""
    host = _opened(tmp_path)
    (reserved,) = call(host, [Reserve(transfer("t1", "x", "b", 5), Roles.credit, 7)])
    assert reserved.result == "ok"
    call(host, [Finalize("t1", 7, POST, 123)])
    (retry,) = call(host, [Reserve(transfer("t1", "x", "b", 5), Roles.credit, 8)])
    assert retry.result == "ok"
    (probed,) = call(host, [ProbePart("t1", 7)])
    assert probed.present
    host.close()


def test_a_post_of_a_staged_pending_transfer_waits_for_its_decision(tmp_path: Path) -> None:
    """Answered ok, its decision not yet recorded (its call failed): a post of it must answer
    `in_flight` (retry), never the final `pending_transfer_not_found`."""
    host = _opened(tmp_path)
    (staged,) = call(host, [Stage(transfer("p1", "a", "x", 5, PENDING), Roles.debit, 7)])
    assert staged.result == "ok"
    post = transfer("q1", "", "", 0, POST_PENDING, pending_id="p1")
    (claimed,) = call(host, [ClaimPending(post, 8)])
    assert claimed.result == "in_flight"
    call(host, [Finalize("p1", 7, HOLD, staged.transfer.timestamp)])
    (claimed,) = call(host, [ClaimPending(post, 8)])
    assert claimed.result == "ok"
    host.close()


def test_records_and_snapshots_of_staged_transfers_are_a_format_older_releases_refuse(
        ) -> None:
    """A release before staged transfers would apply a staged transfer's commit as a second
    hold: it reads records up to format 5 and snapshots up to 8, and stops with "upgrade
    payswitch" on these instead."""
    payload = encode_events([TransferReserved(transfer("t1", "a", "x", 5),
                                              Roles.debit | Roles.home, 7)])
    assert payload[0] == FORMAT_VERSION >= 6
    assert SNAPSHOT_FORMAT >= 9
