"""`payswitch serve` as an operator runs it: Ctrl-C stops it cleanly, a restart recovers."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import httpx

from switch.launcher import SwitchProcess
from tests.chaos import free_port


def test_ctrl_c_stops_cleanly_and_a_restart_recovers(tmp_path: Path) -> None:
    log_path = tmp_path / "serve.log"
    switch = SwitchProcess(tmp_path / "data", free_port(), shards=2, log_path=log_path).start()
    try:
        accounts = [{"id": "bank", "ledger": "USD", "code": 1, "owner": "op"},
                    {"id": "alice", "ledger": "USD", "code": 1, "owner": "psp"}]
        httpx.post(switch.url + "/v1/accounts", json=accounts).raise_for_status()
        httpx.post(switch.url + "/v1/transfers", json={
            "id": "t1", "debit_account_id": "bank", "credit_account_id": "alice",
            "amount": 1234, "ledger": "USD", "code": 1}).raise_for_status()
        assert switch.process is not None
        # A terminal's Ctrl-C reaches the whole foreground process group, Ray's too.
        os.killpg(switch.process.pid, signal.SIGINT)
        assert switch.process.wait(timeout=60) == 0
        switch.kill_session()
        output = log_path.read_text()
        assert "Traceback" not in output, output[-3000:]
        assert "stopping shards" in output
        switch.start()
        alice = httpx.get(switch.url + "/v1/accounts/alice").json()
        assert alice["credits_posted"] == 1234
        assert httpx.get(switch.url + "/v1/transfers/t1").json()["amount"] == 1234
    finally:
        switch.kill_session()
