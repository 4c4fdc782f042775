"""Does one noisy key cost the others? (the trust issue: "one noisy key must not raise the
others' p99 by more than 20%").

Starts a switch (default settings: half the CPUs as shards). Two participants, `quiet` and `noisy`,
each with a key and `--accounts` funded wallets. Then, alternately, `--runs` times each:

- quiet alone: one transfer per request from the quiet key (wrk, `--connections`
  connections, `--seconds` seconds) between its own wallets: p50, p99, answers not 2xx;
- quiet with noise: the same, while the noisy key (its own rate: `--noisy-rate` requests a
  second) sends as fast as `--noisy-connections` connections allow, far beyond its rate: most
  of its requests answer 429 rate_limited.

The target: median p99 with noise at most 1.20x the median p99 alone, and the quiet key never
answered 429. Prints a table and writes bench/out/noisy-key-<time>.json.

    python -m bench.noisy_key [--runs 3] [--seconds 10] [--connections 8]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.throughput import wrk_summary
from tests.chaos import free_port
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
P99_RATIO_MAX = 1.20
FUNDS = 10**12


def setup(switch: SwitchProcess, accounts: int, noisy_rate: int) -> dict[str, str]:
    """The two participants, their keys and funded wallets (`q<i>`, `n<i>`): the keys. The
    noisy key's rate is `noisy_rate`; the quiet key's is high enough never to limit it."""
    client = switch.http
    keys = {}
    client.post("/v1/accounts", json={"id": "hub", "ledger": "USD", "code": 1, "owner": "hub"})
    for name, prefix in (("quiet", "q"), ("noisy", "n")):
        client.post("/v1/participants", json={"id": name, "name": name, "ledgers": ["USD"]})
        rate = noisy_rate if name == "noisy" else 100_000
        keys[name] = client.post("/v1/keys", json={
            "role": "participant", "participant_id": name, "requests_per_second": rate,
            "burst": rate}).json()["secret"]
        for start in range(0, accounts, 8190):
            ids = range(start, min(accounts, start + 8190))
            client.post("/v1/accounts", json=[
                {"id": f"{prefix}{i}", "ledger": "USD", "code": 1, "owner": name,
                 "flags": {"debits_must_not_exceed_credits": True}} for i in ids],
                timeout=300).raise_for_status()
            client.post("/v1/transfers", json=[
                {"id": f"fund-{prefix}{i}", "debit_account_id": "hub",
                 "credit_account_id": f"{prefix}{i}", "amount": FUNDS, "ledger": "USD",
                 "code": 1} for i in ids], timeout=300).raise_for_status()
    return keys


def at_rest(switch: SwitchProcess, timeout_s: float = 15) -> list[dict[str, Any]]:
    """The ledgers' totals once nothing is in flight (a transfer's last round, settling its
    parts elsewhere, runs just after its answer: wrk stopping mid-flight leaves some)."""
    deadline = time.monotonic() + timeout_s
    while True:
        ledgers: list[dict[str, Any]] = switch.http.get("/v1/ledgers").json()["ledgers"]
        if all(ledger["balanced"] for ledger in ledgers) or time.monotonic() > deadline:
            return ledgers
        time.sleep(0.2)


def wrk(url: str, run_id: str, key: str, prefix: str, accounts: int, connections: int,
        seconds: float) -> subprocess.Popen[str]:
    env = {**os.environ, "BENCH_RUN": run_id, "BENCH_ACCOUNTS": str(accounts),
           "BENCH_HOT_FRACTION": "0", "BENCH_QUOTA": str(10**9), "BENCH_KEY": key,
           "BENCH_ACCOUNT_PREFIX": prefix}
    command = ["wrk", "-t", "1", "-c", str(connections), "-d", f"{round(seconds)}s",
               "--timeout", "30s", "-s", str(BENCH_DIR / "wrk_transfers.lua"), url]
    return subprocess.Popen(command, stdout=subprocess.PIPE, text=True, env=env)


def result_of(process: subprocess.Popen[str]) -> dict[str, Any]:
    output, _ = process.communicate(timeout=120)
    result = wrk_summary(output)
    seconds = result["duration_us"] / 1e6
    return {"requests_per_s": result["requests"] / seconds, "not_2xx": result["errors_status"],
            "latency_ms_p50": result["p50_us"] / 1000, "latency_ms_p99": result["p99_us"] / 1000}


def measure(switch: SwitchProcess, keys: dict[str, str], args: argparse.Namespace, run: int,
            noisy: bool) -> dict[str, Any]:
    label = f"{'noise' if noisy else 'alone'}{run}"
    flood = wrk(switch.url, f"n-{label}", keys["noisy"], "n", args.accounts,
                args.noisy_connections, args.seconds + 2) if noisy else None
    if flood is not None:
        time.sleep(1)  # the flood is at full speed before the measurement starts
    quiet = result_of(wrk(switch.url, f"q-{label}", keys["quiet"], "q", args.accounts,
                          args.connections, args.seconds))
    row = {"run": run, "noise": noisy, "quiet": quiet}
    if flood is not None:
        flood.send_signal(signal.SIGINT)
        row["noisy"] = result_of(flood)
    noise = row.get("noisy")
    print(f"{label:8} quiet {quiet['requests_per_s']:7,.0f} req/s p50 "
          f"{quiet['latency_ms_p50']:6.1f} ms p99 {quiet['latency_ms_p99']:6.1f} ms, "
          f"{quiet['not_2xx']} not 2xx" + (
              f" | noisy {noise['requests_per_s']:7,.0f} req/s, {noise['not_2xx']:,} not 2xx"
              if noise else ""), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, default=10_000, help="wallets per participant")
    parser.add_argument("--runs", type=int, default=3, help="measurements of each kind")
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--connections", type=int, default=8, help="the quiet key's")
    parser.add_argument("--noisy-connections", type=int, default=64)
    parser.add_argument("--noisy-rate", type=int, default=100,
                        help="the noisy key's requests_per_second (and burst)")
    parser.add_argument("--shards", type=int, default=0)
    args = parser.parse_args(argv)
    if shutil.which("wrk") is None:
        print("wrk is not installed: apt-get install wrk")
        return 2
    work = Path(tempfile.mkdtemp(prefix="payswitch-noisy-"))
    switch = SwitchProcess(work / "data", free_port(), shards=args.shards,
                           log_path=work / "switch.log").start()
    try:
        keys = setup(switch, args.accounts, args.noisy_rate)
        rows = [measure(switch, keys, args, run, noisy)
                for run in range(args.runs) for noisy in (False, True)]
        totals = at_rest(switch)
    except httpx.HTTPError as error:
        print(f"the switch stopped answering: {error!r}; see {work / 'switch.log'}")
        return 1
    finally:
        switch.kill_session()
    alone = statistics.median(r["quiet"]["latency_ms_p99"] for r in rows if not r["noise"])
    noisy = statistics.median(r["quiet"]["latency_ms_p99"] for r in rows if r["noise"])
    quiet_refused = sum(r["quiet"]["not_2xx"] for r in rows)
    ratio = noisy / alone
    met = ratio <= P99_RATIO_MAX and quiet_refused == 0
    balanced = all(ledger["balanced"] for ledger in totals)
    print(f"quiet key p99, median: alone {alone:.1f} ms, with noise {noisy:.1f} ms: "
          f"{ratio:.2f}x (target <= {P99_RATIO_MAX}x); quiet answers not 2xx: "
          f"{quiet_refused} (target 0); ledgers balanced: {balanced}: "
          f"{'met' if met else 'MISSED'}")
    out = BENCH_DIR / "out" / f"noisy-key-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows, "p99_ratio": ratio,
                               "met": met, "balanced": balanced}, indent=1))
    print(f"wrote {out}")
    shutil.rmtree(work, ignore_errors=True)
    return 0 if met and balanced else 1


if __name__ == "__main__":
    sys.exit(main())
