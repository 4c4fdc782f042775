"""`payswitch serve` as an operator runs it: Ctrl-C stops it cleanly, a restart recovers."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import httpx
import pytest

from switch.cli.serve import stop_shards
from tests.chaos import free_port
from tests.launcher import SwitchProcess


def test_ctrl_c_stops_cleanly_another_shard_count_is_refused_and_a_restart_recovers(
        tmp_path: Path) -> None:
    """One switch's life: served, stopped with Ctrl-C, refused when asked for another shard
    count (before Ray starts), then served as its data directory says, with everything."""
    data_dir, log_path = tmp_path / "data", tmp_path / "serve.log"
    switch = SwitchProcess(data_dir, free_port(), shards=2, log_path=log_path).start()
    accounts = [{"id": "bank", "ledger": "USD", "code": 1, "owner": "op"},
                {"id": "alice", "ledger": "USD", "code": 1, "owner": "psp"}] + [
        {"id": f"acct-{n}", "ledger": "USD", "code": 1, "owner": "psp"} for n in range(24)]
    transfers = [{"id": "t1", "debit_account_id": "bank", "credit_account_id": "alice",
                  "amount": 1234, "ledger": "USD", "code": 1}] + [
        {"id": f"t-{n}", "debit_account_id": f"acct-{n}",
         "credit_account_id": f"acct-{(n * 7 + 3) % 24}", "amount": n + 1, "ledger": "USD",
         "code": 1} for n in range(24)]
    try:
        switch.http.post("/v1/accounts", json=accounts).raise_for_status()
        results = switch.http.post("/v1/transfers", json=transfers).json()["results"]
        assert {r["result"] for r in results} == {"ok"}
        assert switch.process is not None
        # A terminal's Ctrl-C reaches the whole foreground process group, Ray's too.
        os.killpg(switch.process.pid, signal.SIGINT)
        assert switch.process.wait(timeout=60) == 0
        switch.kill_session()
        output = log_path.read_text()
        assert "Traceback" not in output, output[-3000:]
        assert "stopping shards" in output
        assert output.index("stopped: every acknowledged write") > output.index(
            "stopping shards")  # the last word says it is over
        assert "stopped: every acknowledged write" in output.strip().splitlines()[-1]
        # Where the operator's key is, never the key itself.
        assert "operator.key" in output and switch.operator_key not in output
    finally:
        switch.kill_session()
    for asked in (4, 1):
        refused_log = tmp_path / f"refused-{asked}.log"
        refused = SwitchProcess(data_dir, free_port(), shards=asked, log_path=refused_log)
        try:
            refused.start(ready_timeout_s=60)
            raise AssertionError(f"a start with {asked} shards was not refused")
        except RuntimeError as error:
            assert "exited with 2" in str(error)
        finally:
            refused.kill_session()
        told = refused_log.read_text()
        assert f"holds 2 shards, but the settings ask for {asked}" in told
        assert "Ray" not in told  # refused before Ray started: at once
    # 0: what the data directory says. Every account is there, every re-send is a repeat.
    switch = SwitchProcess(data_dir, free_port(), shards=0, log_path=log_path).start()
    try:
        alice = switch.http.get("/v1/accounts/alice").json()
        assert alice["credits_posted"] == 1234
        assert switch.http.get("/v1/transfers/t1").json()["amount"] == 1234
        for account in accounts:
            assert switch.http.get(f"/v1/accounts/{account['id']}").status_code == 200
        again = switch.http.post("/v1/transfers", json=transfers).json()["results"]
        assert {r["result"] for r in again} == {"exists"}
    finally:
        switch.stop()


@pytest.mark.skipif(shutil.which("openssl") is None, reason="openssl makes the certificate")
def test_tls_serves_https_only(tmp_path: Path) -> None:
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                    "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
                   check=True, capture_output=True, timeout=60)
    switch = SwitchProcess(tmp_path / "data", free_port(), shards=1,
                           log_path=tmp_path / "serve.log",
                           extra_env={"PAYSWITCH_SERVER_TLS_CERT": str(cert),
                                      "PAYSWITCH_SERVER_TLS_KEY": str(key),
                                      "PAYSWITCH_LOGGING_JSON": "false"}).start()
    try:
        assert switch.url.startswith("https://")
        told = (tmp_path / "serve.log").read_text()  # readable lines: the banner, as on a tty
        assert f"serving on {switch.url}" in told and f"dashboard      {switch.url}/dashboard" \
            in told and "operator key" in told
        assert switch.http.get("/v1/ledgers").status_code == 200
        plain = switch.url.replace("https://", "http://") + "/healthz"
        with pytest.raises(httpx.HTTPError):  # no plain HTTP on the port
            httpx.get(plain, timeout=5)
    finally:
        switch.kill_session()


def test_a_ray_address_nobody_answers_is_refused_at_once(tmp_path: Path) -> None:
    port = free_port()  # nothing listens there; Ray alone would retry it for minutes
    finished = subprocess.run(
        [sys.executable, "-m", "switch.cli", "serve", "--ray-address", f"127.0.0.1:{port}",
         "--data-dir", str(tmp_path / "data"), "--port", str(free_port())],
        capture_output=True, text=True, timeout=60)
    assert finished.returncode == 2
    assert f"no Ray cluster answers at 127.0.0.1:{port}" in finished.stderr + finished.stdout
    assert not (tmp_path / "data").exists()  # nothing was made


def test_a_failed_stop_of_the_shards_is_not_called_clean() -> None:
    """serve says its last word ("stopped: every acknowledged write ...") only when every
    shard closed its log: stop_shards tells whether they did."""
    class Failing:
        def close(self) -> None:
            raise TimeoutError("a shard did not close in time")

    assert stop_shards(Failing()) is False  # type: ignore[arg-type]
