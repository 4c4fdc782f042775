"""API keys and participants, end to end: the operator's first key, keys made and revoked,
a participant disabled, arrays with refused items, rate limits, and the registry surviving a
crash (it is written in a shard's log like any batch)."""

from __future__ import annotations

import base64
import stat
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import RunningSwitch, operator_key, switch_settings


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def call(switch: RunningSwitch, method: str, path: str, token: str, body: Any = None
         ) -> httpx.Response:
    return switch.client.request(method, switch.url + path, json=body, headers=bearer(token))


def participant_with_key(switch: RunningSwitch, participant_id: str) -> str:
    assert switch.post("/v1/participants", {"id": participant_id, "name": participant_id,
                                            "ledgers": ["USD"]}).status_code == 201
    made = switch.post("/v1/keys", {"role": "participant", "participant_id": participant_id})
    assert made.status_code == 201, made.text
    return str(made.json()["secret"])


def wallet(account_id: str, owner: str) -> dict[str, Any]:
    return {"id": account_id, "ledger": "USD", "code": 1, "owner": owner,
            "flags": {"debits_must_not_exceed_credits": True}}


def pay(transfer_id: str, debit: str, credit: str, amount: int = 1) -> dict[str, Any]:
    return {"id": transfer_id, "debit_account_id": debit, "credit_account_id": credit,
            "amount": amount, "ledger": "USD", "code": 1}


def funded(switch: RunningSwitch, *wallets: tuple[str, str]) -> None:
    assert switch.post("/v1/accounts", {"id": "hub", "ledger": "USD", "code": 1,
                                        "owner": "hub"}).status_code == 201
    for account_id, owner in wallets:
        assert switch.post("/v1/accounts", wallet(account_id, owner)).status_code == 201
        assert switch.post("/v1/transfers", pay(f"fund-{account_id}", "hub", account_id,
                                                100)).status_code == 201


def test_the_first_start_writes_the_operator_key_once(switch: RunningSwitch) -> None:
    path = Path(switch.settings.data.dir) / "operator.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    token = path.read_text().strip()
    assert token.startswith("psk_") and call(switch, "GET", "/v1/keys", token).status_code == 200
    switch.restart()  # keys exist: the file is left as it is, and the key still works
    assert operator_key(Path(switch.settings.data.dir)) == token
    keys = switch.get("/v1/keys").json()["keys"]
    assert [(k["role"], k["revoked"]) for k in keys] == [("operator", False)]
    assert all("secret" not in k for k in keys)


def test_open_routes_and_every_way_to_fail_authentication(switch: RunningSwitch) -> None:
    for path in ("/healthz", "/readyz", "/openapi.json"):
        assert httpx.get(switch.url + path).status_code == 200
    # Anyone may probe readiness; each shard's figures (its totals) need a staff key.
    assert httpx.get(switch.url + "/readyz").json() == {"status": "ready", "shards": 3}
    assert len(switch.get("/readyz").json()["shards"]) == 3
    token = switch.operator_key
    # One character changed, never to itself (a key ending in "A" made this the real key).
    altered = token[:-1] + ("B" if token.endswith("A") else "A")
    refused = [{}, {"Authorization": "Bearer"}, {"Authorization": token},
               {"Authorization": "Bearer " + altered},
               {"Authorization": "Bearer " + "psk_" + "x" * 200},
               {"Authorization": "Basic " + base64.b64encode(f"u:{token}\n".encode()).decode()},
               {"Authorization": "Basic !!!"}]
    for headers in refused:
        response = httpx.get(switch.url + "/v1/ledgers", headers=headers)
        assert response.status_code == 401 and response.json()["code"] == "unauthenticated"
        assert response.headers["www-authenticate"].startswith("Bearer")
    # A browser: the dashboard asks for Basic, and takes the key as the password.
    page = httpx.get(switch.url + "/dashboard")
    assert page.status_code == 401 and page.headers["www-authenticate"].startswith("Basic")
    basic = base64.b64encode(f"operator:{token}".encode()).decode()
    assert httpx.get(switch.url + "/dashboard",
                     headers={"Authorization": f"Basic {basic}"}).status_code == 200
    metrics = switch.get("/metrics").text
    assert 'payswitch_auth_failures_total{reason="unauthenticated"} 8.0' in metrics


