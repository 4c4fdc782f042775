"""kill -9 the whole switch while participants pay each other, restart it, and audit the
switch layer (docs/SWITCH.md).

Concurrent clients make payments between three participants' wallets: immediate ones and
two-phase ones (prepared, then fulfilled, aborted or left to expire), under caps low enough
that some are refused, while the operator closes settlement windows and settles each one.
At a random moment every process of the switch gets SIGKILL. After a
restart (seed 1 in `make test`; seeds 2-11 with --run-slow; the same with a failpoint of the
write path firing instead of the kill: the chain's in `make test`, all with --run-slow):
- every acknowledged payment is there, in the state it was acknowledged in, and every
  refused one is not;
- each wallet holds exactly what the payments that are there moved;
- every payment between participants is in exactly one window, each window's nets sum to
  zero, and every settlement acknowledged is there;
- each participant's position is what it sent minus what it received minus what was
  settled, never above its cap; the positions sum to zero but for what settlements under way
  have moved; its settlement account moved by exactly what was settled;
- each participant's NDC alarm threshold is still set, and every NDC alarm recorded was a
  real crossing of it;
- the books balance, and re-sending the acknowledged payments answers `exists` and moves
  nothing.
"""

from __future__ import annotations

import random
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import httpx
import pytest

from actors import failpoints
from tests.chaos import free_port
from tests.launcher import SwitchProcess
from tests.test_failpoints import fired

BANKS = ("bank-0", "bank-1", "bank-2")
WALLETS = {bank: [f"{bank}-w{n}" for n in range(6)] for bank in BANKS}
WALLET_FUNDS = 5_000
CAP = 1_000
ALARM_PERCENT = 40  # of the cap: positions cross it under this load, alarms get recorded
FUNDS = 100_000  # each participant's settlement account at the start
TIMEOUT_MS = 1_500
CLIENTS = 4
ACKNOWLEDGED_MIN = 100


class Operator:
    """Closes windows now and then, and settles each closed one: what it got an answer for
    is remembered (a settle acknowledged must be there after the restart)."""

    def __init__(self, url: str, seed: int, headers: dict[str, str]) -> None:
        self.url = url
        self.rng = random.Random(seed)
        self.headers = headers
        self.settled: set[tuple[str, str]] = set()  # (settlement, participant) acknowledged
        self.failures: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run)

    def _run(self) -> None:
        try:
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as http:
                while not self.stop.wait(self.rng.uniform(0.2, 0.6)):
                    self._close_and_settle(http)
        except httpx.HTTPError:
            return  # the switch was killed
        except Exception as error:
            self.failures.append(repr(error))

    def _close_and_settle(self, http: httpx.Client) -> None:
        closed = http.post("/v1/settlement-windows/close", json={"ledger": "USD"})
        if closed.status_code == 503:
            return
        assert closed.status_code == 200, closed.text
        window = closed.json()["closed"]
        settlement = f"stl-{window}"
        made = http.post("/v1/settlements", json={"id": settlement, "ledger": "USD",
                                                  "window_ids": [window]})
        if made.status_code == 503:
            return
        assert made.status_code in (200, 201), made.text
        for bank in BANKS:
            answer = http.put(f"/v1/settlements/{settlement}/participants/{bank}",
                              json={"state": "settled"})
            if answer.status_code == 200:
                self.settled.add((settlement, bank))
            else:  # a debtor short of funds, or the kill
                assert answer.status_code in (422, 503), answer.text


