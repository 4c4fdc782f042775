"""The shard's account table: packed rows, the accounts in use live as structs.

What must hold: a live struct's changes reach its row when it is trimmed or a snapshot is
cut; an account read after trimming is the one that was written back; a snapshot's rows
load into the same accounts; and the whole ledger, run with every account trimmed after
every batch, decides exactly as the reference does.
"""

from __future__ import annotations

from array import array

import msgspec
import pytest
from msgspec.structs import replace

import actors.ledger.accounts as accounts_module
from actors.codec import SNAPSHOT_FORMAT, decode_snapshot, encode_snapshot
from actors.ledger import snapshot
from actors.ledger.accounts import ROW_BYTES, AccountTable
from actors.ledger.model import BALANCE_MAX, Account
from actors.ledger.state import LedgerState
from tests.actors import test_ledger_model


def _account(account_id: str, ledger: str = "USD", **fields: int | str) -> Account:
    return Account(account_id, ledger, 7, f"owner-{account_id[-1]}", 0, "", 1, **fields)


def test_a_change_to_a_live_account_reaches_its_row_when_it_is_trimmed() -> None:
    table = AccountTable(live_max=2)
    for n in range(5):
        table.add(_account(f"a{n}"))
    for n in range(5):
        table[f"a{n}"].debits_posted += 10 + n
        table[f"a{n}"].history_head = 1 << 40
    table.trim()
    assert list(table.live) == ["a4"]  # the newest live_max / 2
    assert [table.at_rest(f"a{n}").debits_posted for n in range(4)] == [10, 11, 12, 13]
    for n in range(5):
        account = table[f"a{n}"]  # live again, made from its row where it was let go
        assert (account.debits_posted, account.history_head) == (10 + n, 1 << 40)


def test_values_see_live_changes_and_rows_alike() -> None:
    table = AccountTable(live_max=1)
    table.add(_account("a1"))
    table.add(_account("b2", ledger="EUR", credits_posted=5))
    table["a1"].credits_pending = 9
    table.trim()
    table["b2"].debits_pending = 4
    seen = {account.id: account for account in table.values()}
    assert seen["a1"].credits_pending == 9 and seen["b2"].debits_pending == 4
    assert seen["b2"].ledger == "EUR" and seen["b2"].credits_posted == 5


def test_rows_load_into_the_same_accounts_with_live_changes_in_them() -> None:
    table = AccountTable()
    originals = [_account("a1"),
                 replace(_account("b2", ledger="EUR"), user_data="memo", flags=3,
                         credits_posted=BALANCE_MAX)]
    for account in originals:
        table.add(account)
    table["a1"].debits_posted = 42  # live only, until the snapshot writes it back
    loaded = AccountTable.from_rows(table.snapshot_rows())
    assert list(loaded.values()) == [replace(originals[0], debits_posted=42), originals[1]]
    assert loaded.ledgers == ["USD", "EUR"] and len(loaded.owners) == 2


def test_rows_of_a_snapshot_before_format_6_load_with_their_ids_as_a_list() -> None:
    table = AccountTable()
    for account_id in ("a1", "b2", "c3"):
        table.add(_account(account_id))
    rows = table.snapshot_rows()
    assert rows.ids == [] and rows.id_bytes == b"a1b2c3"
    old = msgspec.structs.replace(rows, ids=["a1", "b2", "c3"], id_bytes=b"", id_ends=b"")
    for account_rows in (rows, old):
        loaded = AccountTable.from_rows(account_rows)
        assert list(loaded) == ["a1", "b2", "c3"] and loaded["b2"] == table["b2"]
        assert "a1" in loaded and "a4" not in loaded


def test_a_snapshot_encodes_its_ids_as_buffers_and_decodes_them_back() -> None:
    ledger = LedgerState(["USD"])
    for n in range(300):
        ledger.accounts.add(_account(f"acct-{n}"))
    body = encode_snapshot(snapshot.dump(ledger))
    assert body[0] == SNAPSHOT_FORMAT >= 7
    decoded, _ = decode_snapshot(body)
    assert decoded.account_rows is not None
    loaded = AccountTable.from_rows(decoded.account_rows)
    assert list(loaded) == [f"acct-{n}" for n in range(300)]
    assert all(loaded.rows.row_of(f"acct-{n}") == n for n in range(300))


@pytest.mark.parametrize("damage", ["repeated id", "repeated id, as a list", "ends fall",
                                    "ends past the bytes", "ends short of the bytes",
                                    "an empty id", "ends of 7 bytes", "a row short",
                                    "ids twice", "a ledger it lacks", "an owner it lacks",
                                    "user data of no row"])
