"""The ledger's rules as tables: (state, command) -> (result, state after).

Each table row names the rule it exercises; the rows of a table are listed in the order the
ledger checks its rules, and the `order` tests check that when two rules fail at once the
earlier one wins.
"""

from __future__ import annotations

import pytest

from actors.ledger.codes import AccountResult as A
from actors.ledger.codes import TransferResult as T
from actors.ledger.events import AttemptFenced
from actors.ledger.ledger import Ledger, Verdict
from actors.ledger.model import AMOUNT_MAX, Account, AccountFlags, Roles, Transfer
from tests.actors.ledger_helpers import accounts_now, apply_all, history

DEBITS_LIMITED = int(AccountFlags.debits_must_not_exceed_credits)
CREDITS_LIMITED = int(AccountFlags.credits_must_not_exceed_debits)
CLOSED = int(AccountFlags.closed)
NOW = 1_000


def account(id_: str, ledger: str = "USD", flags: int = 0, code: int = 1, owner: str = "psp",
            user_data: str = "") -> Account:
    return Account(id_, ledger, code, owner, flags, user_data, timestamp=NOW)


def transfer(id_: str = "t1", debit: str = "a", credit: str = "b", amount: int = 10,
             ledger: str = "USD", code: int = 1, user_data: str = "") -> Transfer:
    return Transfer(id_, debit, credit, amount, ledger, code, user_data, timestamp=NOW + 1)


def ledger_with(*accounts: Account, balances: dict[str, tuple[int, int]] | None = None) -> Ledger:
    ledger = Ledger(["USD", "EUR"])
    for acc in accounts:
        result, events = ledger.create_account(acc)
        assert result is A.ok
        apply_all(ledger, events)
    for account_id, (debits, credits) in (balances or {}).items():
        ledger.accounts[account_id].debits_posted = debits
        ledger.accounts[account_id].credits_posted = credits
    return ledger


def balances(ledger: Ledger, account_id: str) -> tuple[int, int, int, int]:
    a = ledger.accounts[account_id]
    return a.debits_posted, a.credits_posted, a.debits_pending, a.credits_pending


# ---- accounts ----

ACCOUNT_TABLE = [
    ("new account", [], account("a"), A.ok),
    ("flags_invalid: both limits", [], account("a", flags=DEBITS_LIMITED | CREDITS_LIMITED),
     A.flags_invalid),
    ("flags_invalid: unknown bit", [], account("a", flags=64), A.flags_invalid),
    ("ledger_unknown", [], account("a", ledger="XXX"), A.ledger_unknown),
    ("exists_with_different_ledger", [account("a")], account("a", ledger="EUR"),
     A.exists_with_different_ledger),
    ("exists_with_different_code", [account("a")], account("a", code=2),
     A.exists_with_different_code),
    ("exists_with_different_owner", [account("a")], account("a", owner="other"),
     A.exists_with_different_owner),
    ("exists_with_different_flags", [account("a")], account("a", flags=CLOSED),
     A.exists_with_different_flags),
    ("exists_with_different_user_data", [account("a")], account("a", user_data="x"),
     A.exists_with_different_user_data),
    ("exists", [account("a")], account("a"), A.exists),
    ("order: flags before ledger", [], account("a", ledger="XXX", flags=3), A.flags_invalid),
    ("order: ledger_unknown before exists", [account("a")], account("a", ledger="XXX"),
     A.ledger_unknown),
    ("order: ledger before code", [account("a")], account("a", ledger="EUR", code=9),
     A.exists_with_different_ledger),
]


@pytest.mark.parametrize(("name", "existing", "command", "expected"), ACCOUNT_TABLE,
                         ids=[row[0] for row in ACCOUNT_TABLE])
def test_create_account(name: str, existing: list[Account], command: Account,
                        expected: A) -> None:
    ledger = ledger_with(*existing)
    before = accounts_now(ledger)
    result, events = ledger.create_account(command)
    assert result is expected
    apply_all(ledger, events)
    if expected is A.ok:
        assert ledger.accounts[command.id] == command
    else:
        assert events == [] and accounts_now(ledger) == before


# ---- transfers committed in one shard ----

BASE = (account("a"), account("b"), account("funded", flags=DEBITS_LIMITED),
        account("capped", flags=CREDITS_LIMITED), account("closed", flags=CLOSED),
        account("closed2", flags=CLOSED), account("euro", ledger="EUR"))
FUNDS = {"funded": (0, 100), "capped": (50, 0)}

