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

from typing import Any

from actors.codes import TRANSFER_RANK, TRANSFER_RESULTS, TransferResult

Rule = list[Any]  # [code, limit, clamps (bool)]


def decide(requested: int, rules: list[Rule]) -> tuple[TransferResult, int]:
    """The answer and the amount that moves (meaningful when the answer is ok)."""
    amount = min([requested, *(limit for _, limit, clamps in rules if clamps)])
    broken = [code for code, limit, clamps in rules
              if (limit < 1 if clamps else limit < max(amount, 1))]
    if not broken:
        return TransferResult.ok, amount
    return TRANSFER_RESULTS[min(broken, key=TRANSFER_RANK.__getitem__)], amount


def most_allowed(requested: int, rules: list[Rule]) -> int:
    """What a shard may hold for these rules: no more than any of them lets through."""
    return int(min([requested, *(limit for _, limit, _ in rules)]))
