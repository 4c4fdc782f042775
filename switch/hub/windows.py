"""Settlement windows at the ingress: which window is open per ledger, closing one, and its
report (switch/hub/window_model.py says what a window is made of).

The open window is read from the ledger (the highest window whose marker exists), kept here
as a cache, and read again when a payment finds its window closed: several ingress
processes agree because the ledger decides, not this cache.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.ledger.model import CLOSED, Account, Transfer
from actors.ledger.registry import SYSTEM
from actors.messages import (
    AccountTransfers,
    AccountView,
    GetAccount,
    GetTransfer,
    TransferPage,
    TransferView,
    expect,
)
from switch.api.errors import ApiError
from switch.hub.service import Hub, result_of
from switch.hub.window_model import (
    WINDOW_CODE,
    PaymentInWindow,
    Row,
    Tally,
    closing,
    marker_id,
    merkle_root,
    payment_in_window,
    rows_of,
    signed_statement,
    tally_rows,
    window_account_id,
    window_accounts,
    window_participant,
)

log = logging.getLogger("payswitch.hub")
DRAIN_TIMEOUT_S = 30.0
HISTORY_PAGE = 1000
HISTORY_PAGE_FIRST = 64  # the first page of a catch-up: what came since the last report
HISTORIES_AT_ONCE = 8  # participants' window accounts walked at once for a report
WALKS_MAX = 4  # a history read again from its head after its account moved shard
REPORTS_KEPT_MAX = 256


@dataclass(frozen=True)
class Report:
    ledger: str
    number: int
    state: str  # open or closed
    opened_at: int
    closed_at: int | None
    rows: list[Row]
    payments: int  # how many (their list is not kept: a closed report is kept in memory)
    root: str | None  # closed windows only, with the signature
    signature: str | None


class Windows:
    def __init__(self, hub: Hub, key: Ed25519PrivateKey) -> None:
        self.hub = hub
        self.key = key
        self._open: dict[str, int] = {}
        self._reports: dict[tuple[str, int], Report] = {}  # closed windows': final
        # Open windows' sums per participant, read so far; one report catches up at a time.
        self._tallies: dict[tuple[str, int], dict[str, Tally]] = {}
        self._tallying: dict[tuple[str, int], asyncio.Lock] = {}

    async def open_window(self, ledger: str) -> int:
        if ledger not in self._open:
            self._open[ledger] = await self._discover(ledger)
        return self._open[ledger]

    async def open_window_now(self, ledger: str) -> int:
        """The open window as the ledger says now (another ingress may have closed one)."""
        self._open[ledger] = await self._discover(ledger)
        return self._open[ledger]

    async def moved_on(self, ledger: str, number: int) -> int:
        """A payment found window `number` closed: the one open now (read again)."""
        if self._open.get(ledger) == number:
            self._open[ledger] = await self._discover(ledger)
        return self._open[ledger]

    async def _discover(self, ledger: str) -> int:
        """The highest window whose marker exists (the first one is opened here)."""
        high = 1
        while await self._account(marker_id(ledger, high)) is not None:
            high *= 2
        low = high // 2  # markers exist for 1..low, not for high
        if low == 0:
            await self.ensure_accounts(ledger, 1, self._participants(ledger))
            return 1
        while high - low > 1:
            middle = (low + high) // 2
            if await self._account(marker_id(ledger, middle)) is not None:
                low = middle
            else:
                high = middle
        return low

    async def ensure_accounts(self, ledger: str, number: int, participants: list[str],
                              key_id: str = SYSTEM) -> None:
        """Window `number`'s marker and these participants' accounts (idempotent); `key_id`:
        who caused it (the audit lists these accounts: they may go negative)."""
        accounts = window_accounts(ledger, number, participants)
        outcomes = await self.hub.router.create_accounts(accounts, key_id=key_id)
        for account, outcome in zip(accounts, outcomes, strict=True):
            if result_of(outcome) not in ("ok", "exists"):
                raise RuntimeError(f"window account {account.id}: {result_of(outcome)}")

    async def accounts_in_open_window(self, ledger: str, participants: list[str]) -> int:
        """These participants' accounts in the window open now, made under the control lock
        (no close runs between reading which window is open and making them); its number.
        A payment that met a window without an account for a participant calls this: its
        own idea of the open window may be one another ingress closed meanwhile, where an
        account made now would take the payment into a closed window."""
        async with self.hub.control_lock.held():
            number = await self.open_window_now(ledger)
            await self.ensure_accounts(ledger, number, participants)
        return number

    async def prepare(self) -> None:
        """At start-up: every participant's account in its ledgers' open windows (a crash
        may have fallen between enabling a participant and making it)."""
        for ledger in sorted({ledger for p in self.hub.keyring.participants.values()
                              for ledger in p.ledgers}):
            await self.ensure_accounts(ledger, await self.open_window(ledger),
                                       self._participants(ledger))

    def _participants(self, ledger: str) -> list[str]:
        return sorted(p.id for p in self.hub.keyring.participants.values()
                      if ledger in p.ledgers)

    # ---- closing ----

    async def close(self, ledger: str, number: int, key_id: str) -> str:
        """Close window `number` of `ledger` and open the next; "unchanged" if it was
        closed already. Idempotent, and an earlier close cut short (by a crash, or a drain
        that took too long) is finished first."""
        async with self.hub.control_lock.held():  # one close at a time, in all ingresses
            await self.hub.keyring.refresh()  # participants enabled through another, too
            marker = await self._account(marker_id(ledger, number))
            if marker is None:
                raise ApiError(404, "window_not_found")
            if marker.flags & CLOSED:
                return "unchanged"
            earlier = await self._account(marker_id(ledger, number - 1)) if number > 1 else None
            if earlier is not None and not earlier.flags & CLOSED:
                await self._close(ledger, number - 1, key_id)
            await self._close(ledger, number, key_id)
            return "ok"

    async def _close(self, ledger: str, number: int, key_id: str) -> None:
        """The participants' accounts closed, nothing in flight on them, then the marker:
        a window whose marker is closed is final (its report may be signed)."""
        participants = self._participants(ledger)
        await self.ensure_accounts(ledger, number + 1, participants, key_id)
        self._open[ledger] = max(self._open.get(ledger, 0), number + 1)
        accounts = [window_account_id(ledger, number, p) for p in participants]
        await self._close_accounts(ledger, accounts, key_id)
        await self._drain(accounts)
        await self._close_accounts(ledger, [marker_id(ledger, number)], key_id)
        self._reports.pop((ledger, number), None)

    async def _close_accounts(self, ledger: str, account_ids: list[str], key_id: str) -> None:
        holds, posts = zip(*(closing(account_id, ledger, key_id) for account_id in account_ids),
                           strict=True)
        held = []
        for hold, outcome in zip(holds, await self.hub.router.create_transfers(list(holds)),
                                 strict=True):
            result = result_of(outcome)
            if result in ("ok", "exists"):
                held.append(hold.id)
            elif result != "debit_account_not_found":  # one never made: nothing to close
                raise RuntimeError(f"closing {hold.debit_account_id}: {result}")
        for outcome in await self.hub.router.create_transfers(
                [post for post in posts if post.pending_id in held]):
            if result_of(outcome) not in ("ok", "exists"):
                raise RuntimeError(f"closing window accounts: {result_of(outcome)}")

    async def close_forever(self, interval_s: float) -> None:
        """`hub.window_close_interval_s`: close every ledger's open window on a schedule.
        One ingress process does this (several would each close the window then open)."""
        while True:
            await asyncio.sleep(interval_s)
            for ledger in sorted({ledger for p in self.hub.keyring.participants.values()
                                  for ledger in p.ledgers}):
                try:
                    await self.close(ledger, await self.open_window(ledger), SYSTEM)
                except Exception as error:  # a shard restarting: the next round closes it
                    log.warning("closing %s's window on schedule failed: %s", ledger, error)

    async def _drain(self, account_ids: list[str]) -> None:
        """Until no leg is in flight on the window's accounts: its report is then final."""
        deadline = time.monotonic() + DRAIN_TIMEOUT_S
        while True:
            accounts = [await self._account(account_id) for account_id in account_ids]
            if all(a is None or (a.debits_pending == 0 and a.credits_pending == 0)
                   for a in accounts):
                return
            if time.monotonic() > deadline:
                raise ApiError(503, "window_draining", retry_after_seconds=1)
            await asyncio.sleep(0.05)

    # ---- the report ----

    async def report(self, ledger: str, number: int) -> Report:
        """A window's report; a closed window's is final, kept once computed."""
        kept = self._reports.get((ledger, number))
        if kept is not None:
            return kept
        marker = await self._account(marker_id(ledger, number))
        if marker is None:
            raise ApiError(404, "window_not_found")
        if not marker.flags & CLOSED:
            return await self._open_report(ledger, number, marker.timestamp,
                                           self._participants(ledger))
        self._forget_tallies(ledger, number + 1)
        await self.hub.keyring.refresh()  # every payer (enabled through another ingress too)
        participants = self._participants(ledger)
        walking = asyncio.Semaphore(HISTORIES_AT_ONCE)

        async def walk(participant: str) -> list[PaymentInWindow]:
            """The legs this participant paid (each leg is read from its payer's history)."""
            account_id = window_account_id(ledger, number, participant)
            async with walking:
                entries, _ = await self._entries(account_id, None, HISTORY_PAGE)
            return [payment_in_window(leg, participant, window_participant(
                leg.credit_account_id)) for leg in entries
                if leg.code == WINDOW_CODE and leg.debit_account_id == account_id]

        # A few at once: the shards work in parallel, and a window of many participants
        # neither holds every history in memory nor fills a shard's queue with them.
        paid = await asyncio.gather(*(walk(p) for p in participants))
        payments = sorted((p for legs in paid for p in legs), key=lambda p: p.payment_id)
        rows = rows_of(participants, payments)
        closed_at = await self._closed_at(marker_id(ledger, number))
        root = merkle_root(payments)
        signature = self.key.sign(signed_statement(ledger, number, root, closed_at)).hex()
        final = Report(ledger, number, "closed", marker.timestamp, closed_at, rows, len(payments),
                       root, signature)
        if len(self._reports) >= REPORTS_KEPT_MAX:
            self._reports.clear()
        self._reports[(ledger, number)] = final
        return final

    async def _open_report(self, ledger: str, number: int, opened_at: int,
                           participants: list[str]) -> Report:
        """An open window's report from what each participant paid, caught up with the legs
        committed since the last report here: a report costs what came since, not the
        whole window (a closed window's, which needs every leg for its root, reads all)."""
        self._forget_tallies(ledger, number)
        window = (ledger, number)
        async with self._tallying.setdefault(window, asyncio.Lock()):
            tallies = self._tallies.setdefault(window, {})
            walking = asyncio.Semaphore(HISTORIES_AT_ONCE)

            async def catch_up(participant: str) -> tuple[str, Tally]:
                async with walking:
                    return participant, await self._caught_up(
                        window_account_id(ledger, number, participant),
                        tallies.get(participant) or Tally())

            # All or nothing: a walk that fails leaves every tally as it was.
            tallies.update(await asyncio.gather(*(catch_up(p) for p in participants)))
            rows = tally_rows(participants, tallies)
            payments = sum(tally.payments for tally in tallies.values())
        return Report(ledger, number, "open", opened_at, None, rows, payments, None, None)

    async def _caught_up(self, account_id: str, tally: Tally) -> Tally:
        """`tally` with the legs after its newest; if that leg is no longer in the history
        (which only grows at its head), what the whole history says instead."""
        newer = Tally()
        entries, met = await self._entries(account_id, tally.newest_id, HISTORY_PAGE_FIRST)
        for leg in entries:
            if newer.newest_id is None:
                newer.newest_id = leg.id
            newer.add(leg, account_id)
        return tally.plus(newer) if met else newer

    async def _entries(self, account_id: str, stop_id: str | None, first_limit: int
                       ) -> tuple[list[Transfer], bool]:
        """The account's history, newest first, down to the entry `stop_id` (left out), and
        whether it was met. A page's position is a place in one shard's log: if the account
        moved to another shard during the walk, it is read again from the head there."""
        router = self.hub.router
        for _ in range(WALKS_MAX):
            shard = router.shard_of(account_id)
            entries: list[Transfer] = []
            before: int | None = None
            limit = first_limit
            while True:
                page = expect(await router.ask(shard, AccountTransfers(account_id, limit,
                                                                       before)), TransferPage)
                if router.shard_of(account_id) != shard:
                    break  # moved (the ask followed it): positions from here mean nothing
                for leg in page.transfers:
                    if leg.id == stop_id:
                        return entries, True
                    entries.append(leg)
                if page.next_position is None:
                    return entries, False
                before = page.next_position
                limit = min(HISTORY_PAGE, limit * 4)
        raise ApiError(503, "shard_unavailable", retry_after_seconds=1)

    def _forget_tallies(self, ledger: str, below: int) -> None:
        """Drop the sums of this ledger's windows numbered below `below` (closed since)."""
        for window in [w for w in self._tallies if w[0] == ledger and w[1] < below]:
            del self._tallies[window]
            self._tallying.pop(window, None)

    async def _closed_at(self, marker: str) -> int:
        view = expect(await self.hub.router.ask(self.hub.router.shard_of(f"{marker}:close"),
                                                GetTransfer(f"{marker}:close")), TransferView)
        return view.transfer.timestamp if view.transfer is not None else 0

    async def _account(self, account_id: str) -> Account | None:
        view = await self.hub.router.ask(self.hub.router.shard_of(account_id),
                                         GetAccount(account_id))
        return expect(view, AccountView).account

