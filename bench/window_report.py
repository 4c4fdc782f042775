"""How long a settlement window's report takes, by the payments in the window.

One switch (default settings), `--participants` participants with caps they never reach and
`--wallets` wallets; then `--payments` immediate payments between wallets of different
participants, sent as arrays of payments (`POST /v1/payments`, 8,190 at most each). Then,
timed: the open window's report, again after `--more` payments (it reads only what came
since), the window's close, the closed window's first report (computed, signed and kept)
and its second (kept). Each `--sizes` value is one window of that many payments (plus
`--more`), in one switch.

    python -m bench.window_report [--sizes 10000,100000] [--more 1000] [--participants 10]
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.payments import prepare, wallet_pair
from tests.chaos import free_port
from tests.launcher import SwitchProcess

BENCH_DIR = Path(__file__).resolve().parent
ARRAY_MAX = 8190


def make_payments(switch: SwitchProcess, window: str, count: int, participants: int,
                  wallets: int) -> float:
    """`count` immediate payments in arrays; returns payments per second."""
    rng = random.Random(window)
    started = time.perf_counter()
    for start in range(0, count, ARRAY_MAX):
        batch = []
        for n in range(start, min(count, start + ARRAY_MAX)):
            payer, payee = wallet_pair(rng, participants, wallets)
            batch.append({"id": f"{window}-{n}", "payer_account_id": f"w{payer}",
                          "payee_account_id": f"w{payee}", "amount": rng.randint(1, 1000),
                          "ledger": "USD"})
        answer = switch.http.post("/v1/payments", json=batch, timeout=600)
        answer.raise_for_status()
        refused = [r for r in answer.json()["results"] if r["result"] != "ok"]
        assert not refused, refused[:3]
        print(f"  {min(count, start + ARRAY_MAX):,} of {count:,} payments", end="\r",
              file=sys.stderr, flush=True)
    return count / (time.perf_counter() - started)


def timed_report(switch: SwitchProcess, window: str) -> tuple[float, dict[str, Any]]:
    started = time.perf_counter()
    answer = switch.http.get(f"/v1/settlement-windows/{window}/report", timeout=600)
    answer.raise_for_status()
    return time.perf_counter() - started, answer.json()


def measure(switch: SwitchProcess, size: int, more: int, participants: int, wallets: int
            ) -> dict[str, Any]:
    window = switch.http.post("/v1/settlement-windows/close",
                              json={"ledger": "USD"}).json()["open"]  # a fresh one
    rate = make_payments(switch, window, size, participants, wallets)
    open_s, open_report = timed_report(switch, window)
    assert open_report["payments"] == size, open_report["payments"]
    make_payments(switch, f"{window}-more", more, participants, wallets)
    again_s, again = timed_report(switch, window)  # reads what came since the first
    assert again["payments"] == size + more, again["payments"]
    size += more
    started = time.perf_counter()
    closed = switch.http.post("/v1/settlement-windows/close", json={"ledger": "USD"},
                              timeout=600)
    closed.raise_for_status()
    close_s = time.perf_counter() - started
    first_s, final = timed_report(switch, window)
    kept_s, _ = timed_report(switch, window)
    assert final["state"] == "closed" and final["payments"] == size
    assert sum(row["net"] for row in final["participants"]) == 0
    row = {"payments": size, "payments_per_s": rate, "open_report_s": open_s,
           "open_report_again_s": again_s, "more": more, "close_s": close_s,
           "closed_report_first_s": first_s, "closed_report_kept_s": kept_s}
    print(f"{size:>9,} payments ({rate:,.0f}/s made): open report {open_s:.2f} s, again "
          f"after {more:,} more {again_s:.3f} s, close "
          f"{close_s:.2f} s, closed report {first_s:.2f} s (then kept: {kept_s:.3f} s)",
          flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10000,100000")
    parser.add_argument("--more", type=int, default=1000,
                        help="payments made between the open window's two reports")
    parser.add_argument("--participants", type=int, default=10)
    parser.add_argument("--wallets", type=int, default=2000)
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="payswitch-window-report-"))
    switch = SwitchProcess(work / "data", free_port(), shards=0,
                           log_path=work / "switch.log").start()
    try:
        prepare(switch, args.participants, args.wallets)
        rows = [measure(switch, int(size), args.more, args.participants, args.wallets)
                for size in args.sizes.split(",")]
    finally:
        switch.kill_session()
    out = BENCH_DIR / "out" / f"window_report-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(json.dumps({"args": vars(args), "rows": rows}, indent=1))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
