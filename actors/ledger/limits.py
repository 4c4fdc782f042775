"""Per-account limits, checked by the account's own shard (the single writer of its debits):
an overdraft (a credit limit), a maximum per transfer, and a rolling-window velocity limit.

- `overdraft`: for an account with debits_must_not_exceed_credits, how far debits (posted and
  pending) may go beyond credits. TigerBeetle has no credit limit; users ask for one.
- `transfer_max`: no single debit above this amount.
- `velocity_max` over `velocity_window_ms`: the sum of the account's debits in any window of
  that length. A debit counts when it is applied or reserved (a pending transfer counts when
  it is held); a void or an expiry does not give it back: the limit is on what was attempted
  and granted, the safe side for fraud and risk limits.
Zero means no limit. Changing limits is an idempotent, logged command (`limits_changed`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field

import msgspec

from actors.ledger.model import AMOUNT_MAX

WINDOW_MS_MAX = 366 * 24 * 3600 * 1000


class Limits(msgspec.Struct, array_like=True, frozen=True, gc=False):
    transfer_max: int = 0
    overdraft: int = 0
    velocity_max: int = 0
    velocity_window_ms: int = 0

    def valid(self) -> bool:
        values = msgspec.structs.astuple(self)
        if not all(isinstance(v, int) and 0 <= v <= AMOUNT_MAX for v in values):
            return False
        if self.velocity_window_ms > WINDOW_MS_MAX:
            return False
        return bool(self.velocity_max) == bool(self.velocity_window_ms)  # both or neither


@dataclass(slots=True)
class Velocity:
    """An account's debits in its current window: (timestamp, amount), oldest first."""

    window_ns: int
    debits: deque[tuple[int, int]] = field(default_factory=deque)
    total: int = 0

    def record(self, timestamp: int, amount: int) -> None:
        self.debits.append((timestamp, amount))
        self.total += amount
        horizon = timestamp - self.window_ns
        while self.debits and self.debits[0][0] <= horizon:
            self.total -= self.debits.popleft()[1]

    def resize(self, timestamp: int, amount_was: int, amount: int) -> None:
        """A reserved debit that moved less (a balancing transfer) or nothing (voided): count
        what moved. Timestamps are unique per shard, so the entry is found by them."""
        for index, entry in enumerate(self.debits):
            if entry == (timestamp, amount_was):
                self.total += amount - amount_was
                if amount:
                    self.debits[index] = (timestamp, amount)
                else:
                    del self.debits[index]
                return

    def sum_since(self, horizon: int) -> int:
        """Debits after `horizon` (read-only: the decision must not change state)."""
        total = self.total
        for timestamp, amount in self.debits:
            if timestamp > horizon:
                break
            total -= amount
        return total

    def state(self) -> VelocityState:
        return VelocityState(self.window_ns, list(self.debits))

    @classmethod
    def from_state(cls, state: VelocityState) -> Velocity:
        velocity = cls(state.window_ns)
        for timestamp, amount in state.debits:
            velocity.debits.append((timestamp, amount))
            velocity.total += amount
        return velocity


class VelocityState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A velocity window as a snapshot holds it."""

    window_ns: int
    debits: list[tuple[int, int]]
