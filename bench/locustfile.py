"""Locust scenarios a payment operator would run against payswitch.

Users (pick some by class name on the command line, or all for the realistic mix):
  WalletUser        one wallet-to-wallet transfer per request, uniform accounts
  HotWalletUser     one transfer per request, one side on one of 10 hot accounts
  BatchSubmitter    arrays of 1,000 transfers (a PSP's settlement file)
  BalanceReader     reads an account's balances
  PaymentUser       the switch layer: looks up the payee's alias, asks for a quote, pays it
                    (the `payments` scenario of bench/load.py, which makes the participants,
                    wallets p0..pN-1 and aliases it needs)
(Two-phase flows come with two-phase transfers.)

A 5xx, or a rejection the scenario does not expect, counts as a failure. 429/503 are
retried after Retry-After with the same transfer ids, so a retry never pays twice; a retry
that answers `exists` is a success (the first attempt was applied).

Settings from the environment: LOAD_ACCOUNTS (the accounts a0..aN-1 bench/load.py created).
"""

from __future__ import annotations

import itertools
import os
import random
import time
from typing import Any

import orjson
from locust import FastHttpUser, User, between, task
from locust.contrib.fasthttp import ResponseContextManager

ACCOUNTS = int(os.environ.get("LOAD_ACCOUNTS", "10000"))
PARTICIPANTS = 10  # bench/load.py: wallet pK belongs to bank-(K mod 10), alias MSISDN of K
HOT_ACCOUNTS = 10
BATCH_SIZE = 1000
RETRIES_MAX = 5
ACCEPTED = {"ok", "exists"}
_RUN = f"{random.getrandbits(32):08x}"  # set before Locust forks its processes: add the pid
_COUNTER = itertools.count()
# The API key: bench/load.py passes the operator's (Locust's own UI: export it yourself).
AUTHORIZATION = {"authorization": f"Bearer {os.environ.get('PAYSWITCH_API_KEY', '')}"}
HEADERS = {"content-type": "application/json", **AUTHORIZATION}


def next_id() -> str:
    return f"L{_RUN}-{os.getpid():x}-{next(_COUNTER)}"


def transfer(debit: int, credit: int) -> dict[str, Any]:
    return {"id": next_id(), "debit_account_id": f"a{debit}", "credit_account_id": f"a{credit}",
            "amount": random.randint(1, 10_000), "ledger": "USD", "code": 1}


def uniform_pair() -> tuple[int, int]:
    debit, credit = random.sample(range(ACCOUNTS), 2)
    return debit, credit


def hot_pair() -> tuple[int, int]:
    hot, other = random.randrange(HOT_ACCOUNTS), random.randrange(HOT_ACCOUNTS, ACCOUNTS)
    return (hot, other) if random.random() < 0.5 else (other, hot)


class _Transfers(FastHttpUser):
    abstract = True
    wait_time = between(0, 0.01)

    def send(self, body: Any, name: str) -> None:
        """POST with retries on 429/503 (same ids); judge the results."""
        payload = orjson.dumps(body)
        for _ in range(RETRIES_MAX):
            with self.client.post("/v1/transfers", data=payload, headers=HEADERS, name=name,
                                  catch_response=True) as response:
                if response.status_code in (429, 503):
                    response.success()  # judged on the retry
                    time.sleep(float(response.headers.get("retry-after") or 1))
                    continue
                self._judge(response)
                return

    @staticmethod
    def _judge(response: ResponseContextManager) -> None:
        if response.status_code >= 500 or response.status_code == 0:
            response.failure(f"{response.status_code}: {(response.text or '')[:200]}")
            return
        body = orjson.loads(response.content or b"{}")
        results = [item["result"] for item in body.get("results", [body])]
        unexpected = [r for r in results if r not in ACCEPTED]
        if unexpected:
            response.failure(f"unexpected results: {sorted(set(unexpected))}")
        else:
            response.success()


class WalletUser(_Transfers):
    weight = 6

    @task
    def pay(self) -> None:
        self.send(transfer(*uniform_pair()), "POST /v1/transfers (single)")


class HotWalletUser(_Transfers):
    weight = 2

    @task
    def pay_hot(self) -> None:
        self.send(transfer(*hot_pair()), "POST /v1/transfers (single, hot)")


