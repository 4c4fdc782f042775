"""Balancing transfers: move at most the amount asked, as much as the account allows (pure).

`balancing_debit` limits the amount to what the debit account can give: its credits (plus
its overdraft, when it has one) less its debits, posted and pending. `balancing_credit` limits
it to what the credit account can take: its debits less its credits, posted and pending. As in
TigerBeetle, this holds whether or not the account has the matching balance flag, and when
nothing can move the transfer is rejected (`exceeds_credits` / `exceeds_debits`) rather than
stored with amount 0. The stored transfer carries the amount that moved.

The amount is known only once every side has had its say, and the sides may live on several
shards. So for a balancing transfer each shard describes its sides as *rules*: [code, the
most amount the rule lets through, clamps], where a clamping rule (the balancing side) limits
the amount and the others reject it above their limit. `decide` gives, from all the rules,
exactly what checking everything in one place would: the amount is the smallest clamp, and
the answer the lowest-ranked rule that this amount breaks.
"""

from __future__ import annotations

import msgspec

from actors.ledger.codes import TRANSFER_RANK, TRANSFER_RESULTS, TransferResult
from actors.ledger.limits import Limits, Velocity
from actors.ledger.model import (
    BALANCE_MAX,
    BALANCING_CREDIT,
    BALANCING_DEBIT,
    CLOSED,
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    Account,
    Transfer,
)

_R = TransferResult

LIMIT_MIN = -(2**63)  # what a message holds; any limit below 1 decides alike


class Rule(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One check of a balancing transfer's side: the most amount it lets through, and whether
    it clamps the amount (the balancing side) or rejects above its limit (the others)."""

    code: str
    limit: int
    clamps: bool = False


def rule(code: TransferResult, limit: int, clamps: bool = False) -> Rule:
    """A rule whose limit fits a message: amounts are at least 1, so every limit below 1
    (a room far below zero included) gives the same decision as LIMIT_MIN."""
    return Rule(code, max(limit, LIMIT_MIN), clamps)


def decide(requested: int, rules: list[Rule]) -> tuple[TransferResult, int]:
    """The answer and the amount that moves (meaningful when the answer is ok)."""
    amount = min([requested, *(r.limit for r in rules if r.clamps)])
    broken = [r.code for r in rules
              if (r.limit < 1 if r.clamps else r.limit < max(amount, 1))]
    if not broken:
        return TransferResult.ok, amount
    return TRANSFER_RESULTS[min(broken, key=TRANSFER_RANK.__getitem__)], amount


def most_allowed(requested: int, rules: list[Rule]) -> int:
    """What a shard may hold for these rules: no more than any of them lets through."""
    return int(min([requested, *(r.limit for r in rules)]))


def debit_rules(transfer: Transfer, account: Account | None, limits: Limits | None,
                velocity: Velocity | None, chain_credits: int) -> list[Rule]:
    """The debit side's rules, in the order of `Ledger._check_debit`; `chain_credits`: what
    earlier members of the transfer's linked chain bring the account."""
    if account is None:
        return [rule(_R.debit_account_not_found, 0)]
    rules = _account_rules(account, transfer, _R.debit_account_closed)
    held = account.debits_posted + account.debits_pending
    rules.append(rule(_R.overflows_debits, BALANCE_MAX - held))
    overdraft = 0
    if limits is not None:
        overdraft = limits.overdraft
        if limits.transfer_max:
            rules.append(rule(_R.exceeds_transfer_max, limits.transfer_max))
        if limits.velocity_max and velocity is not None:
            horizon = transfer.timestamp - limits.velocity_window_ms * 1_000_000
            rules.append(rule(_R.exceeds_velocity_limit,
                              limits.velocity_max - velocity.sum_since(horizon)))
    room = account.credits_posted + chain_credits + overdraft - held
    if account.flags & DEBITS_MUST_NOT_EXCEED_CREDITS:
        rules.append(rule(_R.exceeds_credits, room))
    if transfer.flags & BALANCING_DEBIT:
        rules.append(rule(_R.exceeds_credits, room, True))
    return rules


def credit_rules(transfer: Transfer, account: Account | None, chain_debits: int) -> list[Rule]:
    """The credit side's rules, in the order of `Ledger._check_credit`."""
    if account is None:
        return [rule(_R.credit_account_not_found, 0)]
    rules = _account_rules(account, transfer, _R.credit_account_closed)
    held = account.credits_posted + account.credits_pending
    rules.append(rule(_R.overflows_credits, BALANCE_MAX - held))
    room = account.debits_posted + chain_debits - held
    if account.flags & CREDITS_MUST_NOT_EXCEED_DEBITS:
        rules.append(rule(_R.exceeds_debits, room))
    if transfer.flags & BALANCING_CREDIT:
        rules.append(rule(_R.exceeds_debits, room, True))
    return rules


def _account_rules(account: Account, transfer: Transfer, closed: TransferResult) -> list[Rule]:
    rules: list[Rule] = []
    if account.ledger != transfer.ledger:
        rules.append(rule(_R.ledger_mismatch, 0))
    if account.flags & CLOSED:
        rules.append(rule(closed, 0))
    return rules
