"""`Client`: the same, for threads. One event loop runs an `AsyncClient` on a thread of its
own; calls from any thread are handed to it and wait for their answer, so calls made at the
same time from many threads are coalesced like concurrent tasks are."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from actors.ledger.model import Account, Transfer
from switch.client.async_client import AsyncClient, Created

T = TypeVar("T")


class Client:
    def __init__(self, url: str, key: str, **options: Any) -> None:
        """Options as AsyncClient's."""
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever,
                                        name="payswitch-client", daemon=True)
        self._thread.start()
        self._client: AsyncClient = self._run(self._open(url, key, options))

    @staticmethod
    async def _open(url: str, key: str, options: dict[str, Any]) -> AsyncClient:
        return AsyncClient(url, key, **options)

    def _run(self, call: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(call, self._loop).result()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._client.aclose())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(timeout=10)
            self._loop.close()

    def create_transfer(self, transfer: Transfer) -> Created:
        return self._run(self._client.create_transfer(transfer))

    def create_transfer_chain(self, transfers: list[Transfer]) -> list[Created]:
        return self._run(self._client.create_transfer_chain(transfers))

    def create_account(self, account: Account) -> Created:
        return self._run(self._client.create_account(account))

    def create_payment(self, payment_id: str, payer_account_id: str | None = None,
                       payee_account_id: str | None = None, amount: int | None = None,
                       ledger: str | None = None, **options: Any) -> Created:
        """Options as AsyncClient.create_payment's: quote_id, two_phase, timeout_ms."""
        return self._run(self._client.create_payment(payment_id, payer_account_id,
                                                     payee_account_id, amount, ledger,
                                                     **options))

    def fulfil_payment(self, payment_id: str) -> Created:
        return self._run(self._client.fulfil_payment(payment_id))

    def abort_payment(self, payment_id: str) -> Created:
        return self._run(self._client.abort_payment(payment_id))

    def get_account(self, account_id: str) -> Account:
        return self._run(self._client.get_account(account_id))

    def get_transfer(self, transfer_id: str) -> Transfer:
        return self._run(self._client.get_transfer(transfer_id))
