"""A seeded soak (behind --run-slow): rounds of mixed load on a real switch, each ended by
something going wrong, then a restart and every check.

Each round runs the chaos load (single transfers, arrays, pending ones with their posts and
voids, linked chains across shards) plus the edge cases the hardening issue found: an array
of one id repeated, bad query values, a waiting long-poll. It ends, as the seed says, by
kill -9 of every process, by a failpoint that kills a shard or the ingress mid-protocol, by
a log map too small to take another write (writes then answer storage_full, reads still
answer), or by a clean stop. After each round: `wal verify` passes on what was left, the
switch starts again, every transfer acknowledged in any round is there exactly once, the
books balance, nothing is overdrawn, and re-sending what was acknowledged changes nothing.

    pytest --run-slow tests/test_soak.py          # 20 seeds, several minutes each
"""

from __future__ import annotations

import random
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from actors import failpoints
from tests.chaos import Load, audit, free_port, resend_acknowledged, setup_accounts
from tests.launcher import SwitchProcess

ROUNDS = 4
ENDINGS = ("kill", "failpoint", "full", "stop")
SEEDS = range(20)


def _everything(loads: list[Load]) -> Load:
    """One view of every round's load: what was sent, acknowledged and refused in any."""
    merged = Load(loads[0].url, loads[0].seed, loads[0].headers)
    for load in loads:
        merged.sent.update(load.sent)
        merged.acked |= load.acked
        merged.rejected |= load.rejected
        merged.chains += load.chains
    merged.rejected -= merged.acked  # refused once, accepted on a later try: it is there
    return merged


def _edge_cases(load: Load, round_id: str, failing: bool) -> None:
    """What the hardening issue found, sent while the load runs: each answers as documented
    (the transfers join the load's books: the audit counts them)."""
    with httpx.Client(base_url=load.url, headers=load.headers, timeout=60) as client:
        one = {"id": f"same-{round_id}", "debit_account_id": "bank",
               "credit_account_id": "acct-0", "amount": 1, "ledger": "USD", "code": 7}
        with load.lock:
            load.sent[one["id"]] = one
        response = client.post("/v1/transfers", json=[one] * 500)
        results = [r["result"] for r in response.json().get("results", [])]
        # A full log refuses every item (storage_full: nothing applied); a 503 leaves it
        # in doubt. Otherwise: one ok, the rest exists.
        if response.status_code != 503 and set(results) != {"storage_full"}:
            assert results.count("ok") <= 1 and set(results) <= {"ok", "exists"}, results[:5]
            with load.lock:
                load.acked.add(one["id"])
        for path in ("/v1/accounts/acct-0/transfers?limit=%C2%B2",
                     "/v1/accounts/acct-0/transfers?cursor=x",
                     "/v1/transfers?from=99999999999999999999999"):
            bad = client.get(path)
            assert bad.status_code == 400, (path, bad.text)
        waited = client.get("/v1/events?after=latest&wait_ms=200")
        # A shard a failpoint ended answers 503 until the switch restarts, never a 500.
        assert waited.status_code == 200 or (
            waited.status_code == 503 and waited.json()["code"] == "shard_unavailable"
            and failing), waited.text


def _wal_verify(data_dir: Path) -> None:
    verified = subprocess.run([sys.executable, "-m", "switch.cli", "wal", "verify",
                               str(data_dir)], capture_output=True, text=True, timeout=600)
    assert verified.returncode == 0, verified.stdout + verified.stderr


def _fired(switch: SwitchProcess) -> bool:
    assert switch.process is not None
    if switch.process.poll() is not None:
        return True
    try:
        return switch.http.get("/readyz", timeout=5).status_code != 200
    except httpx.HTTPError:
        return True


def _round(switch: SwitchProcess, rng: random.Random, seed: int, n: int, ending: str,
           tmp_path: Path) -> Load:
    if ending == "failpoint":
        name = rng.choice(failpoints.ALL)
        switch.stop()
        switch.extra_env = {"PAYSWITCH_FAILPOINTS": f"{name}=#{rng.randint(5, 60)}"}
        switch.start()
    elif ending == "full":  # the map as large as the log is now: the next writes find no room
        switch.stop()
        switch.extra_env = {"PAYSWITCH_WAL_MAP_SIZE_BYTES": str(1 << 20)}
        switch.start()
    load = Load(switch.url, seed * 100 + n, switch.headers)
    load.start()
    try:
        _edge_cases(load, f"{seed}-{n}", ending == "failpoint")
    except httpx.TransportError:
        # A failpoint ends its process whenever its count comes, edge cases or not; what
        # was sent is in doubt, as for the load.
        if not (ending == "failpoint" and _fired(switch)):
            raise
    deadline = time.monotonic() + rng.uniform(2.0, 6.0)
    while time.monotonic() < deadline and not (ending == "failpoint" and _fired(switch)):
        time.sleep(0.2)
    if ending == "full":
        reads = switch.http.get("/v1/accounts/acct-0", timeout=30)
        assert reads.status_code == 200, reads.text  # reads still answer when writes cannot
    load.killed.set()
    if ending == "stop":
        switch.stop()
    else:
        switch.kill_session()
    load.finish()
    assert not load.failures, load.failures
    switch.extra_env = {}
    return load


def run_soak(tmp_path: Path, seed: int) -> None:
    rng = random.Random(seed)
    data_dir = tmp_path / "data"
    switch = SwitchProcess(data_dir, free_port(), shards=2, log_path=tmp_path / "switch.log",
                           extra_env={}).start()
    loads: list[Load] = []
    try:
        setup_accounts(switch.url, switch.headers)
        for n in range(ROUNDS):
            ending = rng.choice(ENDINGS)
            loads.append(_round(switch, rng, seed, n, ending, tmp_path))
            _wal_verify(data_dir)
            switch.start()
            everything = _everything(loads)
            audit(switch.url, everything)
            resend_acknowledged(switch.url, everything)
            print(f"seed {seed} round {n} ({ending}): acknowledged {len(everything.acked)} "
                  f"of {len(everything.sent)} so far")
        assert sum(len(load.acked) for load in loads) > 0, "the load never got going"
    finally:
        switch.kill_session()
    _wal_verify(data_dir)


@pytest.mark.slow
@pytest.mark.parametrize("seed", SEEDS)
def test_soak(tmp_path: Path, seed: int) -> None:
    run_soak(tmp_path, seed)
