"""Payments between participants against single transfers, in one run (the switch-layer
issue's figures).

One switch (default settings), `--participants` participants on USD with caps they never
reach, `--wallets` wallets (wallet k belongs to participant k mod participants). Then wrk
(64 connections, `--seconds` each) sends, one item per request, alternated `--runs` times:

- `transfer`: a plain transfer between two wallets (the baseline);
- `immediate`: a payment between wallets of two different participants (wallets and
  positions: one linked chain of two transfers);
- `two_phase`: each connection prepares a payment, then fulfils it (two requests per
  payment);
- `hot`: immediate payments, 70% of them from participant 0's wallets;
- `client_immediate`, `client_two_phase`: `--tasks` application tasks in this process,
  each making one payment at a time through the Python client (`AsyncClient.create_payment`,
  then `fulfil_payment` for two-phase), which sends concurrent calls as arrays of payments
  (bulk). Latency is per call.

The targets: immediate >= half of single transfers; prepare then fulfil >= 5,000 payments/s
at p99 <= 50 ms; 70% from one payer at most 20% slower than uniform.

    python -m bench.payments [--seconds 15] [--runs 3] [--modes transfer,client_two_phase]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.throughput import wrk_summary
from switch.client import AsyncClient
from tests.chaos import free_port
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
CONNECTIONS = 64
MODES = ("transfer", "immediate", "two_phase", "hot")
CLIENT_MODES = ("client_immediate", "client_two_phase")
CLIENT_TASKS = 1000
FUNDS = 10**15  # every participant's liquidity and cap: never reached


def prepare(switch: SwitchProcess, participants: int, wallets: int) -> None:
    http = switch.http
    for p in range(participants):
        bank = f"bank-{p}"
        http.post("/v1/participants", json={"id": bank, "name": bank, "ledgers": ["USD"]}
                  ).raise_for_status()
        http.post(f"/v1/participants/{bank}/funds", json={
            "id": f"funds-{bank}", "ledger": "USD", "direction": "in", "amount": FUNDS}
                  ).raise_for_status()
        http.put(f"/v1/participants/{bank}/ledgers/USD/net-debit-cap",
                 json={"net_debit_cap": FUNDS}).raise_for_status()
    http.post("/v1/accounts", json={"id": "cash", "ledger": "USD", "code": 1, "owner": "hub"}
              ).raise_for_status()
    for start in range(0, wallets, 8190):
        batch = range(start, min(wallets, start + 8190))
        http.post("/v1/accounts", json=[
            {"id": f"w{k}", "ledger": "USD", "code": 1, "owner": f"bank-{k % participants}"}
            for k in batch]).raise_for_status()
        http.post("/v1/transfers", json=[
            {"id": f"load-{k}", "debit_account_id": "cash", "credit_account_id": f"w{k}",
             "amount": 10**12, "ledger": "USD", "code": 1} for k in batch]).raise_for_status()


def run_wrk(switch: SwitchProcess, mode: str, run_id: str, seconds: float,
            participants: int, wallets: int) -> dict[str, Any]:
    env = {**os.environ, "BENCH_RUN": run_id, "BENCH_WALLETS": str(wallets),
           "BENCH_PARTICIPANTS": str(participants), "BENCH_KEY": switch.operator_key,
           "BENCH_MODE": "immediate" if mode == "hot" else mode,
           "BENCH_HOT_PAYER_FRACTION": "0.7" if mode == "hot" else "0"}
    command = ["wrk", "-t", "2", "-c", str(CONNECTIONS), "-d", f"{round(seconds)}s",
               "--timeout", "30s", "-s", str(BENCH_DIR / "wrk_payments.lua"), switch.url]
    wrk = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                           text=True, env=env)
    try:
        output, _ = wrk.communicate(timeout=seconds + 60)
    except subprocess.TimeoutExpired:
        wrk.send_signal(signal.SIGINT)
        output, _ = wrk.communicate(timeout=60)
    result = wrk_summary(output)
    errors = sum(v for k, v in result.items() if k.startswith("errors_"))
    requests_per_item = 2 if mode == "two_phase" else 1
    elapsed_s = result["duration_us"] / 1e6
    return {"mode": mode, "items_per_s": (result["requests"] - errors) / requests_per_item /
            elapsed_s, "latency_ms_p50": result["p50_us"] / 1000,
            "latency_ms_p99": result["p99_us"] / 1000, "errors": errors}


async def run_client(switch: SwitchProcess, mode: str, run_id: str, seconds: float,
                     tasks: int, participants: int, wallets: int) -> dict[str, Any]:
    """`tasks` loops, each making one payment at a time through the client and awaiting
    it (two-phase: prepare, then fulfil); latency per call."""
    two_phase = mode == "client_two_phase"
    latencies: list[float] = []
    made = failures = 0
    async with AsyncClient(switch.url, switch.operator_key) as client:
        stop_at = time.perf_counter() + seconds

        async def call(make: Any) -> bool:
            started = time.perf_counter()
            created = await make
            latencies.append(time.perf_counter() - started)
            return bool(created.result == "ok")

        async def loop(task: int) -> None:
            nonlocal made, failures
            rng = random.Random(f"{run_id}-{task}")
            n = 0
            while time.perf_counter() < stop_at:
                payer, payee = wallet_pair(rng, participants, wallets)
                payment_id = f"{run_id}-{task}-{n}"
                n += 1
                done = await call(client.create_payment(
                    payment_id, f"w{payer}", f"w{payee}", rng.randint(1, 1000), "USD",
                    two_phase=two_phase))
                if done and two_phase:
                    done = await call(client.fulfil_payment(payment_id))
                made += done
                failures += not done

        started = time.perf_counter()
        await asyncio.gather(*(loop(task) for task in range(tasks)))
        elapsed_s = time.perf_counter() - started
    latencies.sort()
    return {"mode": mode, "items_per_s": made / elapsed_s,
            "latency_ms_p50": 1000 * statistics.median(latencies),
            "latency_ms_p99": 1000 * latencies[int(0.99 * (len(latencies) - 1))],
            "errors": failures}


def wallet_pair(rng: random.Random, participants: int, wallets: int) -> tuple[int, int]:
    """Two wallets of different participants (wallet k is participant k mod participants)."""
    payer = rng.randrange(wallets)
    payee = rng.randrange(wallets)
    while payee % participants == payer % participants:
        payee = rng.randrange(wallets)
    return payer, payee


def balanced(switch: SwitchProcess) -> bool:
    deadline = time.monotonic() + 30
    while True:
        ledgers = switch.http.get("/v1/ledgers").json()["ledgers"]
        if all(ledger["balanced"] for ledger in ledgers) or time.monotonic() > deadline:
            return all(ledger["balanced"] for ledger in ledgers)
        time.sleep(0.5)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=15)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--wallets", type=int, default=10_000)
    parser.add_argument("--modes", default=",".join(MODES),
                        help=f"comma-separated, of {', '.join(MODES + CLIENT_MODES)}")
    parser.add_argument("--shards", type=int, default=0,
                        help="the switch's shard count (0: its default for a new directory)")
    parser.add_argument("--tasks", type=int, default=CLIENT_TASKS,
                        help="the client modes' application tasks")
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed (make bench installs it)", file=sys.stderr)
        return 2
    modes = args.modes.split(",")
    work = Path(tempfile.mkdtemp(prefix="payswitch-payments-"))
    switch = SwitchProcess(work / "data", free_port(), shards=args.shards,
                           log_path=work / "switch.log").start()
    rows: list[dict[str, Any]] = []
    try:
        prepare(switch, args.participants, args.wallets)
        for run in range(args.runs):
            for mode in modes:
                row = asyncio.run(run_client(
                    switch, mode, f"{mode}{run}", args.seconds, args.tasks, args.participants,
                    args.wallets)) if mode in CLIENT_MODES else run_wrk(
                    switch, mode, f"{mode}{run}", args.seconds, args.participants,
                    args.wallets)
                row["run"] = run
                rows.append(row)
                print(f"{mode:10} run {run + 1}: {row['items_per_s']:8,.0f}/s  p50 "
                      f"{row['latency_ms_p50']:6.1f} ms  p99 {row['latency_ms_p99']:6.1f} ms  "
                      f"errors {row['errors']}", flush=True)
        books_balanced = balanced(switch)
    finally:
        switch.kill_session()
        shutil.rmtree(work, ignore_errors=True)
    medians = {mode: {key: statistics.median(r[key] for r in rows if r["mode"] == mode)
                      for key in ("items_per_s", "latency_ms_p99")} for mode in modes}
    for mode, median in medians.items():
        print(f"median {mode:10} {median['items_per_s']:8,.0f}/s  p99 "
              f"{median['latency_ms_p99']:6.1f} ms")
    verdicts = judge(medians)
    for verdict in verdicts:
        print(verdict)
    print(f"ledgers balanced: {books_balanced}")
    out = BENCH_DIR / "out" / f"payments-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "medians": medians,
                               "balanced": books_balanced}, indent=1))
    print(f"wrote {out}")
    return 0 if books_balanced and not any("MISSED" in v for v in verdicts) else 1


def judge(medians: dict[str, dict[str, float]]) -> list[str]:
    verdicts = []
    rate = {mode: median["items_per_s"] for mode, median in medians.items()}
    if "transfer" in rate and "immediate" in rate:
        ratio = rate["immediate"] / rate["transfer"]
        verdicts.append(f"immediate / single transfers: {ratio:.2f} (target >= 0.5): "
                        f"{'met' if ratio >= 0.5 else 'MISSED'}")
    if "transfer" in rate and "client_immediate" in rate:
        ratio = rate["client_immediate"] / rate["transfer"]
        verdicts.append(f"immediate through the client / single transfers: {ratio:.2f}")
    for mode, how in (("two_phase", "per request"), ("client_two_phase", "per client call")):
        if mode in rate:
            p99 = medians[mode]["latency_ms_p99"]
            met = rate[mode] >= 5_000 and p99 <= 50
            verdicts.append(f"prepare then fulfil ({mode}): {rate[mode]:,.0f} payments/s, "
                            f"p99 {p99:.1f} ms {how} (target >= 5,000/s at <= 50 ms): "
                            f"{'met' if met else 'MISSED'}")
    if "hot" in rate and "immediate" in rate:
        slower = 1 - rate["hot"] / rate["immediate"]
        verdicts.append(f"70% from one payer: {100 * slower:.0f}% slower than uniform (target "
                        f"<= 20%): {'met' if slower <= 0.2 else 'MISSED'}")
    return verdicts


if __name__ == "__main__":
    sys.exit(main())