TRANSFER_TABLE = [
    ("ok", [], transfer(), T.ok),
    ("amount_invalid: zero", [], transfer(amount=0), T.amount_invalid),
    ("amount_invalid: negative", [], transfer(amount=-5), T.amount_invalid),
    ("amount_invalid: 2^63", [], transfer(amount=AMOUNT_MAX + 1), T.amount_invalid),
    ("accounts_must_be_different", [], transfer(credit="a"), T.accounts_must_be_different),
    ("exists_with_different_debit_account_id", [transfer()], transfer(debit="funded"),
     T.exists_with_different_debit_account_id),
    ("exists_with_different_credit_account_id", [transfer()], transfer(credit="capped"),
     T.exists_with_different_credit_account_id),
    ("exists_with_different_amount", [transfer()], transfer(amount=11),
     T.exists_with_different_amount),
    ("exists_with_different_ledger", [transfer()], transfer(ledger="EUR"),
     T.exists_with_different_ledger),
    ("exists_with_different_code", [transfer()], transfer(code=2), T.exists_with_different_code),
    ("exists_with_different_user_data", [transfer()], transfer(user_data="x"),
     T.exists_with_different_user_data),
    ("exists", [transfer()], transfer(), T.exists),
    ("debit_account_not_found", [], transfer(debit="nobody"), T.debit_account_not_found),
    ("credit_account_not_found", [], transfer(credit="nobody"), T.credit_account_not_found),
    ("ledger_mismatch: transfer", [], transfer(ledger="EUR"), T.ledger_mismatch),
    ("ledger_mismatch: accounts", [], transfer(credit="euro"), T.ledger_mismatch),
    ("debit_account_closed", [], transfer(debit="closed"), T.debit_account_closed),
    ("credit_account_closed", [], transfer(credit="closed"), T.credit_account_closed),
    ("overflows_debits", [transfer("big", "a", "b", AMOUNT_MAX), transfer("big2", "a", "b",
     AMOUNT_MAX)], transfer(amount=2), T.overflows_debits),
    ("overflows_credits", [transfer("big", "b", "a", AMOUNT_MAX),
     transfer("big2", "capped", "a", AMOUNT_MAX)], transfer("t9", "b", "a", 2),
     T.overflows_credits),
    ("exceeds_credits", [], transfer(debit="funded", amount=101), T.exceeds_credits),
    ("within credits", [], transfer(debit="funded", amount=100), T.ok),
    ("exceeds_debits", [], transfer(credit="capped", amount=51), T.exceeds_debits),
    ("within debits", [], transfer(credit="capped", amount=50), T.ok),
    ("order: amount before accounts_must_be_different", [], transfer(credit="a", amount=0),
     T.amount_invalid),
    ("order: exists before not_found", [transfer("t1", "a", "b")], transfer(debit="nobody"),
     T.exists_with_different_debit_account_id),
    ("order: exists before exceeds", [transfer("t1", "funded", "b", 100)],
     transfer(debit="funded", amount=100), T.exists),
    ("order: debit_not_found before credit_not_found", [],
     transfer(debit="x", credit="y"), T.debit_account_not_found),
    ("order: credit_not_found before ledger_mismatch", [], transfer(debit="euro", credit="y"),
     T.credit_account_not_found),
    ("order: ledger_mismatch before closed", [], transfer(debit="closed", credit="euro"),
     T.ledger_mismatch),
    ("order: debit_closed before credit_closed", [], transfer(debit="closed", credit="closed2"),
     T.debit_account_closed),
    ("order: closed before exceeds", [], transfer(debit="funded", credit="closed", amount=999),
     T.credit_account_closed),
    ("order: exceeds_credits before exceeds_debits", [],
     transfer(debit="funded", credit="capped", amount=999), T.exceeds_credits),
]


@pytest.mark.parametrize(("name", "earlier", "command", "expected"), TRANSFER_TABLE,
                         ids=[row[0] for row in TRANSFER_TABLE])
def test_commit_transfer(name: str, earlier: list[Transfer], command: Transfer,
                         expected: T) -> None:
    ledger = ledger_with(*BASE, balances=FUNDS)
    for t in earlier:
        result, events, _ = ledger.commit_transfer(t, Roles.both, T.ok)
        assert result is T.ok, (t, result)
        apply_all(ledger, events)
    before = accounts_now(ledger)
    result, events, stored = ledger.commit_transfer(command, Roles.both, T.ok)
    assert result is expected
    apply_all(ledger, events)
    if expected is T.ok:
        debit, credit = ledger.accounts[command.debit_account_id], ledger.accounts[
            command.credit_account_id]
        assert debit.debits_posted == before[debit.id].debits_posted + command.amount
        assert credit.credits_posted == before[credit.id].credits_posted + command.amount
        assert ledger.stored(command.id) == command == stored
        assert history(ledger, debit.id)[-1] == command == history(ledger, credit.id)[-1]
    else:
        assert events == []
        assert accounts_now(ledger) == before
        if expected.value.startswith("exists"):
            assert stored is not None and stored.id == command.id