class PaymentLoad:
    def __init__(self, url: str, seed: int, headers: dict[str, str]) -> None:
        self.url = url
        self.seed = seed
        self.headers = headers
        self.sent: dict[str, dict[str, Any]] = {}
        self.expected: dict[str, set[str]] = {}  # payment id -> the states it may be in
        self.acked_immediate: set[str] = set()
        self.failures: list[str] = []
        self.lock = threading.Lock()
        self.stop = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> None:
        self._threads = [threading.Thread(target=self._client, args=(n,)) for n in
                         range(CLIENTS)]
        for thread in self._threads:
            thread.start()

    def finish(self) -> None:
        self.stop.set()
        for thread in self._threads:
            thread.join(timeout=60)

    def _client(self, index: int) -> None:
        rng = random.Random(self.seed * 100 + index)
        prepared: list[str] = []
        try:
            with httpx.Client(base_url=self.url, headers=self.headers, timeout=30) as http:
                n = 0
                while not self.stop.is_set():
                    n += 1
                    if prepared and rng.random() < 0.4:
                        self._resolve(http, prepared.pop(rng.randrange(len(prepared))),
                                      rng.choice(["fulfil", "abort"]))
                    else:
                        payment_id = f"s{self.seed}-c{index}-{n}"
                        if self._pay(http, rng, payment_id):
                            prepared.append(payment_id)
        except httpx.HTTPError:
            return  # the switch was killed: what was in flight is in doubt
        except Exception as error:
            with self.lock:
                self.failures.append(f"client {index}: {error!r}")

    def _pay(self, http: httpx.Client, rng: random.Random, payment_id: str) -> bool:
        """Send one payment; True when it was prepared (two-phase) and acknowledged."""
        payer, payee = rng.sample([w for wallets in WALLETS.values() for w in wallets], 2)
        body: dict[str, Any] = {
            "id": payment_id, "payer_account_id": payer, "payee_account_id": payee,
            "amount": rng.randint(1, 400), "ledger": "USD"}
        two_phase = rng.random() < 0.3
        if two_phase:
            body.update(mode="two_phase", timeout_ms=TIMEOUT_MS)
        with self.lock:
            self.sent[payment_id] = body
            self.expected[payment_id] = {"prepared", "committed", "aborted", "expired",
                                         "absent"}  # in doubt until answered
        answer = http.post("/v1/payments", json=body)
        result = answer.json().get("result")
        with self.lock:
            if result in ("ok", "exists"):
                self.expected[payment_id] = ({"prepared", "committed", "aborted", "expired"}
                                             if two_phase else {"committed"})
                if not two_phase:
                    self.acked_immediate.add(payment_id)
                return two_phase
            if result in ("exceeds_net_debit_cap", "exceeds_credits"):
                self.expected[payment_id] = {"absent"}
                return False
        assert answer.status_code == 503, answer.text  # in_flight: still in doubt
        return False

    def _resolve(self, http: httpx.Client, payment_id: str, how: str) -> None:
        answer = http.post(f"/v1/payments/{payment_id}/{how}")
        if answer.status_code == 503:
            return  # a shard went down with the switch: in doubt, as it was
        result = answer.json().get("result") or answer.json().get("code")
        with self.lock:
            if result in ("ok", "exists"):
                self.expected[payment_id] = {"committed" if how == "fulfil" else "aborted"}
            else:
                assert result in ("pending_transfer_expired", "in_flight"), answer.text


def setup(switch: SwitchProcess) -> None:
    http = switch.http
    http.post("/v1/accounts", json={"id": "cash", "ledger": "USD", "code": 1, "owner": "op"}
              ).raise_for_status()
    for bank in BANKS:
        http.post("/v1/participants", json={"id": bank, "name": bank, "ledgers": ["USD"]}
                  ).raise_for_status()
        http.post(f"/v1/participants/{bank}/funds", json={
            "id": f"f-{bank}", "ledger": "USD", "direction": "in", "amount": FUNDS}
                  ).raise_for_status()
        http.put(f"/v1/participants/{bank}/ledgers/USD/net-debit-cap",
                 json={"net_debit_cap": CAP, "alarm_percent": ALARM_PERCENT}
                 ).raise_for_status()
        http.post("/v1/accounts", json=[
            {"id": wallet, "ledger": "USD", "code": 1, "owner": bank,
             "flags": {"debits_must_not_exceed_credits": True}} for wallet in WALLETS[bank]]
                  ).raise_for_status()
        http.post("/v1/transfers", json=[
            {"id": f"load-{wallet}", "debit_account_id": "cash", "credit_account_id": wallet,
             "amount": WALLET_FUNDS, "ledger": "USD", "code": 1} for wallet in WALLETS[bank]]
                  ).raise_for_status()


