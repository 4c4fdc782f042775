"""Settlement windows (pure): which accounts a window has, the leg that puts a payment in a
window, how a window is closed, and its report and Merkle root (docs/SWITCH.md).

A window is a set of ledger accounts, one per participant (`hub:window:L:N:P`), plus a
marker (`hub:window:L:N`). Every payment between two participants carries a *window leg*
in its chain: payer's window account to payee's, the amount, with the payment's id and fee
in user_data. The window a payment belongs to is therefore the one whose accounts its chain
committed on, decided by the ledger at the shards. Closing a window closes its accounts
(a closing transfer, posted), so no payment can commit on it afterwards: a late one fails
whole and is sent again on the next window. Once no leg is in flight on its accounts, the
window's report is final, and anyone with the log can derive it again.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field

from actors.ledger.model import CLOSING_DEBIT, HISTORY, PENDING, POST_PENDING, Account, Transfer
from actors.ledger.pending import UNSPECIFIED_CODE

WINDOW_ACCOUNT_CODE, WINDOW_MARKER_CODE, WINDOW_SINK_CODE = 9031, 9032, 9033
WINDOW_CODE, WINDOW_CLOSE_CODE = 9107, 9108
OWNER = "hub:switch"


def window_id(ledger: str, number: int) -> str:
    """The public id of a window: `USD.3`."""
    return f"{ledger}.{number}"


def parse_window_id(text: str) -> tuple[str, int] | None:
    ledger, _, number = text.rpartition(".")
    if not ledger or not number.isascii() or not number.isdigit() or len(number) > 12:
        return None
    return ledger, int(number)


def marker_id(ledger: str, number: int) -> str:
    return f"hub:window:{ledger}:{number}"


def window_account_id(ledger: str, number: int, participant_id: str) -> str:
    return f"hub:window:{ledger}:{number}:{participant_id}"


def sink_id(ledger: str) -> str:
    return f"hub:window-close:{ledger}"


def window_accounts(ledger: str, number: int, participants: list[str]) -> list[Account]:
    """What opening a window (or enabling a participant while it is open) creates."""
    return [Account(sink_id(ledger), ledger, WINDOW_SINK_CODE, OWNER, 0, ""),
            Account(marker_id(ledger, number), ledger, WINDOW_MARKER_CODE, OWNER, 0, "")] + [
        Account(window_account_id(ledger, number, p), ledger, WINDOW_ACCOUNT_CODE, OWNER,
                HISTORY, p) for p in participants]


def window_leg(payment_id: str, ledger: str, number: int, payer: str, payee: str,
               amount: int, fee: int, key_id: str) -> Transfer:
    return Transfer(f"hub:payment:{payment_id}:window", window_account_id(ledger, number, payer),
                    window_account_id(ledger, number, payee), amount, ledger, WINDOW_CODE,
                    f"{payment_id};{fee}", 0, "", 0, 0, key_id, "")


def closing(account_id: str, ledger: str, key_id: str) -> tuple[Transfer, Transfer]:
    """A closing transfer on a window account and its post: the account refuses every later
    transfer; posted, so nothing is left pending (one minor unit moves to the sink)."""
    hold = Transfer(f"{account_id}:close", account_id, sink_id(ledger), 1, ledger,
                    WINDOW_CLOSE_CODE, "", PENDING | CLOSING_DEBIT, "", 0, 0, key_id, "")
    post = Transfer(f"{account_id}:closed", "", "", 0, "", UNSPECIFIED_CODE, "", POST_PENDING,
                    hold.id, 0, 0, key_id, "")
    return hold, post


@dataclass(frozen=True)
class PaymentInWindow:
    """A window leg as the report reads it."""

    payment_id: str
    payer: str
    payee: str
    amount: int
    fee: int
    timestamp: int

    @property
    def leaf(self) -> bytes:
        return hashlib.sha256(f"{self.payment_id}|{self.payer}|{self.payee}|{self.amount}|"
                              f"{self.fee}|{self.timestamp}".encode()).digest()


def payment_in_window(leg: Transfer, payer: str, payee: str) -> PaymentInWindow:
    return PaymentInWindow(leg.user_data.rpartition(";")[0], payer, payee, leg.amount,
                           leg_fee(leg), leg.timestamp)


def leg_fee(leg: Transfer) -> int:
    """The fee a window leg carries (its user_data: "payment id;fee")."""
    return int(leg.user_data.rpartition(";")[2] or 0)


def window_participant(account_id: str) -> str:
    """The participant of a window account (`hub:window:L:N:P`)."""
    return account_id.split(":", 4)[4]


@dataclass
class Tally:
    """What one participant paid in an open window, as far as its window account's history
    has been read: a later report reads only the entries after `newest_id` (history is
    newest first, and only grows at its head). Each leg is counted once, from its payer's
    history, for its payer and its payee alike, so the nets of any set of tallies sum to
    zero, whatever committed between two histories' reads."""

    newest_id: str | None = None
    sent: int = 0
    fees: int = 0
    payments: int = 0
    received_by: dict[str, int] = field(default_factory=dict)  # per payee participant

    def add(self, leg: Transfer, account_id: str) -> None:
        """One entry of the account's history: a window leg it paid counts; the rest (legs it
        received, counted from their payers' histories, and the close) does not."""
        if leg.code != WINDOW_CODE or leg.debit_account_id != account_id:
            return
        self.sent += leg.amount
        self.fees += leg_fee(leg)
        self.payments += 1
        payee = window_participant(leg.credit_account_id)
        self.received_by[payee] = self.received_by.get(payee, 0) + leg.amount

    def plus(self, newer: Tally) -> Tally:
        received_by = dict(self.received_by)
        for payee, amount in newer.received_by.items():
            received_by[payee] = received_by.get(payee, 0) + amount
        return Tally(newer.newest_id or self.newest_id, self.sent + newer.sent,
                     self.fees + newer.fees, self.payments + newer.payments, received_by)


