"""Limits as tables: each code, the order between them, the rolling window, idempotent changes."""

from __future__ import annotations

import pytest

from actors.ledger.codes import LimitsResult as L
from actors.ledger.codes import TransferResult as T
from actors.ledger.ledger import Ledger
from actors.ledger.limits import Limits
from actors.ledger.model import Roles, Transfer
from tests.actors.test_ledger_table import BASE, FUNDS, apply_all, ledger_with

SECOND = 1_000_000_000


def limited(limits: Limits) -> Ledger:
    ledger = ledger_with(*BASE, balances=FUNDS)  # "funded": credits 100, may not overdraw
    result, events = ledger.set_limits("funded", limits, 1)
    assert result is L.ok
    apply_all(ledger, events)
    return ledger


def debit(amount: int, at_s: float, id_: str = "t") -> Transfer:
    return Transfer(id_, "funded", "b", amount, "USD", 1, "", timestamp=int(at_s * SECOND))


TABLE = [
    ("transfer_max", Limits(transfer_max=50), debit(51, 1), T.exceeds_transfer_max),
    ("at transfer_max", Limits(transfer_max=50), debit(50, 1), T.ok),
    ("overdraft lets debits pass credits", Limits(overdraft=20), debit(120, 1), T.ok),
    ("beyond the overdraft", Limits(overdraft=20), debit(121, 1), T.exceeds_credits),
    ("velocity", Limits(velocity_max=30, velocity_window_ms=1000), debit(31, 1),
     T.exceeds_velocity_limit),
    ("order: transfer_max before credits", Limits(transfer_max=50), debit(500, 1),
     T.exceeds_transfer_max),
    ("order: credits before velocity", Limits(velocity_max=30, velocity_window_ms=1000),
     debit(101, 1), T.exceeds_credits),
]


@pytest.mark.parametrize(("name", "limits", "command", "expected"), TABLE,
                         ids=[r[0] for r in TABLE])
def test_limits(name: str, limits: Limits, command: Transfer, expected: T) -> None:
    ledger = limited(limits)
    assert ledger.commit_transfer(command, Roles.both, T.ok)[0] is expected


def test_velocity_window_rolls_and_counts_reservations() -> None:
    ledger = limited(Limits(velocity_max=30, velocity_window_ms=1000))
    apply_all(ledger, ledger.commit_transfer(debit(20, 1.0, "a"), Roles.both, T.ok)[1])
    apply_all(ledger, ledger.reserve_transfer(debit(10, 1.5, "r"), Roles.debit, 7)[1])
    assert ledger.commit_transfer(debit(1, 1.9, "b"), Roles.both, T.ok)[0] is \
        T.exceeds_velocity_limit  # 20 + 10 held
    apply_all(ledger, ledger.finalize_reservation("r", 7, "void", 0))
    assert ledger.commit_transfer(debit(10, 1.9, "b"), Roles.both, T.ok)[0] is \
        T.ok  # a voided reservation moved nothing: it gives its part of the window back
    assert ledger.commit_transfer(debit(11, 1.9, "b"), Roles.both, T.ok)[0] is \
        T.exceeds_velocity_limit
    assert ledger.commit_transfer(debit(20, 2.01, "c"), Roles.both, T.ok)[0] is T.ok  # a left


def test_changing_limits() -> None:
    ledger = ledger_with(*BASE)
    assert ledger.set_limits("nobody", Limits(), 1)[0] is L.account_not_found
    assert ledger.set_limits("a", Limits(velocity_max=5), 1)[0] is L.limits_invalid
    assert ledger.set_limits("a", Limits(transfer_max=-1), 1)[0] is L.limits_invalid
    assert ledger.set_limits("a", Limits(), 1)[0] is L.unchanged  # no limits is the default
    result, events = ledger.set_limits("a", Limits(transfer_max=9), 1)
    assert result is L.ok
    apply_all(ledger, events)
    assert ledger.set_limits("a", Limits(transfer_max=9), 2) == (L.unchanged, [])