def audit_windows(switch: SwitchProcess, committed_between_banks: int,
                  operator: Operator) -> dict[str, int]:
    """Every payment between participants in exactly one window; each window's nets sum to
    zero; what was acknowledged settled is settled. Returns each bank's settled nets."""
    http = switch.http
    number, payments = 1, 0
    settled_nets: Counter[str] = Counter()
    while True:
        answer = http.get(f"/v1/settlement-windows/USD.{number}/report")
        if answer.status_code == 404:
            break
        found = answer.json()
        payments += found["payments"]
        assert sum(row["net"] for row in found["participants"]) == 0, found
        settlement = http.get(f"/v1/settlements/stl-USD.{number}")
        if settlement.status_code == 200:
            for row in settlement.json()["participants"]:
                acked = (f"stl-USD.{number}", row["participant_id"]) in operator.settled
                assert row["state"] == "settled" or not acked, row
                if row["state"] == "settled":
                    settled_nets[row["participant_id"]] += row["net"]
        number += 1
    assert payments == committed_between_banks, (payments, committed_between_banks)
    return settled_nets


def audit(switch: SwitchProcess, load: PaymentLoad, operator: Operator) -> None:
    http = switch.http
    deadline = time.monotonic() + 60
    while True:  # every prepared payment expires (1.5 s), or was resolved
        states = {payment_id: state_of(http, payment_id) for payment_id in load.sent}
        if "prepared" not in states.values():
            break
        assert time.monotonic() < deadline, "prepared payments never expired"
        time.sleep(0.5)
    moved: Counter[str] = Counter()  # wallet -> credits - debits from payments
    position: Counter[str] = Counter()
    between_banks = 0
    for payment_id, state in states.items():
        assert state in load.expected[payment_id], (payment_id, state,
                                                     load.expected[payment_id])
        if state != "committed":
            continue
        body = load.sent[payment_id]
        moved[body["payer_account_id"]] -= body["amount"]
        moved[body["payee_account_id"]] += body["amount"]
        payer, payee = (body[side].rsplit("-", 1)[0] for side in ("payer_account_id",
                                                                  "payee_account_id"))
        if payer != payee:
            position[payer] += body["amount"]
            position[payee] -= body["amount"]
            between_banks += 1
    settled = audit_windows(switch, between_banks, operator)
    for wallet in (w for wallets in WALLETS.values() for w in wallets):
        account = http.get(f"/v1/accounts/{wallet}").json()
        assert account["credits_posted"] - account["debits_posted"] == \
            WALLET_FUNDS + moved[wallet], wallet
        assert account["debits_pending"] == 0, wallet
    stood = {bank: http.get(f"/v1/participants/{bank}/positions").json()["positions"][0]
             for bank in BANKS}
    for bank in BANKS:
        assert stood[bank]["alarm_percent"] == ALARM_PERCENT, stood[bank]  # durable
        assert stood[bank]["position"] == position[bank] - settled[bank], (
            bank, stood[bank], position, settled)
        assert stood[bank]["settlement_balance"] == FUNDS - settled[bank], (bank, stood[bank])
        assert stood[bank]["position"] <= stood[bank]["net_debit_cap"]  # raised, maybe
        assert stood[bank]["net_debit_cap"] <= stood[bank]["settlement_balance"]
        assert stood[bank]["headroom"] >= 0
    # Positions sum to zero but for settlements under way (a debtor short of funds, or the
    # kill between two participants): what was settled has left the positions.
    assert sum(s["position"] for s in stood.values()) == -sum(settled.values())
    # The multilateral account holds what debtors paid in and creditors were not yet paid.
    multilateral = http.get("/v1/accounts/hub:multilateral:USD").json()
    assert multilateral["credits_posted"] - multilateral["debits_posted"] == \
        sum(settled.values()) >= 0
    assert multilateral["debits_pending"] == multilateral["credits_pending"] == 0
    assert all(ledger["balanced"] for ledger in http.get("/v1/ledgers").json()["ledgers"])


def audit_alarms(http: httpx.Client) -> int:
    """Every NDC alarm recorded (before or after the kill) was a real crossing of its
    participant's threshold: at or above ALARM_PERCENT of its cap. Returns how many."""
    alarms, cursor = [], "0"
    while True:
        page = http.get(f"/v1/events?after={cursor}&limit=1000").json()
        alarms += [e["event"] for e in page["events"] if e["event"]["type"] == "ndc_alarm"]
        if not page["events"]:
            break
        cursor = page["next"]
    for alarm in alarms:
        assert alarm["participant_id"] in BANKS and alarm["percent"] == ALARM_PERCENT, alarm
        assert alarm["position"] * 100 >= ALARM_PERCENT * alarm["net_debit_cap"], alarm
    return len(alarms)


