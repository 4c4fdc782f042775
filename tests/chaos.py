"""Load that remembers what the switch acknowledged, and the audit of the books after a crash.

Shared by the kill -9 crash test, the failpoint tests and the WAL tool tests.
"""

from __future__ import annotations

import random
import socket
import threading
from collections import Counter
from typing import Any

import httpx

ACCOUNTS = [f"acct-{i}" for i in range(40)]
CLIENTS = 6
SEED_FUNDS = 5_000


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def transfer(transfer_id: str, debit: str, credit: str, amount: int) -> dict[str, Any]:
    return {"id": transfer_id, "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "ledger": "USD", "code": 7}


class Load:
    """Concurrent clients that remember what the switch acknowledged."""

    def __init__(self, url: str, seed: int) -> None:
        self.url = url
        self.seed = seed
        self.sent: dict[str, dict[str, Any]] = {}
        self.acked: set[str] = set()  # answered ok or exists: the switch promised it is there
        self.rejected: set[str] = set()  # answered a ledger rejection: must not be there
        self.lock = threading.Lock()
        self.stop = threading.Event()

    def run_client(self, client_index: int) -> None:
        rng = random.Random(self.seed * 1000 + client_index)
        with httpx.Client(base_url=self.url, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                size = rng.choice([1, 1, 1, 5, 20])
                batch = []
                for _ in range(size):
                    debit, credit = rng.sample(ACCOUNTS, 2)
                    batch.append(transfer(f"s{self.seed}-c{client_index}-{n}", debit, credit,
                                          rng.randint(1, 400)))
                    n += 1
                with self.lock:
                    self.sent.update((t["id"], t) for t in batch)
                try:
                    response = client.post("/v1/transfers", json=batch if size > 1 else batch[0])
                except httpx.HTTPError:
                    return  # the switch is gone: these are in doubt
                self._record(batch, response)

    def _record(self, batch: list[dict[str, Any]], response: httpx.Response) -> None:
        body = response.json()
        results = body["results"] if "results" in body else [{"result": body.get("result")}]
        assert response.status_code in (200, 201, 422, 503), response.text
        if response.status_code == 503:
            return
        with self.lock:
            for item, result in zip(batch, results, strict=True):
                if result["result"] in ("ok", "exists"):
                    self.acked.add(item["id"])
                else:
                    assert result["result"] == "exceeds_credits", result
                    self.rejected.add(item["id"])


def setup_accounts(url: str) -> None:
    accounts = [{"id": "bank", "ledger": "USD", "code": 1, "owner": "op"}] + [
        {"id": a, "ledger": "USD", "code": 1, "owner": "psp",
         "flags": {"debits_must_not_exceed_credits": True}} for a in ACCOUNTS]
    response = httpx.post(url + "/v1/accounts", json=accounts, timeout=60)
    assert {r["result"] for r in response.json()["results"]} == {"ok"}
    funding = [transfer(f"fund-{a}", "bank", a, SEED_FUNDS) for a in ACCOUNTS]
    response = httpx.post(url + "/v1/transfers", json=funding, timeout=60)
    assert {r["result"] for r in response.json()["results"]} == {"ok"}


def audit(url: str, load: Load) -> None:
    with httpx.Client(base_url=url, timeout=60) as client:
        present: dict[str, dict[str, Any]] = {}
        for transfer_id, sent in load.sent.items():
            response = client.get(f"/v1/transfers/{transfer_id}")
            assert response.status_code in (200, 404), response.text
            if response.status_code == 200:
                stored = response.json()
                assert {k: stored[k] for k in sent} == sent, "a stored transfer changed"
                present[transfer_id] = stored
        missing = load.acked - set(present)
        assert not missing, f"acknowledged transfers lost: {sorted(missing)[:10]}"
        assert not (load.rejected & set(present)), "a rejected transfer was applied"
        expected_debits: Counter[str] = Counter()
        expected_credits: Counter[str] = Counter({a: SEED_FUNDS for a in ACCOUNTS})
        for stored in present.values():
            expected_debits[stored["debit_account_id"]] += stored["amount"]
            expected_credits[stored["credit_account_id"]] += stored["amount"]
        for name in ACCOUNTS:
            account = client.get(f"/v1/accounts/{name}").json()
            # Exactly once: the balances are the sum of the transfers that exist, no more.
            assert account["debits_posted"] == expected_debits[name], name
            assert account["credits_posted"] == expected_credits[name], name
            assert account["debits_posted"] <= account["credits_posted"], "overdrawn"
            assert account["debits_pending"] == account["credits_pending"] == 0
            history = client.get(f"/v1/accounts/{name}/transfers?limit=1000").json()["transfers"]
            ids = [t["id"] for t in history]
            assert len(ids) == len(set(ids)), "a transfer appears twice in a history"
        for ledger in client.get("/v1/ledgers").json()["ledgers"]:
            assert ledger["balanced"], ledger


def resend_acknowledged(url: str, load: Load) -> None:
    before = httpx.get(url + "/v1/ledgers").json()
    acked = [load.sent[i] for i in sorted(load.acked)]
    for start in range(0, len(acked), 500):
        response = httpx.post(url + "/v1/transfers", json=acked[start:start + 500], timeout=60)
        assert {r["result"] for r in response.json()["results"]} == {"exists"}
    assert httpx.get(url + "/v1/ledgers").json() == before
