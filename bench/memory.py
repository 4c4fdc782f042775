"""Resident memory per process of a running switch: per account, and while transfers stream.

Starts `payswitch serve` (its own Ray, default settings: half the CPUs as shards) and measures every
process of its session (the ingress, each shard actor, the read model's actor, and Ray's own)
from /proc: `RssAnon` (the process's own memory: its heap) and `RssFile` (file pages mapped
and resident: for a shard, the LMDB pages it read, which the kernel may drop at will).

1. Baseline, then `--accounts` accounts (default 1,000,000) in arrays of 8,190, each funded by
   one transfer (so every account has balances), and a query (the read model catches up):
   memory per account = growth over all processes / accounts.
2. `--transfers` more transfers (default 10,000,000) between random accounts, in arrays of
   8,190; memory sampled every `--sample-every` transfers, at rest (`--rest-seconds` after
   the last answer: a snapshot being written holds a copy of the accounts for a second or
   so): flat means the last sample is within 10% of the first.
3. The first funding transfer, now old, is read back: `GET /v1/transfers/{id}` answers 200.

    python -m bench.memory [--accounts 1000000] [--transfers 10000000] [--shards 0]

Prints a table per sample and writes bench/out/memory-<time>.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from tests.chaos import free_port
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
ARRAY = 8190
SENDERS = 4
FUNDERS = 16


def process_memory(switch: SwitchProcess) -> list[dict[str, Any]]:
    """Every live process of the switch's session: what it is and its memory (KiB)."""
    assert switch.process is not None
    rows = []
    for pid in switch.session_pids():
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
            status = dict(line.split(":", 1) for line in
                          Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line)
        except OSError:
            continue
        kind = ("ingress" if pid == switch.process.pid else "shard" if "ShardActor" in cmdline
                else "read model" if "QueryActor" in cmdline else "ray")
        rows.append({"pid": pid, "kind": kind, "command": cmdline[:60],
                     "anon_kib": _kib(status.get("RssAnon")),
                     "file_kib": _kib(status.get("RssFile")),
                     "shmem_kib": _kib(status.get("RssShmem"))})
    return rows


def _kib(field: str | None) -> int:
    return int(field.split()[0]) if field else 0


def totals(rows: list[dict[str, Any]]) -> dict[str, int]:
    by_kind: dict[str, int] = {}
    for row in rows:
        by_kind[row["kind"]] = by_kind.get(row["kind"], 0) + row["anon_kib"]
    by_kind["all anon"] = sum(row["anon_kib"] for row in rows)
    by_kind["all file"] = sum(row["file_kib"] for row in rows)
    return by_kind


async def post_arrays(switch: SwitchProcess, path: str, items: list[dict[str, Any]]) -> None:
    """Send items in arrays of ARRAY with SENDERS concurrent senders; retry 429/503."""
    chunks = [items[i:i + ARRAY] for i in range(0, len(items), ARRAY)]
    async with httpx.AsyncClient(base_url=switch.url, headers=switch.headers,
                                 timeout=120) as client:
        async def sender(worker: int) -> None:
            for chunk in chunks[worker::SENDERS]:
                while True:
                    response = await client.post(path, json=chunk)
                    if response.status_code in (429, 503):
                        await asyncio.sleep(0.2)
                        continue
                    response.raise_for_status()
                    break
        await asyncio.gather(*(sender(worker) for worker in range(SENDERS)))


