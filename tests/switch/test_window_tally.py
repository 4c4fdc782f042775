"""An open window's report catches up from its last read (switch/hub/windows.py): what each
participant paid, counted once from its payer's history; a history whose last-read leg is
gone is summed again whole; a walk that an account's move interrupts starts again."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from types import SimpleNamespace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.ledger.model import Transfer
from actors.messages import AccountTransfers, TransferPage
from switch.hub.window_model import WINDOW_CODE, Tally, window_account_id, window_leg
from switch.hub.windows import Windows

A, B = window_account_id("EUR", 1, "a"), window_account_id("EUR", 1, "b")
POSITIONS = 1_000_000  # a page's position names the shard that gave it (another's: nothing)


def leg(n: int, payer: str = "a", payee: str = "b", fee: int = 3) -> Transfer:
    return window_leg(f"p{n}", "EUR", 1, payer, payee, 100 + n, fee, "k")


class Histories:
    """Window accounts' histories, newest first, paged as a shard pages them."""

    def __init__(self, legs: list[Transfer]) -> None:
        self.newest_first: dict[str, list[Transfer]] = {A: [], B: []}
        for made in legs:
            self.commit(made)
        self.read = 0
        self.shard = 0
        self.on_ask: Callable[[AccountTransfers], None] | None = None

    def commit(self, made: Transfer) -> None:
        for account_id in (made.debit_account_id, made.credit_account_id):
            self.newest_first[account_id].insert(0, made)

    def shard_of(self, account_id: str) -> int:
        return self.shard

    async def ask(self, shard: int, command: AccountTransfers) -> TransferPage:
        if self.on_ask is not None:
            self.on_ask(command)
        history = self.newest_first[command.account_id]
        start = 0
        if command.before is not None:
            given_by, start = divmod(command.before, POSITIONS)
            if given_by != self.shard:  # another shard's position: no entry there
                return TransferPage([], None)
        page = history[start:start + command.limit]
        self.read += len(page)
        following = start + len(page)
        return TransferPage(page, self.shard * POSITIONS + following
                            if following < len(history) else None)

    def windows(self) -> Windows:
        return Windows(SimpleNamespace(router=self),  # type: ignore[arg-type]
                       Ed25519PrivateKey.generate())


def caught_up(histories: Histories, tally: Tally) -> Tally:
    return asyncio.run(histories.windows()._caught_up(A, tally))


def test_a_tally_counts_what_it_paid_for_payer_and_payee() -> None:
    tally = Tally()
    tally.add(leg(1), A)
    tally.add(leg(2, "b", "a"), A)  # received: counted from its payer's history
    tally.add(Transfer("close", A, "sink", 1, "EUR", WINDOW_CODE + 1), A)
    assert (tally.sent, tally.fees, tally.payments, tally.received_by) == (101, 3, 1, {"b": 101})


def test_a_report_reads_only_the_legs_after_the_last_one_read() -> None:
    histories = Histories([leg(n) for n in range(500)])
    first = caught_up(histories, Tally())
    assert (first.newest_id, first.payments, first.sent) == (
        "hub:payment:p499:window", 500, sum(100 + n for n in range(500)))
    histories.commit(leg(500))
    histories.commit(leg(501, "b", "a"))
    histories.read = 0
    second = caught_up(histories, first)
    assert (second.newest_id, second.payments) == ("hub:payment:p501:window", 501)
    assert histories.read <= 64  # one small page: the two new legs and where it stopped


def test_a_history_without_the_last_leg_read_is_summed_again_whole() -> None:
    """If the leg a tally stopped at is gone (the history is not the one it read), the sums
    are the whole history's, not added on top of the old ones."""
    stale = Tally("hub:payment:gone:window", 999, 999, 999, {"b": 999})
    again = caught_up(Histories([leg(n) for n in range(80)]), stale)
    assert (again.payments, again.sent, again.fees) == (80, sum(100 + n for n in range(80)), 240)
    assert again.received_by == {"b": again.sent}


def test_nets_sum_to_zero_when_a_payment_commits_between_two_histories_reads() -> None:
    """A payment made after a's history was read and before b's: in the report for both or
    for neither (was: received by b, not sent by a)."""
    histories = Histories([leg(1), leg(2, "b", "a")])
    late = leg(3)

    def commit_once_a_is_read(command: AccountTransfers) -> None:
        if command.account_id == B and late not in histories.newest_first[B]:
            histories.commit(late)

    histories.on_ask = commit_once_a_is_read
    windows = histories.windows()
    report = asyncio.run(windows._open_report("EUR", 1, 0, ["a", "b"]))
    assert sum(row.net for row in report.rows) == 0
    assert report.payments == 2  # the late one in neither row: read before it was made
    again = asyncio.run(windows._open_report("EUR", 1, 0, ["a", "b"]))
    assert again.payments == 3 and sum(row.net for row in again.rows) == 0


def test_a_walk_the_accounts_move_interrupts_reads_its_history_again_from_the_head() -> None:
    """A page's position means a place in one shard's log: after the account moved (the
    router's ask follows it), the walk starts again on the new shard (was: it went on from
    the old position there, and kept what it counted)."""
    histories = Histories([leg(n) for n in range(100)] + [leg(100 + n, "b", "a")
                                                          for n in range(100)])

    def moved_after_the_first_page(command: AccountTransfers) -> None:
        if command.before is not None and histories.shard == 0:
            histories.shard = 1  # the router learned the move while following it

    histories.on_ask = moved_after_the_first_page
    tally = caught_up(histories, Tally())
    assert (tally.payments, tally.sent) == (100, sum(100 + n for n in range(100)))
