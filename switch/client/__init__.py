"""The Python client of payswitch: `AsyncClient` (asyncio) and `Client` (threads).

Applications call it once per payment; concurrent calls travel together as arrays, retried
safely with the same ids. It needs httpx, orjson and msgspec, not Ray or the server's
packages: its types are the core's (actors/ledger/model.py, codes.py). See docs/CLIENT.md.
"""

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
from switch.client.sync_client import Client

__all__ = [
    "Account", "AccountFlags", "AccountResult", "AsyncClient", "BadRequest", "Client",
    "Conflict", "Created", "DeadlineExceeded", "Forbidden", "IdConflict", "NotFound",
    "PayswitchError", "RateLimited", "Rejected", "RetryPolicy", "ServerError", "Transfer",
    "TransferFlags", "TransferResult", "Unauthenticated", "Unavailable",
]
