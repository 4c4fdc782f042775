"""`payswitch keys create` (offline) and `payswitch wal export --audit`, as an operator runs
them: real processes on a real data directory."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import orjson

from tests.conftest import RunningSwitch


def payswitch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switch.cli", *args], capture_output=True,
                          text=True, timeout=120)


def test_a_key_made_offline_works_once_the_switch_is_back(switch: RunningSwitch) -> None:
    data = Path(switch.settings.data.dir)
    assert switch.post("/v1/participants", {"id": "bank-a", "name": "A",
                                            "ledgers": ["USD"]}).status_code == 201
    running = payswitch("keys", "create", "--data-dir", str(data), "--role", "auditor")
    assert running.returncode == 2 and "running switch" in running.stderr
    switch.stop()
    missing = payswitch("keys", "create", "--data-dir", str(data), "--role", "participant",
                        "--participant", "nope")
    assert missing.returncode == 1 and "participant_not_found" in missing.stderr
    made = payswitch("keys", "create", "--data-dir", str(data), "--role", "participant",
                     "--participant", "bank-a")
    assert made.returncode == 0, made.stderr
    token = made.stdout.strip().splitlines()[-1]
    switch.start()
    answer = switch.client.get(switch.url + "/v1/participants",
                               headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 200 and [p["id"] for p in answer.json()["participants"]] == [
        "bank-a"]
    assert token not in (data / "shard-0000").joinpath("data.mdb").read_bytes().decode(
        "latin-1")  # only its hash is stored


def test_export_audit_lists_privileged_actions_with_who_and_when(switch: RunningSwitch) -> None:
    switch.post("/v1/participants", {"id": "bank-a", "name": "A", "ledgers": ["USD"]})
    switch.post("/v1/accounts", [{"id": "hub", "ledger": "USD", "code": 1, "owner": "hub"},
                                 {"id": "w", "ledger": "USD", "code": 1, "owner": "bank-a",
                                  "flags": {"debits_must_not_exceed_credits": True}}])
    switch.client.put(switch.url + "/v1/accounts/w/limits", json={"transfer_max": 5})
    switch.post("/v1/transfers", {"id": "t", "debit_account_id": "hub",
                                  "credit_account_id": "w", "amount": 3, "ledger": "USD",
                                  "code": 1})
    data = Path(switch.settings.data.dir)
    switch.stop()
    exported = payswitch("wal", "export", str(data), "--audit")
    assert exported.returncode == 0, exported.stderr
    events = [orjson.loads(line)["event"] for line in exported.stdout.splitlines()]
    operator = switch.operator_key.split("_")[1]
    # the switch layer's accounts that may go negative, made with bank-a (docs/SWITCH.md)
    switch_layer = [e for e in events if e.get("account", {}).get("id", "").startswith("hub:")]
    assert sorted(e["account"]["id"] for e in switch_layer) == [
        "hub:cap:USD:bank-a", "hub:fees:USD", "hub:position-resets:USD",
        "hub:reconciliation:USD",
        "hub:window-close:USD", "hub:window:USD:1", "hub:window:USD:1:bank-a"]
    by_id = {e["account"]["id"]: e["key_id"] for e in switch_layer}
    assert by_id["hub:cap:USD:bank-a"] == operator  # made with the participant, by its key
    assert by_id["hub:window:USD:1"] == "system"  # the first window: opened by the switch
    events = [e for e in events if e not in switch_layer]
    kinds = sorted(event["type"] for event in events)
    assert kinds == ["account_created", "key_created", "limits_changed",
                     "participant_created"], kinds  # not the wallet, not the transfer
    by_kind = {event["type"]: event for event in events}
    assert by_kind["key_created"]["key_id"] == "system"  # the first key: made at start
    for kind in ("account_created", "limits_changed", "participant_created"):
        assert by_kind[kind]["key_id"] == operator, by_kind[kind]
    switch.start()
