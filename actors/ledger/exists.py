"""What a repeat of an id answers: `exists`, or the first field that differs."""

from __future__ import annotations

from actors.ledger.codes import TRANSFER_RESULTS, AccountResult, TransferResult
from actors.ledger.model import BALANCING, Account, Transfer

_R = TransferResult


_ACCOUNT_FIELDS = ("ledger", "code", "owner", "flags", "user_data")
_TRANSFER_FIELDS = ("debit_account_id", "credit_account_id", "amount", "ledger", "code",
                    "user_data", "flags", "pending_id", "timeout_ms")
_BALANCING_FIELDS = tuple(name for name in _TRANSFER_FIELDS if name != "amount")


def _first_difference(existing: object, new: object, fields: tuple[str, ...]) -> str | None:
    for name in fields:
        if getattr(existing, name) != getattr(new, name):
            return name
    return None


def account_exists(existing: Account, account: Account) -> AccountResult:
    field = _first_difference(existing, account, _ACCOUNT_FIELDS)
    return AccountResult.exists if field is None else AccountResult(
        f"exists_with_different_{field}")


def transfer_exists(existing: Transfer, transfer: Transfer) -> TransferResult:
    """A balancing transfer is stored with the amount that moved: a repeat may ask for more."""
    fields: tuple[str, ...] = _TRANSFER_FIELDS
    if existing.flags & BALANCING and existing.flags == transfer.flags \
            and existing.amount <= transfer.amount:
        fields = _BALANCING_FIELDS
    field = _first_difference(existing, transfer, fields)
    return _R.exists if field is None else TRANSFER_RESULTS[f"exists_with_different_{field}"]
