"""The Python client against a real switch: calls coalesce into few requests (counted on the
server), each caller gets its own result, chains stay whole, retries after a dropped
connection or a 503 apply once, and the sync client works from threads."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from switch.client import (
    Account,
    AccountFlags,
    AsyncClient,
    Client,
    IdConflict,
    NotFound,
    RetryPolicy,
    Transfer,
    TransferResult,
    Unauthenticated,
)
from tests.conftest import RunningSwitch
from tests.switch.test_metrics import samples

LIMITED = int(AccountFlags.debits_must_not_exceed_credits)


def requests_served(switch: RunningSwitch, route: str = "post_transfers") -> float:
    found = samples(switch.get("/metrics").text)
    return sum(value for (name, labels), value in found.items()
               if name == "payswitch_http_requests_total" and ("route", route) in labels)


async def open_wallets(client: AsyncClient, count: int, funds: int) -> None:
    await client.create_account(Account("bank", "USD", 1, "op", 0, ""))
    created = await asyncio.gather(*(client.create_account(
        Account(f"w{i}", "USD", 1, "psp", LIMITED, "")) for i in range(count)))
    assert {c.result for c in created} == {"ok"}
    funded = await asyncio.gather(*(client.create_transfer(
        Transfer(f"fund-{i}", "bank", f"w{i}", funds, "USD", 1)) for i in range(count)))
    assert {c.result for c in funded} == {"ok"}


def test_concurrent_calls_coalesce_and_each_gets_its_own_result(switch: RunningSwitch) -> None:
    sizes: list[int] = []

    async def scenario() -> None:
        async with AsyncClient(switch.url, switch.operator_key,
                               on_batch=lambda kind, size: sizes.append(size)) as client:
            await open_wallets(client, 20, 100)
            before = requests_served(switch)
            # 600 payments at once; every 7th asks for more than its wallet holds.
            calls = [client.create_transfer(Transfer(
                f"p{n}", f"w{n % 20}", f"w{(n + 1) % 20}", 1000 if n % 7 == 0 else 1,
                "USD", 1)) for n in range(600)]
            answers = await asyncio.gather(*calls)
            served = requests_served(switch) - before
            for n, answer in enumerate(answers):
                assert answer.id == f"p{n}"
                expected = "exceeds_credits" if n % 7 == 0 else "ok"
                assert answer.result == expected, (n, answer)
            assert served <= 10, served  # 600 calls, a handful of requests
            assert (await client.get_transfer("p1")).amount == 1
            with pytest.raises(NotFound):
                await client.get_transfer("p0")

    asyncio.run(scenario())
    assert max(sizes) > 100


def test_a_chain_stays_whole(switch: RunningSwitch) -> None:
    async def scenario() -> None:
        async with AsyncClient(switch.url, switch.operator_key) as client:
            await open_wallets(client, 4, 10)
            others = [client.create_transfer(Transfer(f"o{n}", "w0", "w1", 1, "USD", 1))
                      for n in range(50)]
            chain = client.create_transfer_chain([
                Transfer("c1", "w2", "w3", 5, "USD", 1),
                Transfer("c2", "w3", "w2", 50, "USD", 1)])  # w3 cannot pay 50: all fail
            *_, chained = await asyncio.gather(*others, chain)
            assert [c.result for c in chained] == ["linked_event_failed", "exceeds_credits"]
            assert (await client.get_account("w2")).debits_posted == 0

    asyncio.run(scenario())


class DroppingProxy:
    """A TCP proxy that forwards each request to the switch, then drops the connection of
    the first `drops` answers instead of passing them on: the client cannot know whether the
    request was applied."""

    def __init__(self, target_port: int, drops: int) -> None:
        self.target_port = target_port
        self.drops = drops
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            client, _ = self.listener.accept()
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        upstream = socket.create_connection(("127.0.0.1", self.target_port))
        with client, upstream:
            while True:
                request = self._one_message(client)
                if not request:
                    return
                upstream.sendall(request)
                answer = self._one_message(upstream)
                if self.drops > 0:
                    self.drops -= 1
                    return  # the answer is lost with the connection
                client.sendall(answer)

    @staticmethod
    def _one_message(sock: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                return b""
            data += chunk
        head, _, body = data.partition(b"\r\n\r\n")
        length = next((int(line.split(b":")[1]) for line in head.split(b"\r\n")
                       if line.lower().startswith(b"content-length:")), 0)
        while len(body) < length:
            body += sock.recv(65536)
        return head + b"\r\n\r\n" + body


def test_a_dropped_answer_is_retried_and_applied_once(switch: RunningSwitch) -> None:
    proxy = DroppingProxy(switch.port, drops=0)
    retries: list[str] = []

    async def scenario() -> None:
        direct = AsyncClient(switch.url, switch.operator_key)
        await open_wallets(direct, 2, 100)
        async with AsyncClient(f"http://127.0.0.1:{proxy.port}", switch.operator_key,
                               on_retry=lambda kind, reason: retries.append(reason),
                               retry=RetryPolicy(backoff_first_ms=10)) as client:
            proxy.drops = 2  # the first two answers are lost: applied, but not told
            answer = await client.create_transfer(Transfer("once", "w0", "w1", 7, "USD", 1))
            assert answer.result == "exists" and answer.ok  # applied by the first try
            # The same id with other fields, after a lost answer: not applied, and told.
            proxy.drops = 1
            await direct.create_transfer(Transfer("taken", "w0", "w1", 1, "USD", 1))
            with pytest.raises(IdConflict):
                await client.create_transfer(Transfer("taken", "w0", "w1", 2, "USD", 1))
        assert (await direct.get_account("w0")).debits_posted == 8  # once each
        await direct.aclose()

    asyncio.run(scenario())
    assert len(retries) == 3


@pytest.fixture
def tight_switch(ray_session: None, tmp_path: Any) -> Iterator[RunningSwitch]:
    from tests.conftest import switch_settings

    settings = switch_settings(tmp_path / "data", **{"server.requests_in_flight_max": 1})
    running = RunningSwitch(settings).start()
    yield running
    running.stop()


def test_503_is_retried_with_the_same_ids(tight_switch: RunningSwitch) -> None:
    switch = tight_switch
    retries: list[str] = []

    async def scenario() -> None:
        async with AsyncClient(switch.url, switch.operator_key, requests_in_flight_max=4,
                               batch_items_max=1,  # one request per call: they compete
                               on_retry=lambda kind, reason: retries.append(reason),
                               retry=RetryPolicy(backoff_first_ms=5)) as client:
            await open_wallets(client, 2, 1000)
            answers = await asyncio.gather(*(client.create_transfer(Transfer(
                f"t{n}", "w0", "w1", 1, "USD", 1)) for n in range(40)))
            assert all(answer.ok for answer in answers)
            assert (await client.get_account("w0")).debits_posted == 40

    asyncio.run(scenario())
    assert "503" in retries  # some were refused (too_many_requests_in_flight), then applied


def test_the_sync_client_from_threads(switch: RunningSwitch) -> None:
    with Client(switch.url, switch.operator_key) as client:
        client.create_account(Account("bank", "USD", 1, "op", 0, ""))
        client.create_account(Account("shop", "USD", 1, "psp", 0, ""))
        with ThreadPoolExecutor(16) as threads:
            answers = list(threads.map(lambda n: client.create_transfer(
                Transfer(f"s{n}", "bank", "shop", 2, "USD", 1)), range(200)))
        assert {a.result for a in answers} == {TransferResult.ok}
        assert client.get_account("shop").credits_posted == 400
    with Client(switch.url, "psk_" + "0" * 16 + "_" + "x" * 43) as stranger, \
            pytest.raises(Unauthenticated):
        stranger.get_account("shop")
