"""`make load`: put a switch under Locust load and report what it did.

Starts a switch (or targets --host), creates the accounts a0..aN-1, runs Locust headless
with one process per CPU (bench/locustfile.py), writes its CSV and HTML reports under
bench/out/, prints a summary (requests/s, transfers/s, p50/p95/p99, failures) and ends with a
conservation check through the API. `--ui` opens Locust's own web UI instead.

    python -m bench.load [--host URL] [--users 64] [--time 30s] [--scenario mix|wallet|...]
"""

from __future__ import annotations

import argparse
import csv
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import psutil

from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
OUT_DIR = BENCH_DIR / "out"
SCENARIOS = {
    "mix": ["WalletUser", "HotWalletUser", "BatchSubmitter", "BalanceReader"],
    "wallet": ["WalletUser"], "hot": ["HotWalletUser"], "batch": ["BatchSubmitter"],
    "reads": ["BalanceReader"], "client": ["ClientUser"], "payments": ["PaymentUser"],
}
PAYMENT_PARTICIPANTS = 10  # bench/locustfile.py's PaymentUser: wallet pK of bank-(K mod 10)
FUNDS = 10**15  # each participant's liquidity and cap, and each wallet's: never reached
ONE_PROCESS_CEILING_RPS = 7000  # DESIGN.md: what one Locust process drives on this machine
SATURATED = 0.9  # a load-generator process above 90% of a core was the limit


