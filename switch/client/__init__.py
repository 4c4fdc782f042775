"""The Python client of payswitch: `AsyncClient` (asyncio) and `Client` (threads).

Applications call it once per payment; concurrent calls travel together as arrays, retried
safely with the same ids. It needs httpx, orjson and msgspec, not Ray or the server's
packages: its types are the core's (actors/ledger/model.py, codes.py). See docs/CLIENT.md.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from actors.ledger.codes import AccountResult, TransferResult
    from actors.ledger.model import Account, AccountFlags, Transfer, TransferFlags
    from switch.client.async_client import AsyncClient, Created, RetryPolicy
    from switch.client.errors import (
        BadRequest,
        Conflict,
        DeadlineExceeded,
        Forbidden,
        IdConflict,
        NotFound,
        PayswitchError,
        RateLimited,
        Rejected,
        ServerError,
        Unauthenticated,
        Unavailable,
    )
    from switch.client.ids import IdGenerator, new_id
    from switch.client.sync_client import Client

# Where each name lives: loaded on first use, so that importing one module of the package
# (the server's event stream uses `switch.client.wire`) does not load httpx.
_HOMES = {
    "AccountResult": "actors.ledger.codes", "TransferResult": "actors.ledger.codes",
    "Account": "actors.ledger.model", "AccountFlags": "actors.ledger.model",
    "Transfer": "actors.ledger.model", "TransferFlags": "actors.ledger.model",
    "AsyncClient": "switch.client.async_client", "Created": "switch.client.async_client",
    "RetryPolicy": "switch.client.async_client", "Client": "switch.client.sync_client",
    "IdGenerator": "switch.client.ids", "new_id": "switch.client.ids",
    **dict.fromkeys(("BadRequest", "Conflict", "DeadlineExceeded", "Forbidden", "IdConflict",
                     "NotFound", "PayswitchError", "RateLimited", "Rejected", "ServerError",
                     "Unauthenticated", "Unavailable"), "switch.client.errors"),
}

__all__ = [
    "Account", "AccountFlags", "AccountResult", "AsyncClient", "BadRequest", "Client",
    "Conflict", "Created", "DeadlineExceeded", "Forbidden", "IdConflict", "IdGenerator",
    "NotFound",
    "PayswitchError", "RateLimited", "Rejected", "RetryPolicy", "ServerError", "Transfer",
    "TransferFlags", "TransferResult", "Unauthenticated", "Unavailable", "new_id",
]
assert set(__all__) == set(_HOMES)


if not TYPE_CHECKING:  # (type checkers see the imports above, and refuse a wrong name)
    def __getattr__(name: str) -> Any:
        home = _HOMES.get(name)
        if home is None:
            raise AttributeError(f"module 'switch.client' has no attribute {name!r}")
        value = getattr(importlib.import_module(home), name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted({*globals(), *_HOMES})