def tally_rows(participants: list[str], tallies: dict[str, Tally]) -> list[Row]:
    """The report's rows from what each participant paid (a payee the list lacks included)."""
    received: dict[str, int] = dict.fromkeys(participants, 0)
    for tally in tallies.values():
        for payee, amount in tally.received_by.items():
            received[payee] = received.get(payee, 0) + amount
    empty = Tally()
    return [Row(p, tallies.get(p, empty).sent, received[p], tallies.get(p, empty).fees)
            for p in sorted(received)]


@dataclass(frozen=True)
class Row:
    participant_id: str
    sent: int
    received: int
    fees: int

    @property
    def net(self) -> int:
        """Positive: it owes this much to the others, for this window."""
        return self.sent - self.received


def rows_of(participants: list[str], payments: list[PaymentInWindow]) -> list[Row]:
    sent = dict.fromkeys(participants, 0)
    received, fees = dict(sent), dict(sent)
    for payment in payments:
        sent[payment.payer] = sent.get(payment.payer, 0) + payment.amount
        fees[payment.payer] = fees.get(payment.payer, 0) + payment.fee
        received[payment.payee] = received.get(payment.payee, 0) + payment.amount
    return [Row(p, sent[p], received.get(p, 0), fees.get(p, 0)) for p in sorted(sent)]


def merkle_root(payments: list[PaymentInWindow]) -> str:
    """SHA-256 Merkle root over the window's payments, ordered by id (an odd node is paired
    with itself); the empty window's root is the hash of nothing."""
    level = [p.leaf for p in sorted(payments, key=lambda p: p.payment_id)]
    if not level:
        return hashlib.sha256(b"").hexdigest()
    while len(level) > 1:
        if len(level) % 2:
            level.append(level[-1])
        level = [hashlib.sha256(level[i] + level[i + 1]).digest()
                 for i in range(0, len(level), 2)]
    return level[0].hex()


def signed_statement(ledger: str, number: int, root: str, closed_at: int) -> bytes:
    """What the switch signs for a closed window: its id, root and close time."""
    return f"payswitch-window|{window_id(ledger, number)}|{root}|{closed_at}".encode()
