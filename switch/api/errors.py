"""Error bodies and status codes: every error has a stable `code` and a human `message`."""

from __future__ import annotations

import json
from typing import Any

import orjson
from starlette.responses import Response

from actors.ledger.codes import AccountResult, TransferResult

MESSAGES: dict[str, str] = {
    "ok": "Created.",
    "exists": "Already created with the same fields; nothing was changed.",
    "flags_invalid": "The flags debits_must_not_exceed_credits and "
    "credits_must_not_exceed_debits cannot both be set.",
    "ledger_unknown": "The ledger is not one of the switch's configured ledgers.",
    "account_quota_exceeded": "The participant has opened as many accounts as it may "
    "(auth.accounts_per_participant_max): ask the operator.",
    "amount_invalid": "The amount must be an integer of minor units, 0 < amount < 2^63.",
    "accounts_must_be_different": "The debit and credit accounts must be different.",
    "debit_account_not_found": "The debit account does not exist.",
    "credit_account_not_found": "The credit account does not exist.",
    "ledger_mismatch": "The transfer's ledger and both accounts' ledgers must be the same.",
    "debit_account_closed": "The debit account is closed.",
    "credit_account_closed": "The credit account is closed.",
    "overflows_debits": "The debit account's debits would exceed 2^64 - 1.",
    "overflows_credits": "The credit account's credits would exceed 2^64 - 1.",
    "exceeds_credits": "The debit account's debits would exceed its credits "
    "(debits_must_not_exceed_credits).",
    "exceeds_debits": "The credit account's credits would exceed its debits "
    "(credits_must_not_exceed_debits).",
    "flags_are_mutually_exclusive": "pending, post_pending_transfer and void_pending_transfer "
    "exclude each other; a post or void cannot be balancing or closing.",
    "closing_transfer_must_be_pending": "closing_debit and closing_credit need flags.pending.",
    "linked_event_failed": "Another transfer of this linked chain failed; nothing of the chain "
    "was applied.",
    "linked_event_chain_open": "The request ended inside a linked chain: the last transfer "
    "must not have flags.linked. Nothing of the chain was applied.",
    "pending_id_required": "post_pending_transfer and void_pending_transfer need pending_id.",
    "pending_id_must_be_empty": "pending_id is only for post_pending_transfer and "
    "void_pending_transfer.",
    "pending_id_must_be_different": "A transfer cannot post or void itself.",
    "timeout_reserved_for_pending_transfer": "timeout_ms is only for pending transfers.",
    "pending_transfer_not_found": "No transfer has the id given as pending_id.",
    "pending_transfer_not_pending": "The transfer given as pending_id is not a pending transfer.",
    "pending_transfer_has_different_debit_account_id": "The pending transfer has another "
    "debit account.",
    "pending_transfer_has_different_credit_account_id": "The pending transfer has another "
    "credit account.",
    "pending_transfer_has_different_ledger": "The pending transfer has another ledger.",
    "pending_transfer_has_different_code": "The pending transfer has another code.",
    "exceeds_pending_transfer_amount": "A post cannot exceed the pending transfer's amount.",
    "pending_transfer_has_different_amount": "A void must leave amount out or give the pending "
    "transfer's amount.",
    "pending_transfer_already_posted": "The pending transfer was already posted.",
    "pending_transfer_already_voided": "The pending transfer was already voided.",
    "pending_transfer_expired": "The pending transfer expired (its timeout passed).",
    "exceeds_transfer_max": "The amount is above the debit account's maximum per transfer.",
    "exceeds_velocity_limit": "The debit account's debits in its velocity window would "
    "exceed its velocity limit.",
    "limits_invalid": "Limits are integers from 0 to 2^63-1; velocity_max and "
    "velocity_window_ms go together (window at most 366 days).",
    "unchanged": "The account already has these limits.",
    "in_flight": "Another attempt with this id is still being resolved; retry with the same id.",
    "invalid_json": "The body is not valid JSON.",
    "validation_error": "The body does not match the schema; see details.",
    "batch_empty": "An array must hold at least one item.",
    "batch_too_large": "Too many items in one request.",
    "body_too_large": "The request body is larger than the limit.",
    "unsupported_media_type": "Send the body as application/json.",
    "overloaded": "The switch is at its queue limit; retry after the Retry-After delay.",
    "shard_unavailable": "A shard did not answer; retry with the same ids.",
    "read_model_unavailable": "The read model behind queries is restarting; retry after "
    "Retry-After.",
    "storage_full": "A shard's log is full; the operator must raise wal.map_size_bytes.",
    "internal_error": "An internal error; this is a bug.",
    "account_not_found": "No account has this id.",
    "transfer_not_found": "No transfer has this id.",
    "id_invalid": "Ids are 1-64 characters of A-Z a-z 0-9 . _ : -",
    "query_invalid": "A query parameter is not valid; see message.",
    "cursor_invalid": "The cursor is not one this switch issued.",
    "history_not_kept": "No account with this id keeps its history (flags.history).",
    "not_found": "No such route.",
    "method_not_allowed": "This route does not accept that method.",
    "too_many_requests_in_flight": "Too many requests are in progress; retry after Retry-After.",
    "too_many_streams": "Too many long-polls and event streams are open; close one or retry "
                        "after Retry-After.",
    "unauthenticated": "Send a valid, unrevoked API key: Authorization: Bearer <key>.",
    "forbidden": "This key may not do this.",
    "debit_participant_disabled": "The debit account's participant is disabled: its accounts "
    "can be credited, not debited.",
    "rate_limited": "This key sent more requests than its rate allows; retry after "
    "Retry-After.",
    "participant_not_found": "No participant has this id.",
    "key_not_found": "No key has this id.",
    "role_invalid": "role is operator, auditor, or participant (with participant_id).",
    "status_invalid": "status is active or disabled.",
    "id_reserved": "Ids and owners starting with 'hub:' are the switch layer's own; use its "
    "routes (payments, funds, net debit caps).",
    "payment_not_found": "No payment has this id.",
    "payer_account_not_found": "The payer's account does not exist, or is not the caller's.",
    "payee_account_not_found": "The payee's account does not exist.",
    "payer_not_enabled": "The payer account's owner is not a participant enabled for this "
    "ledger.",
    "payee_not_enabled": "The payee account's owner is not a participant enabled for this "
    "ledger.",
    "exceeds_net_debit_cap": "The payment would take the payer participant's position above "
    "its net debit cap; the operator can raise the cap, or a settlement lowers the position.",
    "ledger_not_enabled": "The participant is not enabled for this ledger.",
    "net_debit_cap_above_settlement": "A net debit cap cannot exceed the participant's "
    "settlement balance; move funds in first.",
    "net_debit_cap_below_position": "The participant's position is above this cap; settle "
    "first, or choose a higher cap.",
    "settlement_below_position": "Funds out would leave the settlement balance below the "
    "participant's position.",
    "exceeds_settlement_balance": "Funds out cannot exceed the settlement balance.",
    "party_not_found": "No alias of this type and id is registered.",
    "party_taken": "This alias already names another account.",
    "alias_not_account_id": "An ACCOUNT_ID alias must be the id of the account it names.",
    "settlement_below_net_debit_cap": "Funds out would leave the settlement balance below "
    "the net debit cap; lower the cap first.",
    "exists_with_different_terms": "A payment with this id was made with other terms (its "
    "legs differ); nothing was changed.",
    "owner_not_enabled": "The account's owner is not a participant enabled for its ledger.",
    "amount_below_fee": "The amount sent does not cover the fee; send more, or quote with "
    "amount_type RECEIVE.",
    "quote_invalid": "The quote_id is not a quote this switch signed for this payer.",
    "quote_mismatch": "The payment's fields differ from its quote's; leave them out, or "
    "quote again.",
    "quote_expired": "The quote expired; ask for a new one.",
    "window_not_found": "No settlement window has this id (ids look like USD.3).",
    "window_open": "Only closed windows can be settled; close it first.",
    "window_in_other_settlement": "A window is part of another settlement already.",
    "exists_with_different_windows": "A settlement with this id names other windows.",
    "too_many_windows": "Too many windows for one settlement; settle them in several.",
    "settlement_not_found": "No settlement has this id.",
    "settlement_insufficient_funds": "The participant's settlement account cannot pay its "
    "net; move funds in, then settle again.",
    "settlement_debtors_pending": "The multilateral account does not hold this creditor's "
    "net yet: settle the settlement's debtors first.",
    "window_draining": "The window is closed; payments still in flight on it are settling. "
    "Ask again after Retry-After.",
}
for _code in [*AccountResult, *TransferResult]:
    if _code.value.startswith("exists_with_different_"):
        MESSAGES[_code.value] = (
            "Already created with a different "
            f"{_code.value.removeprefix('exists_with_different_')}; nothing was changed."
        )
