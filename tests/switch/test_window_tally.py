"""An open window's report catches up from its last read (switch/hub/windows.py): the sums
per participant, and what happens when the leg it stopped at is no longer in the history."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.ledger.model import Transfer
from actors.messages import AccountTransfers, TransferPage
from switch.hub.window_model import WINDOW_CODE, Tally, window_leg
from switch.hub.windows import Windows

MINE = "hub:window:EUR:1:a"


def leg(n: int, payer: str = "a", payee: str = "b", fee: int = 3) -> Transfer:
    return window_leg(f"p{n}", "EUR", 1, payer, payee, 100 + n, fee, "k")


class History:
    """One account's history, newest first, paged as a shard pages it."""

    def __init__(self, legs: list[Transfer]) -> None:
        self.newest_first = list(reversed(legs))
        self.asked = 0

    def shard_of(self, account_id: str) -> int:
        return 0

    async def ask(self, shard: int, command: AccountTransfers) -> TransferPage:
        start = command.before or 0
        page = self.newest_first[start:start + command.limit]
        self.asked += len(page)
        following = start + len(page)
        return TransferPage(page, following if following < len(self.newest_first) else None)


def caught_up(history: History, tally: Tally) -> Tally:
    windows = Windows(SimpleNamespace(router=history), Ed25519PrivateKey.generate())  # type: ignore[arg-type]
    return asyncio.run(windows._caught_up(MINE, tally))


def test_a_tally_adds_what_it_paid_and_received() -> None:
    tally = Tally()
    tally.add(leg(1), MINE)
    tally.add(leg(2, "b", "a"), MINE)
    tally.add(Transfer("close", MINE, "sink", 1, "EUR", WINDOW_CODE + 1), MINE)
    assert (tally.sent, tally.received, tally.fees, tally.payments) == (101, 102, 3, 1)


def test_a_report_reads_only_the_legs_after_the_last_one_read() -> None:
    history = History([leg(n) for n in range(500)])
    first = caught_up(history, Tally())
    assert (first.newest_id, first.payments, first.sent) == (
        "hub:payment:p499:window", 500, sum(100 + n for n in range(500)))
    history.newest_first[:0] = [leg(501), leg(500)]
    history.asked = 0
    second = caught_up(history, first)
    assert (second.newest_id, second.payments) == ("hub:payment:p501:window", 502)
    assert history.asked <= 64  # one small page: the two new legs and where it stopped


def test_a_history_without_the_last_leg_read_is_summed_again_whole() -> None:
    """If the leg a tally stopped at is gone (the history is not the one it read), the sums
    are the whole history's, not added on top of the old ones."""
    stale = Tally("hub:payment:gone:window", 999, 999, 999, 999)
    again = caught_up(History([leg(n) for n in range(80)]), stale)
    assert (again.payments, again.sent, again.fees) == (80, sum(100 + n for n in range(80)), 240)