# ---- the parts of a cross-shard transfer ----

def test_remote_verdict_blocks_commit_but_exists_wins() -> None:
    ledger = ledger_with(*BASE)
    result, events, _ = ledger.commit_transfer(transfer(), Roles.debit, T.exceeds_debits)
    assert result is T.exceeds_debits and events == []
    apply_all(ledger, ledger.commit_transfer(transfer(), Roles.both, T.ok)[1])
    result, _, stored = ledger.commit_transfer(transfer(), Roles.debit, T.exceeds_debits)
    assert result is T.exists and stored == transfer()


def test_home_with_no_roles_records_only_the_decision() -> None:
    ledger = ledger_with()
    result, events, _ = ledger.commit_transfer(transfer(), 0, T.ok)
    assert result is T.ok
    apply_all(ledger, events)
    assert ledger.stored("t1") == transfer() and history(ledger, "a") == []


RESERVE_TABLE = [
    ("debit side ok", Roles.debit, transfer(debit="funded", amount=100), T.ok, (0, 100, 100, 0)),
    ("debit side exceeds_credits", Roles.debit, transfer(debit="funded", amount=101),
     T.exceeds_credits, (0, 100, 0, 0)),
    ("debit side ignores the credit account", Roles.debit,
     transfer(debit="funded", credit="nobody"), T.ok, (0, 100, 10, 0)),
    ("credit side not found", Roles.credit, transfer(debit="funded", credit="nobody"),
     T.credit_account_not_found, (0, 100, 0, 0)),
    ("both sides", Roles.both, transfer(debit="funded", credit="b"), T.ok, (0, 100, 10, 0)),
]


@pytest.mark.parametrize(("name", "roles", "command", "expected", "funded_after"), RESERVE_TABLE,
                         ids=[row[0] for row in RESERVE_TABLE])
def test_reserve(name: str, roles: Roles, command: Transfer, expected: T,
                 funded_after: tuple[int, int, int, int]) -> None:
    ledger = ledger_with(*BASE, balances=FUNDS)
    result, events, _ = ledger.reserve_transfer(command, roles, attempt=7)
    assert result is expected
    apply_all(ledger, events)
    assert balances(ledger, "funded") == funded_after
    assert (command.id in ledger.reservations) == (expected is T.ok)


def test_reserved_funds_count_against_limits_and_a_second_attempt_waits() -> None:
    ledger = ledger_with(*BASE, balances=FUNDS)
    apply_all(ledger, ledger.reserve_transfer(transfer("r1", "funded", "b", 60), Roles.debit, 1)[1])
    assert ledger.reserve_transfer(transfer("r2", "funded", "b", 60), Roles.debit, 2)[0] is \
        T.exceeds_credits
    assert ledger.reserve_transfer(transfer("r1", "funded", "b", 1), Roles.debit, 3)[0] is \
        T.in_flight


@pytest.mark.parametrize("post", [True, False])
def test_finalize(post: bool) -> None:
    ledger = ledger_with(*BASE, balances=FUNDS)
    command = transfer("r1", "funded", "b", 60)
    apply_all(ledger, ledger.reserve_transfer(command, Roles.both, 5)[1])
    outcome = "post" if post else "void"
    assert ledger.finalize_reservation("r1", 4, outcome, 99) == []  # another attempt's
    events = ledger.finalize_reservation("r1", 5, outcome, 99)
    apply_all(ledger, events)
    assert ledger.finalize_reservation("r1", 5, outcome, 99) == []  # a repeat: nothing
    assert "r1" not in ledger.reservations
    if post:
        assert balances(ledger, "funded") == (60, 100, 0, 0)
        assert balances(ledger, "b") == (0, 60, 0, 0)
        assert history(ledger, "b") == [command.stamped(99)]
    else:
        assert balances(ledger, "funded") == (0, 100, 0, 0)
        assert balances(ledger, "b") == (0, 0, 0, 0)


def test_resolve_posts_only_the_attempt_that_committed() -> None:
    ledger = ledger_with(*BASE)
    apply_all(ledger, ledger.commit_transfer(transfer(), Roles.debit, T.ok, attempt=41)[1])
    assert ledger.resolve("t1", 41) == (Verdict("post", transfer()), [])
    # A retry with the very same fields reserved too, was told `exists`: void it.
    assert ledger.resolve("t1", 42) == (Verdict("void"), [])
    # Never committed: void, and fenced (tests/actors/test_fences.py).
    assert ledger.resolve("other", 41) == (Verdict("void"), [AttemptFenced("other", 41)])
    local = ledger_with(*BASE)
    apply_all(local, local.commit_transfer(transfer(), Roles.both, T.ok)[1])
    assert local.resolve("t1", 0)[0].outcome == "void"
