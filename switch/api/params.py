"""Query-string and path values: one parser for every route, so that every bad value answers 400
with a stable code (`query_invalid`) and none reaches the code behind it."""

from __future__ import annotations

import re
from datetime import UTC, datetime

from starlette.requests import Request

from actors.ledger.model import ID_RE
from switch.api.errors import ApiError

_DIGITS = re.compile(r"[0-9]{1,20}")  # ASCII digits only: str.isdigit() accepts "²"


def is_decimal(text: str) -> bool:
    return _DIGITS.fullmatch(text) is not None


def query_int(request: Request, name: str, default: int | None, low: int, high: int
              ) -> int | None:
    """An integer from low to high, or `default` when the parameter is absent (or, for a
    cursor, empty: the first page)."""
    raw = request.query_params.get(name)
    if raw is None or (raw == "" and name == "cursor"):
        return default
    if not is_decimal(raw) or not low <= int(raw) <= high:
        code = "cursor_invalid" if name == "cursor" else "query_invalid"  # as every cursor
        raise ApiError(400, code, f"{name} must be an integer from {low} to {high}.")
    return int(raw)


def required_int(request: Request, name: str, default: int, low: int, high: int) -> int:
    value = query_int(request, name, default, low, high)
    assert value is not None
    return value


def time_ns(text: str | None, default: int) -> int:
    """A moment given as nanoseconds since the epoch or as an ISO time (UTC if no zone);
    raises ValueError for anything else."""
    if text is None:
        return default
    if is_decimal(text):
        return int(text)
    moment = datetime.fromisoformat(text)
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return int(moment.timestamp() * 1e9)


def query_moment(request: Request, name: str, default: int) -> int:
    """A moment (nanoseconds or ISO time) from 0 to 2^64 - 1, or `default` when absent."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        moment = time_ns(raw, default)
    except (ValueError, OverflowError):
        moment = -1
    if not 0 <= moment <= 2**64 - 1:
        raise ApiError(400, "query_invalid", f"{name} is neither nanoseconds nor an ISO time.")
    return moment


def path_id(request: Request, name: str) -> str:
    """An id in the path: 400 id_invalid unless it is one."""
    value = str(request.path_params[name])
    if not ID_RE.fullmatch(value):
        raise ApiError(400, "id_invalid")
    return value