def state_of(http: httpx.Client, payment_id: str) -> str:
    answer = http.get(f"/v1/payments/{payment_id}")
    if answer.status_code == 404:
        return "absent"
    assert answer.status_code == 200, answer.text
    return str(answer.json()["state"])


def resend(switch: SwitchProcess, load: PaymentLoad) -> None:
    before = switch.http.get("/v1/ledgers").json()
    for payment_id in sorted(load.acked_immediate):
        answer = switch.http.post("/v1/payments", json=load.sent[payment_id])
        assert answer.json()["result"] == "exists", answer.text
    assert switch.http.get("/v1/ledgers").json() == before


@pytest.mark.parametrize("seed", [1])
def test_kill_9_while_participants_pay(tmp_path: Path, seed: int) -> None:
    run_payment_crash(tmp_path, seed)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(2, 12))
def test_kill_9_while_participants_pay_many_seeds(tmp_path: Path, seed: int) -> None:
    run_payment_crash(tmp_path, seed)


@pytest.mark.parametrize("name", [failpoints.ROUTER_CHAIN_HALF_DECIDED])
def test_a_failpoint_while_participants_pay(tmp_path: Path, name: str) -> None:
    run_payment_crash(tmp_path, 1, name)


@pytest.mark.slow
@pytest.mark.parametrize("name", failpoints.ALL)
@pytest.mark.parametrize("seed", [2, 3])
def test_every_failpoint_while_participants_pay(tmp_path: Path, name: str, seed: int) -> None:
    run_payment_crash(tmp_path, seed, name)


def run_payment_crash(tmp_path: Path, seed: int, failpoint: str | None = None) -> None:
    """Payments, window closes and settlements under load until a kill -9 (at a random
    moment) or a failpoint ends the switch; then the restart and the audit."""
    rng = random.Random(seed)
    env = {"PAYSWITCH_WAL_SNAPSHOT_EVERY_EVENTS": "300"}
    if failpoint is not None:  # late enough to fire under the load, not during the set-up
        env[failpoints.ENVIRONMENT_VARIABLE] = f"{failpoint}=#{rng.randint(60, 300)}"
    switch = SwitchProcess(tmp_path / "data", free_port(), shards=2,
                           log_path=tmp_path / "switch.log", extra_env=env).start()
    try:
        setup(switch)
        load = PaymentLoad(switch.url, seed, switch.headers)
        operator = Operator(switch.url, seed, switch.headers)
        load.start()
        operator.thread.start()
        if failpoint is None:
            time.sleep(rng.uniform(2.0, 4.0))
        else:
            deadline = time.monotonic() + 90
            while not fired(switch):
                assert time.monotonic() < deadline, f"{failpoint} never fired"
                time.sleep(0.2)
            time.sleep(0.5)  # let requests under way meet the broken switch
        switch.kill_session()
        load.finish()
        operator.stop.set()
        operator.thread.join(timeout=60)
        assert not load.failures, load.failures
        assert not operator.failures, operator.failures
        acknowledged = sum(1 for states in load.expected.values() if "absent" not in states)
        refused = sum(1 for states in load.expected.values() if states == {"absent"})
        print(f"seed {seed} {failpoint or 'kill -9'}: sent {len(load.sent)}, acknowledged "
              f"{acknowledged}, refused {refused}, settled {len(operator.settled)}")
        if failpoint is None:
            assert acknowledged >= ACKNOWLEDGED_MIN, "the load never got going"
            assert refused > 0, "no payment met its cap: the test proves less than it says"
            assert operator.settled, "no settlement was made before the kill"
        else:
            assert f"failpoint {failpoint} fired" in (tmp_path / "switch.log").read_text()
        verified = subprocess.run([sys.executable, "-m", "switch.cli", "wal", "verify",
                                   str(tmp_path / "data")], capture_output=True, text=True,
                                  timeout=300)
        assert verified.returncode == 0, verified.stdout + verified.stderr
        switch.extra_env = {}
        switch.start()
        audit(switch, load, operator)
        print(f"ndc alarms recorded: {audit_alarms(switch.http)}")
        resend(switch, load)
    finally:
        switch.kill_session()
