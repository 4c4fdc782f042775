"""Ways found to break the switch through its API, each now answered as it should be."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from actors.ledger.model import AMOUNT_MAX
from switch.api.errors import ApiError
from switch.read.events_api import StreamSlots
from tests.conftest import RunningSwitch, switch_settings


def test_totals_past_2_to_the_64_stay_exact_and_nothing_wedges(switch: RunningSwitch) -> None:
    funders = [{"id": f"big-f{n}", "ledger": "EUR", "code": 1, "owner": "op"} for n in range(8)]
    sinks = [{"id": f"big-s{n}", "ledger": "EUR", "code": 1, "owner": "op"} for n in range(8)]
    assert switch.post("/v1/accounts", funders + sinks).status_code == 200
    transfers = [{"id": f"big-{n}", "debit_account_id": f"big-f{n}",
                  "credit_account_id": f"big-s{n}", "amount": AMOUNT_MAX, "ledger": "EUR",
                  "code": 1} for n in range(8)]
    results = switch.post("/v1/transfers", transfers).json()["results"]
    assert {r["result"] for r in results} == {"ok"}
    ledgers = switch.get("/v1/ledgers")
    assert ledgers.status_code == 200
    eur = next(entry for entry in ledgers.json()["ledgers"] if entry["ledger"] == "EUR")
    assert eur["debits_posted"] == eur["credits_posted"] == 8 * AMOUNT_MAX > 2**64
    assert eur["balanced"] is True
    deadline = time.monotonic() + 10  # the monitor's next poll reads the big sums too
    while switch.get("/dashboard/data").json()["time"] == 0 and time.monotonic() < deadline:
        time.sleep(0.2)
    assert switch.get("/dashboard/data").status_code == 200
    assert switch.get("/metrics").status_code == 200
    more = {"id": "after-big", "debit_account_id": "big-f0", "credit_account_id": "big-s1",
            "amount": 1, "ledger": "EUR", "code": 1}
    assert switch.post("/v1/transfers", more).status_code == 201  # not wedged


def test_limits_without_their_window_answer_422_not_500(switch: RunningSwitch) -> None:
    body = {"id": "vel", "ledger": "USD", "code": 1, "owner": "o",
            "limits": {"velocity_max": 10}}
    response = switch.post("/v1/accounts", body)
    assert response.status_code == 422 and response.json()["code"] == "limits_invalid"
    assert switch.get("/v1/accounts/vel").status_code == 404
    # Batched with others on its shard, it fails alone.
    batch = [body, {"id": "fine-1", "ledger": "USD", "code": 1, "owner": "o"}]
    results = switch.post("/v1/accounts", batch).json()["results"]
    assert [r["result"] for r in results] == ["limits_invalid", "ok"]


QUERY, CURSOR = "query_invalid", "cursor_invalid"


@pytest.mark.parametrize(("query", "code"), [
    ("/v1/accounts/a/transfers?limit=%C2%B2", QUERY),  # "²": isdigit() yes, int() no
    ("/v1/accounts/a/transfers?cursor=99999999999999999999999", CURSOR),
    ("/v1/accounts/a/transfers?limit=1e3", QUERY),
    ("/v1/events?limit=%D9%A3", QUERY),  # an Arabic-Indic digit
    ("/v1/events?after=W1sxODQ0Njc0NDA3MzcwOTU1MTYxNiwwXSxbMSwwXSxbMSwwXV0", CURSOR),  # 2^64
    ("/v1/transfers?code=%C2%B3", QUERY),
    ("/v1/transfers?from=%C2%B9", QUERY),
    ("/v1/transfers?cursor=WzE4NDQ2NzQ0MDczNzA5NTUxNjE2LCJ4Il0", CURSOR),  # at 2^64 ns
    ("/v1/accounts/h/balances?cursor=WzE4NDQ2NzQ0MDczNzA5NTUxNjE2LCIiXQ", CURSOR),
])
def test_every_bad_query_value_answers_400(shared_switch: RunningSwitch, query: str, code: str
                                           ) -> None:
    response = shared_switch.get(query)  # a 400 changes nothing: one switch serves them all
    assert response.status_code == 400, (query, response.text)
    assert response.json()["code"] == code, (query, response.text)


def test_an_empty_cursor_is_the_first_page(switch: RunningSwitch) -> None:
    assert switch.post("/v1/accounts", {"id": "a", "ledger": "USD", "code": 1,
                                        "owner": "o"}).status_code == 201
    assert switch.get("/v1/accounts/a/transfers?cursor=").status_code == 200
    assert switch.get("/v1/transfers?cursor=").status_code == 200


def _long_poll(switch: RunningSwitch, after: str, stream: bool = False) -> socket.socket:
    """A long-poll that waits (nothing new comes), or an event stream, on a raw socket we
    can drop."""
    sock = socket.create_connection(("127.0.0.1", switch.port))
    path = f"/v1/events/stream?after={after}" if stream else \
        f"/v1/events?after={after}&wait_ms=30000"
    key = f"Authorization: Bearer {switch.operator_key}"
    sock.sendall(f"GET {path} HTTP/1.1\r\nHost: x\r\n{key}\r\n\r\n".encode())
    return sock


def test_waiting_reads_have_their_own_bounded_slots(ray_session: None, tmp_path: Path) -> None:
    settings = switch_settings(tmp_path / "data", **{"server.streams_per_client_max": 3,
                                                     "server.requests_in_flight_max": 2})
    switch = RunningSwitch(settings).start()
    try:
        latest = switch.get("/v1/events?after=latest").json()["next"]
        # Three waiting reads (two long-polls, one stream): more than the in-flight limit.
        polls = [_long_poll(switch, latest), _long_poll(switch, latest),
                 _long_poll(switch, latest, stream=True)]
        time.sleep(0.5)
        refused = switch.get(f"/v1/events?after={latest}&wait_ms=30000")
        assert refused.status_code == 429 and refused.json()["code"] == "too_many_streams"
        assert refused.headers["retry-after"]
        # Writes never wait behind them.
        assert switch.post("/v1/accounts", {"id": "w", "ledger": "USD", "code": 1,
                                            "owner": "o"}).status_code == 201
        latest = switch.get("/v1/events?after=latest").json()["next"]  # past the write
        for sock in polls:  # the clients go away: their slots come back within a poll
            sock.close()
        deadline = time.monotonic() + 5
        while switch.get(f"/v1/events?after={latest}&wait_ms=1").status_code == 429:
            assert time.monotonic() < deadline, "slots of closed long-polls were kept"
            time.sleep(0.1)
        started = time.monotonic()
        waited = switch.get("/v1/events?after=latest&wait_ms=400")
        assert waited.status_code == 200 and time.monotonic() - started >= 0.4  # it waited
    finally:
        switch.stop()


def test_a_full_log_answers_storage_full_and_keeps_reads(ray_session: None,
                                                          tmp_path: Path) -> None:
    """Through the API: a write to a shard whose map is full answers 503 storage_full (per
    item in an array) and changes nothing; reads answer; /metrics shows the map nearly full."""
    settings = switch_settings(tmp_path / "data", shards=1,
                               **{"wal.map_size_bytes": 1 << 20})
    switch = RunningSwitch(settings).start()
    try:
        for name in ("bank", "shop"):
            assert switch.post("/v1/accounts", {"id": name, "ledger": "USD", "code": 1,
                                                "owner": "o"}).status_code == 201
        results: list[str] = []
        for n in range(200):
            array = [{"id": f"t{n}-{k}", "debit_account_id": "bank",
                      "credit_account_id": "shop", "amount": 1, "ledger": "USD", "code": 1,
                      "user_data": "x" * 128} for k in range(100)]
            response = switch.post("/v1/transfers", array)
            assert response.status_code == 200, response.text
            results = [r["result"] for r in response.json()["results"]]
            if "storage_full" in results:
                break
        else:
            raise AssertionError("the map never filled")
        assert set(results) == {"storage_full"}, results[:5]  # the whole batch, not a part
        before = switch.get("/v1/accounts/shop").json()
        single = switch.post("/v1/transfers", {"id": "late", "debit_account_id": "bank",
                                               "credit_account_id": "shop", "amount": 1,
                                               "ledger": "USD", "code": 1})
        assert single.status_code == 503 and single.json()["code"] == "storage_full"
        assert "wal.map_size_bytes" in single.json()["message"]  # says what to do
        assert single.headers["retry-after"]
        after = switch.get("/v1/accounts/shop")
        assert after.status_code == 200 and after.json() == before  # nothing changed
        assert switch.get("/v1/transfers/t0-0").status_code == 200
        ratios: list[float] = []
        deadline = time.monotonic() + 10  # shard figures refresh once per monitor tick
        while not (ratios and max(ratios) > 0.9) and time.monotonic() < deadline:
            time.sleep(0.2)
            ratios = [float(line.split()[-1]) for line in switch.get("/metrics").text.splitlines()
                      if line.startswith("payswitch_shard_log_used_ratio{")]
        assert ratios and max(ratios) > 0.9, ratios
    finally:
        switch.stop()


def test_stream_slots_bound_each_client_and_the_total() -> None:
    slots = StreamSlots(total_max=3, per_client_max=2, retry_after_seconds=1)

    def request(host: str) -> Any:
        return SimpleNamespace(client=SimpleNamespace(host=host))

    taken = [slots.take(request("10.0.0.1")), slots.take(request("10.0.0.1"))]
    with pytest.raises(ApiError):  # this client's two are taken
        slots.take(request("10.0.0.1"))
    taken.append(slots.take(request("10.0.0.2")))
    with pytest.raises(ApiError):  # three in all
        slots.take(request("10.0.0.3"))
    for client in taken:
        slots.give_back(client)
    assert slots.taken == 0 and not slots.by_client