class BatchSubmitter(_Transfers):
    weight = 1
    wait_time = between(1, 2)  # a settlement file now and then, not a firehose

    @task
    def settle_file(self) -> None:
        self.send([transfer(*uniform_pair()) for _ in range(BATCH_SIZE)],
                  f"POST /v1/transfers (array of {BATCH_SIZE})")


class BalanceReader(FastHttpUser):
    weight = 2
    wait_time = between(0, 0.01)

    @task
    def balance(self) -> None:
        name = "GET /v1/accounts/{id}"
        with self.client.get(f"/v1/accounts/a{random.randrange(ACCOUNTS)}", name=name,
                             headers=AUTHORIZATION, catch_response=True) as response:
            if response.status_code == 200:
                response.success()
            else:
                response.failure(f"{response.status_code}: {(response.text or '')[:200]}")


def msisdn(wallet: int) -> str:
    return f"2547{wallet:08d}"


class PaymentUser(FastHttpUser):
    """A payer's app: find whose the payee's phone number is, price the payment, pay it."""

    wait_time = between(0, 0.01)

    @task
    def pay_a_phone_number(self) -> None:
        payer = random.randrange(ACCOUNTS)
        payee = random.randrange(ACCOUNTS)
        while payee % PARTICIPANTS == payer % PARTICIPANTS:
            payee = random.randrange(ACCOUNTS)
        party = self._call("GET", f"/v1/parties/MSISDN/{msisdn(payee)}",
                           "GET /v1/parties/{type}/{id}", None)
        if party is None:
            return
        quote = self._call("POST", "/v1/quotes", "POST /v1/quotes", {
            "payer_account_id": f"p{payer}", "payee": {"type": "MSISDN", "id": msisdn(payee)},
            "amount": random.randint(1, 10_000), "amount_type": "RECEIVE", "ledger": "USD"})
        if quote is not None:
            self._call("POST", "/v1/payments", "POST /v1/payments (quoted)",
                       {"id": next_id(), "quote_id": quote["quote_id"]})

    def _call(self, method: str, path: str, name: str, body: Any) -> Any:
        """One request, retried after 429/503 with the same body; its answer, or None."""
        data = None if body is None else orjson.dumps(body)
        for _ in range(RETRIES_MAX):
            with self.client.request(method, path, data=data, headers=HEADERS, name=name,
                                     catch_response=True) as response:
                if response.status_code in (429, 503):
                    response.success()
                    time.sleep(float(response.headers.get("retry-after") or 1))
                    continue
                answer = orjson.loads(response.content or b"{}")
                if response.status_code in (200, 201) and answer.get("result", "ok") in ACCEPTED:
                    response.success()
                    return answer
                response.failure(f"{response.status_code}: {(response.text or '')[:200]}")
                return None
        return None


_CLIENTS: dict[str, Any] = {}  # one payswitch Client per Locust process and host


class ClientUser(User):
    """A wallet app that uses the Python client (switch/client): each user awaits one
    payment at a time; the users of a process share one Client, which sends what they
    call at the same time as arrays. Each call is one Locust request ("client ...").

    Measured (`python -m bench.load --scenario client`): under Locust's gevent the sync
    client's wait does not yield to other users, so their calls go one at a time (about 80
    calls/s at 7 ms each): this user shows the client's latency per call, not its
    throughput. bench/client.py measures that, with asyncio tasks."""

    weight = 6
    wait_time = between(0, 0.01)

    def on_start(self) -> None:
        from switch.client import Client

        host = self.host or ""
        if host not in _CLIENTS:
            _CLIENTS[host] = Client(host, os.environ.get("PAYSWITCH_API_KEY", ""))
        self.payswitch = _CLIENTS[host]

    @task
    def pay(self) -> None:
        from switch.client import PayswitchError, Transfer

        debit, credit = uniform_pair()
        started = time.perf_counter()
        error: Exception | None = None
        try:
            created = self.payswitch.create_transfer(Transfer(
                next_id(), f"a{debit}", f"a{credit}", random.randint(1, 10_000), "USD", 1))
            if created.result not in ACCEPTED:
                error = RuntimeError(f"unexpected result: {created.result}")
        except PayswitchError as refused:
            error = refused
        self.environment.events.request.fire(
            request_type="client", name="create_transfer (batched by the client)",
            response_time=1000 * (time.perf_counter() - started), response_length=0,
            exception=error, context={})
