"""The balancing decision from the rules of every side: the amount is the smallest clamp and
the answer the lowest-ranked rule that amount breaks, whatever the order of the rules."""

from __future__ import annotations

import itertools

import pytest

from actors.ledger.balancing import Rule, decide, most_allowed
from actors.ledger.codes import TransferResult as T

CLAMP_DEBIT = Rule(T.exceeds_credits, 300, True)
CLAMP_CREDIT = Rule(T.exceeds_debits, 250, True)

TABLE: list[tuple[str, int, list[Rule], T, int]] = [
    ("no clamp: the amount asked", 500, [Rule(T.overflows_debits, 10**6, False)], T.ok, 500),
    ("debit clamp", 500, [CLAMP_DEBIT], T.ok, 300),
    ("both clamps: the smaller", 500, [CLAMP_DEBIT, CLAMP_CREDIT], T.ok, 250),
    ("asked less than the clamps", 100, [CLAMP_DEBIT, CLAMP_CREDIT], T.ok, 100),
    ("a limit above the clamped amount passes", 500,
     [CLAMP_CREDIT, Rule(T.exceeds_credits, 260, False)], T.ok, 250),
    ("a limit below the clamped amount breaks", 500,
     [CLAMP_CREDIT, Rule(T.exceeds_transfer_max, 200, False)], T.exceeds_transfer_max, 250),
    ("nothing to give", 500, [Rule(T.exceeds_credits, 0, True)], T.exceeds_credits, 0),
    ("nothing to take", 500, [CLAMP_DEBIT, Rule(T.exceeds_debits, -5, True)], T.exceeds_debits, -5),
    ("an account missing ranks first", 500,
     [Rule(T.exceeds_credits, 0, True), Rule(T.credit_account_not_found, 0, False)],
     T.credit_account_not_found, 0),
    ("the lowest rank of those broken", 500,
     [CLAMP_DEBIT, Rule(T.exceeds_velocity_limit, 10, False),
      Rule(T.exceeds_transfer_max, 20, False)],
     T.exceeds_transfer_max, 300),
]


@pytest.mark.parametrize(("name", "asked", "rules", "code", "amount"), TABLE,
                         ids=[row[0] for row in TABLE])
def test_decide(name: str, asked: int, rules: list[Rule], code: T, amount: int) -> None:
    for order in itertools.permutations(rules):
        assert decide(asked, list(order)) == (code, amount)


def test_a_part_holds_no_more_than_any_rule_lets_through() -> None:
    assert most_allowed(500, [CLAMP_DEBIT, Rule(T.exceeds_debits, 40, False)]) == 40
    assert most_allowed(20, [CLAMP_DEBIT]) == 20
