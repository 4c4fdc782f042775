"""kill -9 the whole switch under concurrent load, restart it, and audit the books.

Several thousand transfers (single and in small arrays, same-shard and cross-shard) from
concurrent clients; at a random moment every process of the switch (Ray's included) gets
SIGKILL. After a restart: every acknowledged transfer is present exactly once, the books
balance per ledger, no limited account is overdrawn, and re-sending what was acknowledged
answers `exists` and changes nothing. Seeds 1-3 run in `make test`; more with --run-slow.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from switch.launcher import SwitchProcess

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


def run_crash_scenario(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    # Frequent snapshots, so that kills also land while one is being written.
    switch = SwitchProcess(tmp_path / "data", free_port(), shards=2,
                           log_path=tmp_path / "switch.log",
                           extra_env={"PAYSWITCH_WAL_SNAPSHOT_EVERY_EVENTS": "300"}).start()
    try:
        setup_accounts(switch.url)
        load = Load(switch.url, seed)
        clients = [threading.Thread(target=load.run_client, args=(i,)) for i in range(CLIENTS)]
        for client in clients:
            client.start()
        time.sleep(rng.uniform(1.5, 5.0))
        switch.kill_session()
        load.stop.set()
        for client in clients:
            client.join(timeout=60)
        assert len(load.acked) > 100, "the load never got going"
        in_doubt = len(load.sent) - len(load.acked) - len(load.rejected)
        print(f"seed {seed}: sent {len(load.sent)}, acknowledged {len(load.acked)}, "
              f"rejected {len(load.rejected)}, in doubt at the kill {in_doubt}")
        switch.start()
        shards = httpx.get(switch.url + "/readyz").json()["shards"]
        print(f"seed {seed}: recovered from snapshots at "
              f"{[s['snapshot_seq'] for s in shards]} of {[s['last_seq'] for s in shards]}")
        audit(switch.url, load)
        resend_acknowledged(switch.url, load)
    finally:
        switch.kill_session()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_kill_9_under_load(tmp_path: Path, seed: int) -> None:
    run_crash_scenario(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4, 24))
def test_kill_9_under_load_many_seeds(tmp_path: Path, seed: int) -> None:
    run_crash_scenario(tmp_path, seed)
