"""Two-phase rules as tables: static checks, then what a post or void may claim, in order."""

from __future__ import annotations

import pytest

from actors.ledger.codes import TransferResult as T
from actors.ledger.events import PendingExpired
from actors.ledger.ledger import Ledger
from actors.ledger.model import (
    BALANCING_CREDIT,
    BALANCING_DEBIT,
    CLOSING_CREDIT,
    CLOSING_DEBIT,
    PENDING,
    POST_PENDING,
    VOID_PENDING,
    Roles,
    Transfer,
)
from actors.ledger.pending import UNSPECIFIED_CODE, check_static
from tests.actors.ledger_helpers import history
from tests.actors.test_ledger_table import BASE, FUNDS, apply_all, balances, ledger_with

NOW = 10_000


def pending(id_: str = "p1", debit: str = "funded", credit: str = "b", amount: int = 60,
            timeout_ms: int = 0) -> Transfer:
    return Transfer(id_, debit, credit, amount, "USD", 1, "", PENDING, "", timeout_ms,
                    timestamp=NOW)


def resolving(id_: str = "q1", pending_id: str = "p1", post: bool = True, amount: int = 0,
              debit: str = "", credit: str = "", ledger: str = "",
              code: int = UNSPECIFIED_CODE, timestamp: int = NOW + 5) -> Transfer:
    return Transfer(id_, debit, credit, amount, ledger, code, "",
                    POST_PENDING if post else VOID_PENDING, pending_id, 0, timestamp=timestamp)


STATIC = [
    ("ok pending", pending(), T.ok),
    ("ok post with nothing but pending_id", resolving(), T.ok),
    ("pending and post", Transfer("x", "a", "b", 1, "USD", 1, "", PENDING | POST_PENDING, "p"),
     T.flags_are_mutually_exclusive),
    ("post and void", Transfer("x", "", "", 0, "", 1, "", POST_PENDING | VOID_PENDING, "p"),
     T.flags_are_mutually_exclusive),
    ("pending_id_required", resolving(pending_id=""), T.pending_id_required),
    ("pending_id_must_be_different", resolving(id_="p1"), T.pending_id_must_be_different),
    ("pending_id_must_be_empty", Transfer("x", "a", "b", 1, "USD", 1, "", 0, "p"),
     T.pending_id_must_be_empty),
    ("timeout_reserved_for_pending_transfer", Transfer("x", "a", "b", 1, "USD", 1, "", 0, "", 9),
     T.timeout_reserved_for_pending_transfer),
    ("amount 0 is invalid for a plain transfer", Transfer("x", "a", "b", 0, "USD", 1, ""),
     T.amount_invalid),
    ("amount 0 is fine for a post", resolving(amount=0), T.ok),
    ("order: flags before pending_id", Transfer("x", "", "", 0, "", 1, "",
                                                POST_PENDING | VOID_PENDING, ""),
     T.flags_are_mutually_exclusive),
    ("post and balancing", Transfer("x", "", "", 0, "", 1, "", POST_PENDING | BALANCING_DEBIT,
                                    "p"), T.flags_are_mutually_exclusive),
    ("void and closing", Transfer("x", "", "", 0, "", 1, "", VOID_PENDING | CLOSING_CREDIT, "p"),
     T.flags_are_mutually_exclusive),
    ("closing needs pending", Transfer("x", "a", "b", 1, "USD", 1, "", CLOSING_DEBIT),
     T.closing_transfer_must_be_pending),
    ("order: closing before amount", Transfer("x", "a", "b", 0, "USD", 1, "", CLOSING_DEBIT),
     T.closing_transfer_must_be_pending),
    ("ok closing pending balancing", Transfer("x", "a", "b", 1, "USD", 1, "",
                                              CLOSING_DEBIT | PENDING | BALANCING_CREDIT), T.ok),
]


@pytest.mark.parametrize(("name", "command", "expected"), STATIC, ids=[r[0] for r in STATIC])
def test_static(name: str, command: Transfer, expected: T) -> None:
    assert check_static(command) is expected


def with_pending(*earlier: Transfer) -> Ledger:
    ledger = ledger_with(*BASE, balances=FUNDS)
    for transfer in earlier:
        result, events, _ = ledger.commit_transfer(transfer, Roles.both, T.ok)
        assert result is T.ok, result
        apply_all(ledger, events)
    return ledger


def resolved(ledger: Ledger, command: Transfer, attempt: int = 1) -> None:
    """Claim, commit (here: the same ledger), finalize the claim and settle the parts."""
    result, events, found = ledger.claim_pending(command, attempt)
    assert result is T.ok, result
    apply_all(ledger, events)
    claim = ledger.pending[command.pending_id].claim
    assert claim is not None and found is not None
    row = Transfer(command.id, found.debit_account_id, found.credit_account_id,
                   claim.amount or found.amount, "USD", 1, "", command.flags,
                   command.pending_id, 0, NOW + 6)
    apply_all(ledger, ledger.finalize_claim(command.pending_id, command.id, attempt, row))
    status = ledger.pending_status(command.pending_id)
    assert status is not None
    apply_all(ledger, ledger.settle_held(command.pending_id, status.status == "posted",
                                         status.amount_posted, row))