def test_rows_that_are_not_a_table_are_refused(damage: str) -> None:
    table = AccountTable()
    for account_id in ("a1", "b2", "c3"):
        table.add(_account(account_id))
    rows = table.snapshot_rows()
    ends = array("Q", [2, 4, 6])
    changes: dict[str, dict[str, object]] = {
        "repeated id": {"id_bytes": b"a1b2a1"},
        "repeated id, as a list": {"ids": ["a1", "b2", "a1"]},
        "ends fall": {"id_ends": array("Q", [4, 2, 6]).tobytes()},
        "ends past the bytes": {"id_ends": array("Q", [2, 4, 7]).tobytes()},
        "ends short of the bytes": {"id_ends": array("Q", [2, 4, 5]).tobytes()},
        "an empty id": {"id_ends": array("Q", [2, 2, 6]).tobytes()},
        "ends of 7 bytes": {"id_ends": ends.tobytes()[:-1]},
        "a row short": {"rows": rows.rows[:-ROW_BYTES]},
        "ids twice": {"ids": ["a1", "b2", "c3"]},  # as a list and as buffers
        "a ledger it lacks": {"ledgers": []},
        "an owner it lacks": {"owners": rows.owners[:1]},
        "user data of no row": {"user_data": {3: "memo"}},
    }
    with pytest.raises(ValueError):
        AccountTable.from_rows(msgspec.structs.replace(rows, **changes[damage]))


def test_a_field_outside_its_row_is_refused_whole() -> None:
    table = AccountTable()
    with pytest.raises(ValueError, match="outside"):
        table.add(_account("a1", debits_posted=BALANCE_MAX + 1))
    assert len(table) == 0 and not table.live and not table.data and not table.owners


def test_the_router_matches_the_reference_with_every_account_trimmed_each_batch(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The three-shard model test, with at most one live account per shard between batches:
    every account goes back to its row and is made again from it, all the time."""
    monkeypatch.setattr(accounts_module, "LIVE_MAX_DEFAULT", 0)
    test_ledger_model.test_router_over_three_shards_matches_the_reference()


def test_a_table_without_some_accounts_keeps_the_others_as_they_are() -> None:
    """A slot move's removal: the other rows copied in order, live changes and user data
    with them, and the table still answers (and snapshots) as before."""
    table = AccountTable.of([replace(_account(f"a{n}", "USD" if n % 2 else "EUR"),
                                     user_data=f"u{n}" if n % 3 == 0 else "")
                             for n in range(12)], live_max=4)
    table["a5"].credits_posted = 55  # live, not yet written back
    kept = table.without({"a0", "a3", "a7"})
    expected = [account for account in table.values() if account.id not in {"a0", "a3", "a7"}]
    assert list(kept) == [account.id for account in expected]
    assert list(kept.values()) == expected
    assert kept["a5"].credits_posted == 55 and kept["a6"].user_data == "u6"
    assert "a3" not in kept and len(kept) == 9
    again = AccountTable.from_rows(kept.snapshot_rows())
    assert list(again.values()) == expected
    kept.add(_account("a3"))  # it may come back (its slot moved back)
    assert kept["a3"].id == "a3" and len(kept) == 10


def test_a_participant_opens_at_most_its_quota_here_and_the_operator_any() -> None:
    """accounts_per_participant_max on this shard: its own keys' creations past it answer
    account_quota_exceeded and change nothing; a repeat still answers exists; the operator
    opens more for it; the count holds across a snapshot and a slot's accounts leaving."""
    from actors.ledger.codes import AccountResult
    from actors.ledger.ledger import Ledger
    from tests.actors.ledger_helpers import apply_all

    ledger = Ledger(["USD"])
    ledger.accounts_per_participant_max = 3

    def create(account_id: str, by: str) -> AccountResult:
        result, events = ledger.create_account(
            Account(account_id, "USD", 1, "psp", 0, "", 1), participant_id=by)
        apply_all(ledger, events)
        return result

    assert [create(f"w{n}", "psp") for n in range(4)] == [AccountResult.ok] * 3 + [
        AccountResult.account_quota_exceeded]
    assert "w3" not in ledger.accounts and ledger.accounts.owned("psp") == 3
    assert create("w0", "psp") == AccountResult.exists
    assert create("w4", "") == AccountResult.ok  # the operator: not bound
    assert create("w5", "psp") == AccountResult.account_quota_exceeded
    reloaded = AccountTable.from_rows(ledger.accounts.snapshot_rows())
    assert reloaded.owned("psp") == 4 and reloaded.owned("nobody") == 0
    ledger.accounts = reloaded.without({"w0", "w1"})
    assert ledger.accounts.owned("psp") == 2
    assert create("w5", "psp") == AccountResult.ok
