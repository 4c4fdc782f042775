"""Read-only views of a ledger: balances totals, account history pages, in-doubt parts."""

from __future__ import annotations

from typing import Any

from actors.ledger.ledger import Ledger
from actors.ledger.model import Transfer

BALANCE_FIELDS = ("debits_posted", "credits_posted", "debits_pending", "credits_pending")


def totals_by_ledger(ledger: Ledger) -> dict[str, list[int]]:
    """Per ledger: sums of debits_posted, credits_posted, debits_pending, credits_pending."""
    sums: dict[str, list[int]] = {}
    for account in ledger.accounts.values():
        row = sums.setdefault(account.ledger, [0, 0, 0, 0])
        row[0] += account.debits_posted
        row[1] += account.credits_posted
        row[2] += account.debits_pending
        row[3] += account.credits_pending
    return sums


def account_transfers_page(
    ledger: Ledger, account_id: str, limit: int, before: int | None
) -> tuple[list[Transfer], int | None]:
    """Posted transfers of an account, newest first.

    `before` is a position in the account's history (the cursor a previous page returned);
    histories only grow, so a position stays valid. Returns the page and the next cursor.
    """
    entries = ledger.history.get(account_id, [])
    end = len(entries) if before is None else max(0, min(before, len(entries)))
    start = max(0, end - limit)
    page = entries[start:end]
    page.reverse()
    return page, (start if start > 0 else None)


def in_doubt(ledger: Ledger, reserved_before_ns: int) -> list[list[Any]]:
    """Reservations waiting for their home's decision: what recovery must re-drive.

    Only those reserved before the given time: younger ones are almost always still under way.
    """
    return [[r.transfer.row(), r.roles, r.attempt, r.chain, r.member]
            for r in ledger.reservations.values()
            if not r.held and r.transfer.timestamp <= reserved_before_ns]


def held_parts(ledger: Ledger, reserved_before_ns: int) -> list[list[Any]]:
    """Parts of committed pending transfers held here: settled once their home resolves them."""
    return [[r.transfer.id, r.roles] for r in ledger.reservations.values()
            if r.held and r.transfer.timestamp <= reserved_before_ns]


def claims_in_doubt(ledger: Ledger) -> list[list[Any]]:
    """Pending transfers locked by a post or void whose own home (its chain's coordinator)
    has not been heard from: [pending id, post-or-void id, attempt, chain key, member]."""
    return [[pending_id, *state.claim[:2], *(state.claim[4:6] if len(state.claim) > 4
                                            else ["", 0])]
            for pending_id, state in ledger.pending.items() if state.claim is not None]
