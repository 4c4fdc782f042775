"""JSON logs: a request id follows a request from the API through the router to the shard."""

from __future__ import annotations

import time
from pathlib import Path

import orjson

from tests.chaos import free_port
from tests.launcher import SwitchProcess

# Printed by Ray's C++ core straight to stderr at start-up: the one line not ours to shape.
RAY_CORE_NOTICE = "Token authentication is enabled for this Ray cluster"


def json_lines(path: Path) -> list[dict[str, object]]:
    """Every line of the log as JSON: the shards' lines too, whole (no Ray prefix)."""
    found = []
    for line in path.read_text(errors="replace").splitlines():
        if line.startswith(RAY_CORE_NOTICE):
            continue
        entry = orjson.loads(line)  # raises on a line that is not one JSON object
        assert isinstance(entry, dict), line
        found.append(entry)
    return found


def test_request_id_reaches_the_access_log_and_the_shard_batch_log(tmp_path: Path) -> None:
    log_path = tmp_path / "switch.log"
    switch = SwitchProcess(tmp_path / "data", free_port(), shards=2, log_path=log_path,
                           extra_env={"PAYSWITCH_LOGGING_LEVEL": "DEBUG",
                                      "PAYSWITCH_SERVER_ACCESS_LOG": "true"}).start()
    try:
        accounts = [{"id": "bank", "ledger": "USD", "code": 1, "owner": "op"},
                    {"id": "alice", "ledger": "USD", "code": 1, "owner": "psp"}]
        switch.http.post("/v1/accounts", json=accounts).raise_for_status()
        response = switch.http.post("/v1/transfers", headers={"x-request-id": "trace-42"},
                              json={"id": "t1", "debit_account_id": "bank",
                                    "credit_account_id": "alice", "amount": 5, "ledger": "USD",
                                    "code": 1})
        assert response.status_code == 201 and response.headers["x-request-id"] == "trace-42"
        generated = switch.http.get("/v1/accounts/alice").headers["x-request-id"]
        assert len(generated) == 16 and generated != response.headers["x-request-id"]
        deadline = time.monotonic() + 20
        while True:
            entries = json_lines(log_path)
            access = [e for e in entries if e.get("logger") == "payswitch.access"
                      and e.get("request_id") == "trace-42"]
            batches = [e for e in entries if e.get("logger") == "payswitch.shard"
                       and "trace-42" in e.get("request_ids", [])]  # type: ignore[operator]
            if access and batches:
                break
            assert time.monotonic() < deadline, f"not found in {log_path}"
            time.sleep(0.25)
        assert access[0]["status"] == 201 and access[0]["route"] == "post_transfers"
        serving = [e["serving"] for e in entries if "serving" in e]  # the banner, as JSON
        assert len(serving) == 1 and serving[0]["api"].startswith(  # type: ignore[index]
            f"{switch.url}/v1") and serving[0]["operator_key"].startswith(  # type: ignore[index]
            str(tmp_path / "data" / "operator.key"))
        assert batches[0]["events"] >= 1 and batches[0]["level"] == "DEBUG"
    finally:
        switch.kill_session()