assert all(code.value in MESSAGES for code in [*AccountResult, *TransferResult])

RETRYABLE = {"in_flight", "window_draining", "overloaded", "rate_limited", "read_model_unavailable",
             "shard_unavailable", "storage_full", "too_many_requests_in_flight",
             "too_many_streams"}


def status_of_result(result: str) -> int:
    """HTTP status for a single created item's result."""
    if result == "ok":
        return 201
    if result == "exists":
        return 200
    if result.startswith("exists_with_different_"):
        return 409
    if result == "in_flight":
        return 503
    if result == "forbidden":
        return 403
    return 422


def dumps_exact(body: Any) -> bytes:
    """JSON for a response: orjson, and the standard library for the rare body holding an
    integer beyond 64 bits (a ledger's totals can pass 2^64; orjson refuses them)."""
    try:
        return orjson.dumps(body)
    except TypeError:
        return json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: Any, status: int = 200, retry_after_seconds: int | None = None) -> Response:
    headers = {"Retry-After": str(retry_after_seconds)} if retry_after_seconds else None
    return Response(dumps_exact(body), status, headers, media_type="application/json")


def error_response(
    status: int,
    code: str,
    message: str | None = None,
    retry_after_seconds: int | None = None,
    details: list[dict[str, Any]] | None = None,
) -> Response:
    body: dict[str, Any] = {"code": code, "message": message or MESSAGES.get(code, code)}
    if details:
        body["details"] = details
    return json_response(body, status, retry_after_seconds if code in RETRYABLE else None)


class ApiError(Exception):
    """A request the API refuses before it reaches the ledger (4xx): nothing is changed."""

    def __init__(
        self, status: int, code: str, message: str | None = None,
        details: list[dict[str, Any]] | None = None, retry_after_seconds: int | None = None,
    ) -> None:
        super().__init__(message or MESSAGES.get(code, code))
        self.status = status
        self.code = code
        self.message = message or MESSAGES.get(code, code)
        self.details = details
        self.retry_after_seconds = retry_after_seconds