CLAIMS = [
    ("ok post", [], resolving(), T.ok),
    ("pending_transfer_not_found", [], resolving(pending_id="nope"), T.pending_transfer_not_found),
    ("pending_transfer_not_pending", [Transfer("plain", "a", "b", 5, "USD", 1, "",
                                               timestamp=NOW)],
     resolving(pending_id="plain"), T.pending_transfer_not_pending),
    ("different debit account", [pending()], resolving(debit="a"),
     T.pending_transfer_has_different_debit_account_id),
    ("different credit account", [pending()], resolving(credit="a"),
     T.pending_transfer_has_different_credit_account_id),
    ("different ledger", [pending()], resolving(ledger="EUR"),
     T.pending_transfer_has_different_ledger),
    ("different code", [pending()], resolving(code=7), T.pending_transfer_has_different_code),
    ("exceeds_pending_transfer_amount", [pending()], resolving(amount=61),
     T.exceeds_pending_transfer_amount),
    ("a void with another amount", [pending()], resolving(post=False, amount=5),
     T.pending_transfer_has_different_amount),
    ("a void with the same amount", [pending()], resolving(post=False, amount=60), T.ok),
    ("expired by its deadline", [pending(timeout_ms=1)], resolving(timestamp=NOW + 2_000_000),
     T.pending_transfer_expired),
    ("order: fields before status", [pending(timeout_ms=1)],
     resolving(debit="a", timestamp=NOW + 2_000_000),
     T.pending_transfer_has_different_debit_account_id),
]


@pytest.mark.parametrize(("name", "earlier", "command", "expected"), CLAIMS,
                         ids=[r[0] for r in CLAIMS])
def test_claim(name: str, earlier: list[Transfer], command: Transfer, expected: T) -> None:
    ledger = with_pending(*(earlier or [pending()]))
    result, events, _ = ledger.claim_pending(command, 1)
    assert result is expected
    assert (events != []) == (expected is T.ok)


def test_post_part_then_status_codes_for_later_claims() -> None:
    ledger = with_pending(pending())
    assert balances(ledger, "funded") == (0, 100, 60, 0)
    assert balances(ledger, "b") == (0, 0, 0, 60)
    resolved(ledger, resolving(amount=45))
    assert balances(ledger, "funded") == (45, 100, 0, 0)
    assert balances(ledger, "b") == (0, 45, 0, 0)
    status = ledger.pending_status("p1")
    assert status is not None and (status.status, status.amount_posted) == ("posted", 45)
    assert history(ledger, "b")[-1].id == "q1"
    assert ledger.claim_pending(resolving("q2"), 2)[0] is T.pending_transfer_already_posted


def test_void_releases_and_then_already_voided() -> None:
    ledger = with_pending(pending())
    resolved(ledger, resolving(post=False))
    assert balances(ledger, "funded") == (0, 100, 0, 0)
    assert balances(ledger, "b") == (0, 0, 0, 0)
    assert ledger.claim_pending(resolving("q2"), 2)[0] is T.pending_transfer_already_voided


def test_a_claim_locks_until_released() -> None:
    ledger = with_pending(pending())
    _, events, _ = ledger.claim_pending(resolving(), 1)
    apply_all(ledger, events)
    assert ledger.claim_pending(resolving("q2"), 2)[0] is T.in_flight
    assert ledger.finalize_claim("p1", "q2", 2, None) == []  # not the holder's
    apply_all(ledger, ledger.finalize_claim("p1", "q1", 1, None))  # q1 did not commit
    assert ledger.claim_pending(resolving("q2"), 2)[0] is T.ok


def test_expiry_once_even_when_a_released_claim_queued_it_twice() -> None:
    ledger = with_pending(pending(timeout_ms=1))
    _, events, _ = ledger.claim_pending(resolving(), 1)
    apply_all(ledger, events)
    apply_all(ledger, ledger.finalize_claim("p1", "q1", 1, None))  # queued again on release
    expired = ledger.expire_due(NOW + 1_000_000)
    assert expired == [PendingExpired("p1")]
    apply_all(ledger, expired)


def test_expiry_once_and_not_while_claimed() -> None:
    ledger = with_pending(pending(timeout_ms=1), pending("p2", timeout_ms=1, amount=10))
    _, events, _ = ledger.claim_pending(resolving(pending_id="p2"), 1)
    apply_all(ledger, events)
    expired = ledger.expire_due(NOW + 1_000_000)
    assert expired == [PendingExpired("p1")]  # p2 is being resolved
    apply_all(ledger, expired)
    assert ledger.expire_due(NOW + 5_000_000) == []  # once
    apply_all(ledger, ledger.settle_held("p1", False, 0, None))
    assert balances(ledger, "funded") == (0, 100, 10, 0)  # only p2 still held
    apply_all(ledger, ledger.finalize_claim("p2", "q1", 1, None))  # released: due again
    assert ledger.expire_due(NOW + 6_000_000) == [PendingExpired("p2")]
