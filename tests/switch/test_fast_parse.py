"""The msgspec fast path accepts only what pydantic accepts, and reads it the same: for valid
bodies and for bodies bent in every way a field can be wrong (types, patterns, lengths,
ranges, unknown fields, missing fields, duplicate keys, trailing newlines)."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from switch.api.fast_parse import AccountWire, fast_parse, fast_transfers
from switch.api.schemas import ACCOUNTS, TRANSFER, TRANSFERS
from switch.api.views import account_from_request, limits_of, transfer_from_request

FIELDS = ("id", "debit_account_id", "credit_account_id", "amount", "ledger", "code",
          "user_data", "flags", "pending_id", "timeout_ms")
ODD_VALUES = [None, True, False, 0, 1, -1, 1.0, 100.0, 2**31, 2**32, 2**63, 2**64, 10**30,
              "", "a", "a\n", "\na", "USD", "usd", "U", "USD\n", "a" * 64, "a" * 65, "x" * 128,
              "x" * 129, "é", "a b", "1", [], {}, {"pending": True}, {"linked": 1},
              {"post_pending_transfer": True}, {"void_pending_transfer": True},
              {"unknown": True}, {"closing_credit": "yes"}]


def _valid(n: int) -> dict[str, Any]:
    return {"id": f"t-{n}", "debit_account_id": "a", "credit_account_id": "b", "amount": 5,
            "ledger": "USD", "code": 1}


bent = st.builds(
    lambda base, changes, drops, extra: {
        **{k: v for k, v in base.items() if k not in drops}, **changes,
        **({"surprise": 1} if extra else {})},
    st.integers(0, 3).map(_valid),
    st.dictionaries(st.sampled_from(FIELDS), st.sampled_from(ODD_VALUES), max_size=3),
    st.sets(st.sampled_from(FIELDS), max_size=2),
    st.booleans())


def _dumps(value: Any) -> bytes:
    """JSON of any size of integer (orjson refuses those beyond 64 bits)."""
    return json.dumps(value).encode()


def _pydantic(body: bytes, is_array: bool) -> list[Any] | None:
    try:
        return list(TRANSFERS.validate_json(body)) if is_array else [TRANSFER.validate_json(body)]
    except ValidationError:
        return None


def _agree(body: bytes, is_array: bool) -> None:
    fast = fast_transfers(body, is_array, 8190)
    if fast is None:
        return  # pydantic decides: nothing to compare
    slow = _pydantic(body, is_array)
    assert slow is not None, ("the fast path accepted what pydantic refuses", body)
    assert [transfer_from_request(i) for i in fast] == \
        [transfer_from_request(i) for i in slow], body


@settings(max_examples=600, deadline=None)
@given(bent)
def test_one_transfer_bent_any_way(item: dict[str, Any]) -> None:
    _agree(_dumps(item), False)


@settings(max_examples=200, deadline=None)
@given(st.lists(bent, min_size=1, max_size=5))
def test_arrays_bent_any_way(items: list[dict[str, Any]]) -> None:
    _agree(_dumps(items), True)


def test_valid_bodies_take_the_fast_path() -> None:
    items = [_valid(n) for n in range(3)] + [
        {"id": "post", "pending_id": "p", "flags": {"post_pending_transfer": True}}]
    assert fast_transfers(orjson.dumps(items), True, 8190) is not None
    assert fast_transfers(orjson.dumps(_valid(0)), False, 8190) is not None


def test_text_json_cannot_express_in_orjson() -> None:
    """Duplicate keys, escapes and whitespace, written by hand."""
    for text in (b'{"id":"t","id":"u","debit_account_id":"a","credit_account_id":"b",'
                 b'"amount":5,"ledger":"USD","code":1}',
                 b'{"id":"t\\n","debit_account_id":"a","credit_account_id":"b","amount":5,'
                 b'"ledger":"USD","code":1}',
                 b' {"id":"t","debit_account_id":"a","credit_account_id":"b","amount":5,'
                 b'"ledger":"USD","code":1} ',
                 b'{"id":"t","debit_account_id":"a","credit_account_id":"b","amount":5e0,'
                 b'"ledger":"USD","code":1}'):
        _agree(text, False)
    assert fast_transfers(b"[]", True, 8190) is None  # pydantic says batch_empty
    assert fast_transfers(orjson.dumps([_valid(0)] * 3), True, 2) is None  # batch_too_large


ACCOUNT_FIELDS = ("id", "ledger", "code", "owner", "flags", "user_data", "limits")
ACCOUNT_ODD = [*ODD_VALUES, {"debits_must_not_exceed_credits": True}, {"history": 1},
               {"overdraft": 5}, {"overdraft": -1}, {"overdraft": 2**63}, {"overdraft": 1.0},
               {"velocity_max": 10, "velocity_window_ms": 1000}, {"nope": 1}]

bent_account = st.builds(
    lambda changes, drops: {**{k: v for k, v in {"id": "a", "ledger": "USD", "code": 1,
                                                 "owner": "o"}.items() if k not in drops},
                            **changes},
    st.dictionaries(st.sampled_from(ACCOUNT_FIELDS), st.sampled_from(ACCOUNT_ODD), max_size=3),
    st.sets(st.sampled_from(ACCOUNT_FIELDS), max_size=2))


@settings(max_examples=600, deadline=None)
@given(st.lists(bent_account, min_size=1, max_size=3))
def test_accounts_bent_any_way(items: list[dict[str, Any]]) -> None:
    body = _dumps(items)
    fast = fast_parse(AccountWire, body, True, 8190)
    if fast is None:
        return
    try:
        slow = list(ACCOUNTS.validate_json(body))
    except ValidationError:
        raise AssertionError(("the fast path accepted what pydantic refuses", body)) from None
    assert [(account_from_request(i), limits_of(i)) for i in fast] == \
        [(account_from_request(i), limits_of(i)) for i in slow], body
