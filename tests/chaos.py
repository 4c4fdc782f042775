"""Load that remembers what the switch acknowledged, and the audit of the books after a crash.

Shared by the kill -9 crash test, the failpoint tests and the WAL tool tests.
"""

from __future__ import annotations

import http.client
import itertools
import random
import threading
import time
import urllib.parse
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import orjson

from tests.launcher import free_port as free_port  # defined there, used from here too

ACCOUNTS = [f"acct-{i}" for i in range(40)]
CLIENTS = 6
SEED_FUNDS = 5_000
AUDIT_READERS = 8


PENDING_TIMEOUT_MS = 1500
# Neither acknowledged nor refused by a rule: a post or void that lost to expiry, a part still
# settling, an item a full log refused (storage_full: nothing of it applied).
NEUTRAL = {"pending_transfer_expired", "pending_transfer_already_posted",
           "pending_transfer_already_voided", "in_flight", "storage_full"}


def transfer(transfer_id: str, debit: str, credit: str, amount: int) -> dict[str, Any]:
    return {"id": transfer_id, "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "ledger": "USD", "code": 7}


class Load:
    """Concurrent clients that remember what the switch acknowledged."""

    def __init__(self, url: str, seed: int, headers: dict[str, str]) -> None:
        self.url = url
        self.seed = seed
        self.headers = headers  # the operator's key
        self.sent: dict[str, dict[str, Any]] = {}
        self.acked: set[str] = set()  # answered ok or exists: the switch promised it is there
        self.rejected: set[str] = set()  # answered a ledger rejection: must not be there
        self.chains: list[list[str]] = []  # linked chains sent: each all there or none
        self.answered: set[str] = set()  # got an answer (any): not in flight at a kill
        self.failures: list[str] = []  # what a client thread met that it should not have
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self.killed = threading.Event()  # set just before the switch is killed
        self._threads: list[threading.Thread] = []

    def start(self, clients: int = CLIENTS) -> None:
        self._threads = [threading.Thread(target=self.run_client, args=(i,))
                         for i in range(clients)]
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def run_client(self, client_index: int) -> None:
        """One client; anything unexpected is kept in `failures` (an exception in a thread
        would only be a warning under pytest) and ends this client."""
        try:
            self._run_client(client_index)
        except Exception as error:
            with self.lock:
                self.failures.append(f"client {client_index}: {error!r}")

    def _run_client(self, client_index: int) -> None:
        rng = random.Random(self.seed * 1000 + client_index)
        open_pending: list[dict[str, Any]] = []  # acknowledged, not yet posted or voided
        with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as client:
            n = 0
            while not self.stop.is_set():
                size = rng.choice([1, 1, 1, 5, 20, 0])
                batch = []
                for _ in range(size):
                    batch.append(self._next(rng, f"s{self.seed}-c{client_index}-{n}",
                                            open_pending))
                    n += 1
                if not size:  # a linked chain of 2 to 4, its members on any shards
                    batch = self._chain(rng, f"s{self.seed}-c{client_index}-{n}-",
                                        open_pending)
                    n += 1
                    size = len(batch)
                with self.lock:
                    self.sent.update((t["id"], t) for t in batch)
                    if batch[0].get("flags", {}).get("linked"):
                        self.chains.append([t["id"] for t in batch])
                try:
                    response = client.post("/v1/transfers", json=batch if size > 1 else batch[0])
                except httpx.HTTPError:
                    if self.stop.is_set() or self.killed.is_set() or not self._serving():
                        return  # the switch is gone (killed, or a failpoint ended it): in doubt
                    raise
                with self.lock:
                    self.answered.update(t["id"] for t in batch)
                for item in self.record(batch, response):
                    if item.get("flags", {}).get("pending"):
                        open_pending.append(item)

    def _serving(self) -> bool:
        """Whether the switch still answers: a request that failed on the wire is only a
        failure of the switch while it does."""
        try:
            return httpx.get(self.url + "/readyz", timeout=5).status_code == 200
        except httpx.HTTPError:
            return False

    @staticmethod
    def _next(rng: random.Random, transfer_id: str, open_pending: list[dict[str, Any]]
              ) -> dict[str, Any]:
        """A plain transfer mostly; now and then a pending one (it expires unless resolved),
        or a post (all or part) or void of one this client has open."""
        roll = rng.random()
        if roll < 0.15 and open_pending:
            target = open_pending.pop(rng.randrange(len(open_pending)))
            if rng.random() < 0.6:
                amount = rng.choice([None, rng.randint(1, target["amount"])])
                body = {"id": transfer_id, "pending_id": target["id"],
                        "flags": {"post_pending_transfer": True}}
                return body if amount is None else {**body, "amount": amount}
            return {"id": transfer_id, "pending_id": target["id"],
                    "flags": {"void_pending_transfer": True}}
        debit, credit = rng.sample(ACCOUNTS, 2)
        body = transfer(transfer_id, debit, credit, rng.randint(1, 400))
        if roll < 0.3:
            body.update(flags={"pending": True}, timeout_ms=PENDING_TIMEOUT_MS)
        return body

    @staticmethod
    def _chain(rng: random.Random, prefix: str, open_pending: list[dict[str, Any]]
               ) -> list[dict[str, Any]]:
        """Money passed along a path of accounts, some members pending, now and then ending
        with a post or void of a pending transfer: later members may spend what earlier ones
        bring, and the chain fails whole when one cannot pay."""
        path = rng.sample(ACCOUNTS, rng.randint(3, 5))
        amount = rng.randint(1, 3000)
        chain = []
        for index, (debit, credit) in enumerate(itertools.pairwise(path)):
            body = transfer(f"{prefix}{index}", debit, credit, amount)
            flags = {"linked": index < len(path) - 2}
            if rng.random() < 0.2:
                flags["pending"] = True
                body["timeout_ms"] = PENDING_TIMEOUT_MS
            chain.append({**body, "flags": flags})
        if open_pending and rng.random() < 0.3:
            chain[-1]["flags"]["linked"] = True
            target = open_pending.pop(rng.randrange(len(open_pending)))
            flag = rng.choice(["post_pending_transfer", "void_pending_transfer"])
            chain.append({"id": f"{prefix}r", "pending_id": target["id"], "flags": {flag: True}})
        return chain

    def record(self, batch: list[dict[str, Any]], response: httpx.Response
                ) -> list[dict[str, Any]]:
        """Remember what was acknowledged and rejected; returns the acknowledged items."""
        body = response.json()
        results = body["results"] if "results" in body else [{"result": body.get("result")}]
        assert response.status_code in (200, 201, 422, 503), response.text
        if response.status_code == 503:
            return []
        acknowledged = []
        with self.lock:
            for item, result in zip(batch, results, strict=True):
                if result["result"] in ("ok", "exists"):
                    self.acked.add(item["id"])
                    acknowledged.append(item)
                elif result["result"] in NEUTRAL:
                    continue  # a post or void that lost to expiry, or a part still settling
                else:
                    assert result["result"] in ("exceeds_credits", "linked_event_failed"), result
                    self.rejected.add(item["id"])
        return acknowledged


def setup_accounts(url: str, headers: dict[str, str]) -> None:
    accounts = [{"id": "bank", "ledger": "USD", "code": 1, "owner": "op"}] + [
        {"id": a, "ledger": "USD", "code": 1, "owner": "psp",
         "flags": {"debits_must_not_exceed_credits": True}} for a in ACCOUNTS]
    response = httpx.post(url + "/v1/accounts", json=accounts, headers=headers, timeout=60)
    assert {r["result"] for r in response.json()["results"]} == {"ok"}
    funding = [transfer(f"fund-{a}", "bank", a, SEED_FUNDS) for a in ACCOUNTS]
    response = httpx.post(url + "/v1/transfers", json=funding, headers=headers, timeout=60)
    assert {r["result"] for r in response.json()["results"]} == {"ok"}


def _matches(sent: dict[str, Any], stored: dict[str, Any]) -> bool:
    """What the client sent is what is stored (a post or void's left-out fields are filled)."""
    flags_sent = sent.get("flags", {})
    return all(stored[k] == v for k, v in sent.items() if k != "flags") and all(
        stored["flags"][k] == v for k, v in flags_sent.items())


class _Readers:
    """GETs from several threads, each on its own kept-alive connection (the standard
    library's client: httpx's per-request cost made a big audit take tens of seconds)."""

    def __init__(self, url: str, headers: dict[str, str]) -> None:
        parsed = urllib.parse.urlsplit(url)
        self.host, self.port = parsed.hostname or "127.0.0.1", parsed.port
        self.headers = headers
        self._local = threading.local()

    def get(self, path: str) -> tuple[int, bytes]:
        for attempt in range(3):  # a kept-alive connection the server closed: open another
            connection = getattr(self._local, "connection", None)
            if connection is None:
                connection = http.client.HTTPConnection(self.host, self.port, timeout=60)
                self._local.connection = connection
            try:
                connection.request("GET", path, headers=self.headers)
                response = connection.getresponse()
                return response.status, response.read()
            except (OSError, http.client.HTTPException):
                connection.close()
                self._local.connection = None
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")


def _present(url: str, load: Load) -> dict[str, dict[str, Any]]:
    """Every transfer sent that exists, once no pending one is left (all have a timeout).
    Read by several threads at once: a soak's rounds send tens of thousands. After the
    first pass only what may still change is read again: the pending and the absent (a
    transfer committed and not pending is final)."""
    readers = _Readers(url, load.headers)

    def stored(transfer_id: str) -> tuple[str, int, bytes]:
        return (transfer_id, *readers.get(f"/v1/transfers/{urllib.parse.quote(transfer_id)}"))

    deadline = time.monotonic() + 60
    present: dict[str, dict[str, Any]] = {}
    unsettled = list(load.sent)
    while True:
        with ThreadPoolExecutor(AUDIT_READERS) as pool:
            for transfer_id, status, body in pool.map(stored, unsettled):
                assert status in (200, 404), body
                present.pop(transfer_id, None)
                if status == 200:
                    sent, found = load.sent[transfer_id], orjson.loads(body)
                    assert _matches(sent, found), ("a stored transfer changed", sent, found)
                    present[transfer_id] = found
        unsettled = [i for i in load.sent if i not in present
                     or present[i].get("status") == "pending"]
        if all(t.get("status") != "pending" for t in present.values()):
            return present
        assert time.monotonic() < deadline, "pending transfers never expired"
        time.sleep(0.5)


def audit(url: str, load: Load) -> None:
    with httpx.Client(base_url=url, headers=load.headers, timeout=60) as client:
        present = _present(url, load)
        missing = load.acked - set(present)
        assert not missing, f"acknowledged transfers lost: {sorted(missing)[:10]}"
        assert not (load.rejected & set(present)), "a rejected transfer was applied"
        expected_debits: Counter[str] = Counter()
        expected_credits: Counter[str] = Counter({a: SEED_FUNDS for a in ACCOUNTS})
        for stored in present.values():
            flags = stored["flags"]
            if flags["pending"] or flags["void_pending_transfer"]:
                continue  # held, then moved by its post (below) or released
            if flags["post_pending_transfer"]:
                pending = present[stored["pending_id"]]
                assert (pending["status"], pending["amount_posted"]) == \
                    ("posted", stored["amount"]), (stored, pending)
            expected_debits[stored["debit_account_id"]] += stored["amount"]
            expected_credits[stored["credit_account_id"]] += stored["amount"]
        for stored in present.values():
            if stored["flags"]["void_pending_transfer"]:
                assert present[stored["pending_id"]]["status"] == "voided", stored
        _wait_for_holds_released(client)
        for name in ACCOUNTS:
            account = client.get(f"/v1/accounts/{name}").json()
            # Exactly once: the balances are the sum of the transfers that exist, no more.
            assert account["debits_posted"] == expected_debits[name], name
            assert account["credits_posted"] == expected_credits[name], name
            assert account["debits_posted"] <= account["credits_posted"], "overdrawn"
            assert account["debits_pending"] == account["credits_pending"] == 0
            ids = _history_ids(client, name)
            assert len(ids) == len(set(ids)), "a transfer appears twice in a history"
            posted = {transfer_id for transfer_id, t in present.items()
                      if not (t["flags"]["pending"] or t["flags"]["void_pending_transfer"])
                      and name in (t["debit_account_id"], t["credit_account_id"])}
            posted.add(f"fund-{name}")  # setup_accounts
            assert set(ids) == posted, ("history differs from what was posted", name,
                                        sorted(set(ids) ^ posted)[:10])
        for ledger in client.get("/v1/ledgers").json()["ledgers"]:
            assert ledger["balanced"], ledger
        for chain in load.chains:
            there = [transfer_id in present for transfer_id in chain]
            assert all(there) or not any(there), ("a linked chain applied in part", chain, there)


def _wait_for_holds_released(client: httpx.Client, timeout_s: float = 30) -> None:
    """A pending transfer expired at its home releases its parts on other shards a moment
    later (and redrive settles a part a crash left in doubt within its interval): wait for
    that, not for ever. A hold left after `timeout_s` fails the audit's check below."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        accounts = [client.get(f"/v1/accounts/{name}").json() for name in ACCOUNTS]
        if all(a["debits_pending"] == a["credits_pending"] == 0 for a in accounts):
            return
        time.sleep(0.2)


def _history_ids(client: httpx.Client, account_id: str) -> list[str]:
    """Every transfer in the account's history, newest first, page by page."""
    ids: list[str] = []
    cursor = ""
    while True:
        page = client.get(f"/v1/accounts/{account_id}/transfers",
                          params={"limit": 100, "cursor": cursor}).json()
        ids += [t["id"] for t in page["transfers"]]
        if page["next_cursor"] is None:
            return ids
        cursor = page["next_cursor"]


def resend_acknowledged(url: str, load: Load) -> None:
    before = httpx.get(url + "/v1/ledgers", headers=load.headers).json()
    in_chains = {transfer_id for chain in load.chains for transfer_id in chain}
    units = [[i] for i in sorted(load.acked - in_chains)] + [
        chain for chain in load.chains if set(chain) <= load.acked]  # chains resent whole
    for start in range(0, len(units), 200):
        batch = [load.sent[i] for unit in units[start:start + 200] for i in unit]
        response = httpx.post(url + "/v1/transfers", json=batch, headers=load.headers,
                              timeout=60)
        assert {r["result"] for r in response.json()["results"]} == {"exists"}
    assert httpx.get(url + "/v1/ledgers", headers=load.headers).json() == before