def create_payment_world(url: str, count: int, headers: dict[str, str]) -> None:
    """Participants, their wallets p0..pN-1 (funded) and an MSISDN alias for each."""
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        client.post("/v1/accounts", json={"id": "cash", "ledger": "USD", "code": 1,
                                          "owner": "load"}).raise_for_status()
        for p in range(PAYMENT_PARTICIPANTS):
            bank = f"bank-{p}"
            client.post("/v1/participants", json={"id": bank, "name": bank,
                                                  "ledgers": ["USD"]}).raise_for_status()
            client.post(f"/v1/participants/{bank}/funds", json={
                "id": f"funds-{bank}", "ledger": "USD", "direction": "in", "amount": FUNDS}
                        ).raise_for_status()
            client.put(f"/v1/participants/{bank}/ledgers/USD/net-debit-cap",
                       json={"net_debit_cap": FUNDS}).raise_for_status()
        for start in range(0, count, 8190):
            wallets = range(start, min(count, start + 8190))
            client.post("/v1/accounts", json=[
                {"id": f"p{k}", "ledger": "USD", "code": 1,
                 "owner": f"bank-{k % PAYMENT_PARTICIPANTS}"} for k in wallets]
                        ).raise_for_status()
            client.post("/v1/transfers", json=[
                {"id": f"fund-p{k}", "debit_account_id": "cash", "credit_account_id": f"p{k}",
                 "amount": FUNDS // count, "ledger": "USD", "code": 1} for k in wallets]
                        ).raise_for_status()
        for k in range(count):
            client.post("/v1/parties", json={"type": "MSISDN", "id": f"2547{k:08d}",
                                             "account_id": f"p{k}"}).raise_for_status()


def create_accounts(url: str, count: int, headers: dict[str, str]) -> None:
    with httpx.Client(base_url=url, headers=headers, timeout=120) as client:
        for start in range(0, count, 8190):
            batch = [{"id": f"a{i}", "ledger": "USD", "code": 1, "owner": "load"}
                     for i in range(start, min(count, start + 8190))]
            response = client.post("/v1/accounts", json=batch)
            response.raise_for_status()


class CpuSampler:
    """CPU share of every Locust process, once a second, while the load runs."""

    def __init__(self, root_pid: int) -> None:
        self.root = psutil.Process(root_pid)
        self.known: dict[int, psutil.Process] = {}  # cpu_percent needs the same object twice
        self.samples: list[list[float]] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _processes(self) -> list[psutil.Process]:
        try:
            current = [self.root, *self.root.children(recursive=True)]
        except psutil.NoSuchProcess:
            return []
        return [self.known.setdefault(process.pid, process) for process in current]

    def _run(self) -> None:
        processes = self._processes()
        for process in processes:
            process.cpu_percent(None)
        while not self.stop.wait(1.0):
            shares = []
            for process in self._processes():
                try:
                    shares.append(process.cpu_percent(None) / 100)
                except psutil.NoSuchProcess:
                    continue
            self.samples.append(shares)

    def busiest_median(self) -> float:
        """Median over time of the busiest Locust process's share of one core."""
        peaks = [max(sample) for sample in self.samples if sample]
        return statistics.median(peaks) if peaks else 0.0


def run_locust(args: argparse.Namespace, url: str, prefix: Path, key: str
               ) -> tuple[int, float]:
    command = [sys.executable, "-m", "locust", "-f", str(BENCH_DIR / "locustfile.py"),
               "--host", url, *SCENARIOS[args.scenario]]
    if args.ui:
        command += ["--web-host", "127.0.0.1", "--class-picker"]
    else:
        command += ["--headless", "-u", str(args.users), "-r", str(args.spawn_rate),
                    "-t", args.time, "--processes", str(args.processes), "--csv", str(prefix),
                    "--html", f"{prefix}.html", "--only-summary"]
    env = {**os.environ, "LOAD_ACCOUNTS": str(args.accounts), "PAYSWITCH_API_KEY": key}
    process = subprocess.Popen(command, env=env)
    sampler = CpuSampler(process.pid)
    sampler.thread.start()
    code = process.wait()
    sampler.stop.set()
    return code, sampler.busiest_median()


def read_stats(prefix: Path) -> list[dict[str, Any]]:
    with open(f"{prefix}_stats.csv", newline="") as file:
        return list(csv.DictReader(file))


def transfers_per_request(name: str) -> int:
    if "array of" in name:
        return int(name.rsplit("array of ", 1)[1].rstrip(")"))
    return 1 if name.startswith("POST /v1/transfers") else 0


def summarize(rows: list[dict[str, Any]], busiest: float, processes: int) -> dict[str, Any]:
    total = next(r for r in rows if r["Name"] == "Aggregated")
    transfers_per_s = sum(float(r["Requests/s"]) * transfers_per_request(r["Name"])
                          for r in rows if r["Name"] != "Aggregated")
    summary = {
        "requests_per_s": float(total["Requests/s"]),
        "transfers_per_s": transfers_per_s,
        "latency_ms_p50": float(total["50%"]), "latency_ms_p95": float(total["95%"]),
        "latency_ms_p99": float(total["99%"]),
        "requests": int(total["Request Count"]), "failures": int(total["Failure Count"]),
        "busiest_locust_process_core_share": round(busiest, 2), "locust_processes": processes,
    }
    print("\nper request kind:")
    for row in rows:
        if row["Name"] != "Aggregated":
            print(f"  {row['Name']:<40} {float(row['Requests/s']):>9,.0f} req/s  "
                  f"p50 {row['50%']:>5} ms  p99 {row['99%']:>5} ms  "
                  f"failures {row['Failure Count']}")
    print(f"\nrequests/s {summary['requests_per_s']:,.0f}   transfers/s "
          f"{summary['transfers_per_s']:,.0f}   p50/p95/p99 {total['50%']}/{total['95%']}/"
          f"{total['99%']} ms   failures {summary['failures']} of {summary['requests']}")
    per_process = summary["requests_per_s"] / max(1, processes)
    if busiest >= SATURATED or per_process >= 0.9 * ONE_PROCESS_CEILING_RPS:
        print(f"the LOAD GENERATOR was the limit: its busiest process used {busiest:.0%} of a "
              f"core ({per_process:,.0f} req/s per Locust process; about "
              f"{ONE_PROCESS_CEILING_RPS:,} is one process's ceiling here)")
    else:
        print(f"the switch was the limit (busiest Locust process at {busiest:.0%} of a core)")
    return summary


def conservation(url: str, headers: dict[str, str]) -> bool:
    ledgers = httpx.get(url + "/v1/ledgers", headers=headers, timeout=60).json()["ledgers"]
    ok = True
    for ledger in ledgers:
        if ledger["debits_posted"] or ledger["debits_pending"]:
            verdict = "balanced" if ledger["balanced"] else "NOT BALANCED"
            ok &= ledger["balanced"]
            print(f"conservation {ledger['ledger']}: debits {ledger['debits_posted']:,} credits "
                  f"{ledger['credits_posted']:,} pending {ledger['debits_pending']:,}/"
                  f"{ledger['credits_pending']:,}: {verdict}")
    return ok


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.load", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--host", help="a running switch (default: start one)")
    parser.add_argument("--accounts", type=int, default=10_000)
    parser.add_argument("--users", type=int, default=64)
    parser.add_argument("--spawn-rate", type=int, default=64)
    parser.add_argument("--time", default="30s")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1)
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="mix")
    parser.add_argument("--shards", type=int, default=0,
                        help="for a started switch; 0 = the switch's default")
    parser.add_argument("--port", type=int, default=18081)
    parser.add_argument("--ui", action="store_true", help="Locust's web UI on 127.0.0.1:8089")
    parser.add_argument("--key", help="an operator key, for --host (default: "
                                      "$PAYSWITCH_API_KEY)")
    args = parser.parse_args(argv)
    OUT_DIR.mkdir(exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix="payswitch-load-"))
    switch = None
    try:
        url, key = args.host, args.key or os.environ.get("PAYSWITCH_API_KEY", "")
        if url is None:
            switch = SwitchProcess(work / "data", args.port, args.shards,
                                   work / "switch.log").start()
            url, key = switch.url, switch.operator_key
        headers = {"Authorization": f"Bearer {key}"}
        if args.scenario == "payments":
            create_payment_world(url, args.accounts, headers)
        else:
            create_accounts(url, args.accounts, headers)
        prefix = OUT_DIR / f"load-{args.scenario}-{time.strftime('%Y%m%dT%H%M%S')}"
        code, busiest = run_locust(args, url, prefix, key)
        if args.ui:
            return code
        summarize(read_stats(prefix), busiest, args.processes)
        print(f"reports: {prefix}_stats.csv, {prefix}.html")
        balanced = conservation(url, headers)
        return 0 if balanced else 1
    finally:
        if switch is not None:
            switch.kill_session()
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
