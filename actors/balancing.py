"""Balancing transfers: move at most the amount asked, as much as the account allows (pure).

`balancing_debit` limits the amount to what the debit account can give: its credits (plus
its overdraft, when it has one) less its debits, posted and pending. `balancing_credit` limits
it to what the credit account can take: its debits less its credits, posted and pending. As in
TigerBeetle, this holds whether or not the account has the matching balance flag, and when
nothing can move the transfer is rejected (`exceeds_credits` / `exceeds_debits`) rather than
stored with amount 0. The stored transfer carries the amount that moved.
"""

from __future__ import annotations

from actors.model import BALANCING_CREDIT, BALANCING_DEBIT, Account, Roles, Transfer


def balanced_amount(transfer: Transfer, roles: int, debit: Account | None,
                    credit: Account | None, debit_extra: int = 0, credit_extra: int = 0) -> int:
    """The amount this shard's roles allow (<= 0: nothing can move). The extras are what the
    debit account may also give (its overdraft; what earlier members of its linked chain
    bring it) and what the credit account may also take (earlier members' debits)."""
    amount = transfer.amount
    if transfer.flags & BALANCING_DEBIT and roles & Roles.debit and debit is not None:
        amount = min(amount, debit.credits_posted + debit_extra - debit.debits_posted
                     - debit.debits_pending)
    if transfer.flags & BALANCING_CREDIT and roles & Roles.credit and credit is not None:
        amount = min(amount, credit.debits_posted + credit_extra - credit.credits_posted
                     - credit.credits_pending)
    return amount