def transfer(id_: str, debit: str, credit: str, amount: int) -> dict[str, Any]:
    return {"id": id_, "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "ledger": "USD", "code": 1}


def load_accounts(switch: SwitchProcess, count: int) -> None:
    funders = [{"id": f"funder-{n}", "ledger": "USD", "code": 1, "owner": "operator"}
               for n in range(FUNDERS)]
    accounts = [{"id": f"acct-{n:07d}", "ledger": "USD", "code": 2, "owner": f"psp-{n % 50}",
                 "flags": {"debits_must_not_exceed_credits": True}} for n in range(count)]
    asyncio.run(post_arrays(switch, "/v1/accounts", funders + accounts))
    funding = [transfer(f"fund-{n:07d}", f"funder-{n % FUNDERS}", f"acct-{n:07d}", 1_000_000)
               for n in range(count)]
    asyncio.run(post_arrays(switch, "/v1/transfers", funding))


def stream(switch: SwitchProcess, accounts: int, count: int, offset: int,
           rng: random.Random) -> None:
    batch = []
    for n in range(count):
        debit, credit = rng.sample(range(accounts), 2)
        batch.append(transfer(f"s-{offset + n:09d}", f"acct-{debit:07d}", f"acct-{credit:07d}",
                              rng.randint(1, 100)))
    asyncio.run(post_arrays(switch, "/v1/transfers", batch))


def show(label: str, rows: list[dict[str, Any]], base: dict[str, int]) -> dict[str, int]:
    now = totals(rows)
    cells = []
    for kind in ("ingress", "shard", "read model", "ray", "all anon", "all file"):
        mib, grown = now.get(kind, 0) / 1024, (now.get(kind, 0) - base.get(kind, 0)) / 1024
        cells.append(f"{kind} {mib:,.0f} MiB ({grown:+,.0f})")
    print(f"{label:<34} " + "  ".join(cells), flush=True)
    return now


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="bench.memory", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--transfers", type=int, default=10_000_000)
    parser.add_argument("--sample-every", type=int, default=1_000_000)
    parser.add_argument("--shards", type=int, default=0)
    parser.add_argument("--rest-seconds", type=float, default=5,
                        help="wait before each sample once a step's transfers are answered")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="payswitch-memory-"))
    switch = SwitchProcess(work / "data", free_port(), args.shards, work / "switch.log").start()
    result: dict[str, Any] = {"accounts": args.accounts, "transfers": args.transfers,
                              "started": time.strftime("%Y-%m-%dT%H:%M:%S"), "samples": []}
    try:
        time.sleep(3)
        base = show("started", process_memory(switch), {})
        started = time.perf_counter()
        load_accounts(switch, args.accounts)
        switch.http.get("/v1/accounts?owner=psp-1&limit=10", timeout=600)  # catch up
        time.sleep(3)
        rows = process_memory(switch)
        loaded = show(f"{args.accounts:,} accounts funded", rows, base)
        per_account = {kind: (loaded[kind] - base.get(kind, 0)) * 1024 / args.accounts
                       for kind in loaded}
        print("per account (bytes): " + ", ".join(f"{k} {v:,.0f}" for k, v in
                                                    per_account.items()), flush=True)
        result.update(base=base, loaded=loaded, per_account_bytes=per_account,
                      processes_loaded=rows, load_seconds=time.perf_counter() - started)
        rng, sent = random.Random(7), 0
        while sent < args.transfers:
            step = min(args.sample_every, args.transfers - sent)
            stream(switch, args.accounts, step, sent, rng)
            sent += step
            time.sleep(args.rest_seconds)  # a snapshot being written is a passing peak
            now = show(f"{sent:,} transfers streamed", process_memory(switch), base)
            result["samples"].append({"transfers": sent, **now})
        old = switch.http.get("/v1/transfers/fund-0000000", timeout=60)
        result["old_transfer_status"] = old.status_code
        print(f"GET of the first funding transfer: {old.status_code}")
        if result["samples"]:
            first, last = result["samples"][0]["all anon"], result["samples"][-1]["all anon"]
            result["growth_anon"] = (last - first) / first
            print(f"anonymous memory from the first sample to the last: "
                  f"{100 * result['growth_anon']:+.1f}%")
    finally:
        switch.stop()
        out = BENCH_DIR / "out" / f"memory-{time.strftime('%Y%m%dT%H%M%S')}.json"
        out.parent.mkdir(exist_ok=True)
        out.write_text(json.dumps(result, indent=2))
        print(f"wrote {out}")
        shutil.rmtree(work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