def test_a_revoked_key_is_refused_at_once(switch: RunningSwitch) -> None:
    made = switch.post("/v1/keys", {"role": "auditor"}).json()
    assert call(switch, "GET", "/v1/ledgers", made["secret"]).status_code == 200
    revoked = switch.client.delete(f"{switch.url}/v1/keys/{made['key_id']}")
    assert revoked.json()["result"] == "ok" and revoked.json()["key"]["revoked"]
    assert call(switch, "GET", "/v1/ledgers", made["secret"]).status_code == 401
    again = switch.client.delete(f"{switch.url}/v1/keys/{made['key_id']}")
    assert again.status_code == 200 and again.json()["result"] == "unchanged"


def test_an_event_stream_ends_when_its_key_is_revoked(switch: RunningSwitch) -> None:
    made = switch.post("/v1/keys", {"role": "auditor"}).json()
    with httpx.stream("GET", switch.url + "/v1/events/stream?after=0",
                      headers=bearer(made["secret"]), timeout=30) as stream:
        lines = stream.iter_lines()
        assert next(line for line in lines if line.startswith("data: "))  # it streams
        switch.client.delete(f"{switch.url}/v1/keys/{made['key_id']}")
        deadline = time.monotonic() + 10
        for _ in lines:  # it ends; else a keep-alive comes within 15 s and fails this
            assert time.monotonic() < deadline, "the stream went on after its key was revoked"


def test_arrays_answer_forbidden_per_item_and_the_rest_proceeds(switch: RunningSwitch) -> None:
    token_a = participant_with_key(switch, "bank-a")
    participant_with_key(switch, "bank-b")
    funded(switch, ("a1", "bank-a"), ("b1", "bank-b"))
    accounts = call(switch, "POST", "/v1/accounts", token_a, [
        wallet("a2", "bank-a"), wallet("b2", "bank-b"),
        {**wallet("a3", "bank-a"), "flags": {}}])
    assert [r["result"] for r in accounts.json()["results"]] == ["ok", "forbidden",
                                                                 "forbidden"]
    assert switch.get("/v1/accounts/b2").status_code == 404  # nothing was created
    transfers = call(switch, "POST", "/v1/transfers", token_a, [
        pay("x1", "a1", "b1"), pay("x2", "b1", "a1"), pay("x3", "hub", "a1")])
    assert [r["result"] for r in transfers.json()["results"]] == ["ok", "forbidden",
                                                                  "forbidden"]
    assert switch.account("b1")["debits_posted"] == 0
    stored = switch.get("/v1/transfers/x1").json()
    assert stored["participant_id"] == "bank-a" and stored["key_id"]
    # Another participant's transfer id: forbidden, and its fields are not shown.
    token_b = participant_with_key(switch, "bank-c")
    stolen = call(switch, "POST", "/v1/transfers", token_b, pay("x1", "a1", "b1"))
    assert stolen.status_code == 403 and "transfer" not in stolen.json()


def test_a_participant_sees_a_reservation_it_was_shown_released(switch: RunningSwitch) -> None:
    """Review: a cross-shard transfer refused on its other side left the participant's
    stream with its wallet's part reserved and never released (the release named only a
    transfer id, and a refused transfer is stored nowhere)."""
    token_a = participant_with_key(switch, "bank-a")
    funded(switch, ("a1", "bank-a"))
    assert switch.router is not None
    refusing = next(f"shut-{n}" for n in range(1000)
                    if switch.router.shard_of(f"shut-{n}") != switch.router.shard_of("a1"))
    assert switch.post("/v1/accounts", {"id": refusing, "ledger": "USD", "code": 1,
                                        "owner": "other", "flags": {
                                            "credits_must_not_exceed_debits": True}}
                       ).status_code == 201
    refused = call(switch, "POST", "/v1/transfers", token_a, pay("r1", "a1", refusing))
    assert refused.status_code == 422 and refused.json()["result"] == "exceeds_debits"
    deadline = time.monotonic() + 10
    while True:
        events = call(switch, "GET", "/v1/events?limit=1000", token_a).json()["events"]
        about = [e["event"] for e in events if "r1" in (
            e["event"].get("transfer_id"), e["event"].get("transfer", {}).get("id"))]
        if any(e["type"] == "reservation_voided" for e in about):
            break
        assert time.monotonic() < deadline, [e["type"] for e in about]
        time.sleep(0.1)
    voided = next(e for e in about if e["type"] == "reservation_voided")
    assert voided["transfer"]["debit_account_id"] == "a1"  # what was released, shown
    assert switch.account("a1")["debits_pending"] == 0


def test_a_disabled_participant_is_credited_not_debited(switch: RunningSwitch) -> None:
    token = participant_with_key(switch, "bank-a")
    funded(switch, ("a1", "bank-a"))
    disabled = switch.client.put(switch.url + "/v1/participants/bank-a",
                                 json={"status": "disabled"})
    assert disabled.json()["participant"]["status"] == "disabled"
    refused = call(switch, "GET", "/v1/accounts/a1", token)
    assert refused.status_code == 403 and refused.json()["code"] == "forbidden"
    assert switch.post("/v1/transfers", pay("in", "hub", "a1")).status_code == 201
    out = switch.post("/v1/transfers", pay("out", "a1", "hub"))
    assert out.status_code == 422 and out.json()["result"] == "debit_participant_disabled"
    switch.client.put(switch.url + "/v1/participants/bank-a", json={"status": "active"})
    assert call(switch, "POST", "/v1/transfers", token, pay("out", "a1", "hub")
                ).status_code == 201


def test_keys_and_participants_survive_a_crash(switch: RunningSwitch) -> None:
    token = participant_with_key(switch, "bank-a")
    switch.client.put(switch.url + "/v1/participants/bank-a", json={"status": "disabled"})
    switch.crash()
    switch.start()
    assert switch.get("/v1/participants/bank-a").json()["status"] == "disabled"
    assert call(switch, "GET", "/v1/participants/bank-a", token).status_code == 403
    switch.client.put(switch.url + "/v1/participants/bank-a", json={"status": "active"})
    assert call(switch, "GET", "/v1/participants/bank-a", token).status_code == 200
    events = switch.get("/v1/events?limit=1000").json()["events"]
    kinds = [e["event"]["type"] for e in events]
    assert kinds.count("participant_status_changed") >= 2 and "key_created" in kinds
    made = next(e["event"] for e in events if e["event"]["type"] == "key_created"
                and e["event"]["key"]["role"] == "participant")
    assert made["key_id"] == switch.operator_key.split("_")[1]  # who made it


@pytest.fixture
def limited_switch(ray_session: None, tmp_path: Path) -> Any:
    settings = switch_settings(tmp_path / "data", **{"auth.requests_per_second": 0.5,
                                                     "auth.burst": 2})
    running = RunningSwitch(settings).start()
    yield running
    running.stop()


def test_a_key_beyond_its_rate_answers_429_and_others_do_not(limited_switch: RunningSwitch
                                                             ) -> None:
    switch = limited_switch
    token_a = participant_with_key(switch, "bank-a")
    token_b = participant_with_key(switch, "bank-b")
    answers = [call(switch, "GET", "/v1/participants/bank-a", token_a) for _ in range(3)]
    assert [a.status_code for a in answers] == [200, 200, 429]
    assert answers[2].json()["code"] == "rate_limited" and answers[2].headers["retry-after"]
    assert call(switch, "GET", "/v1/participants/bank-b", token_b).status_code == 200
    assert all(switch.get("/v1/participants").status_code == 200 for _ in range(5))


def test_a_key_of_its_own_rate(switch: RunningSwitch) -> None:
    slow = switch.post("/v1/keys", {"role": "auditor", "requests_per_second": 1,
                                    "burst": 1}).json()
    assert (slow["requests_per_second"], slow["burst"]) == (1, 1)
    other = switch.post("/v1/keys", {"role": "auditor"}).json()
    assert other["requests_per_second"] is None
    answers = [call(switch, "GET", "/v1/ledgers", slow["secret"]).status_code
               for _ in range(2)]
    assert answers == [200, 429]
    assert call(switch, "GET", "/v1/ledgers", other["secret"]).status_code == 200
