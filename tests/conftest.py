"""Shared fixtures: one real local Ray for the session, and switches served on real sockets."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import ray
import uvicorn
from hypothesis import settings as hypothesis_settings
from hypothesis.database import DirectoryBasedExampleDatabase

from actors.codec import decode_reply, encode_commands
from actors.ledger.queries import add_totals
from actors.messages import Command, GetTotals, ListInDoubt
from actors.shard.actor import STORAGE_LABEL, RayShards, cluster_nodes
from actors.topology import LOCAL_NODE, Topology
from persistence.layout import shard_directory
from persistence.lock import is_locked
from switch.api.app import create_app
from switch.api.http_protocol import CoalescingHttpToolsProtocol
from switch.cli.ingress import build_router
from switch.cli.serve import open_topology, start_shards, stop_shards
from switch.cli.settings import Settings, load_settings
from switch.observe.ray_metrics import RayMetrics
from switch.read.query_actor import start_query_actor
from switch.routing.router import Router

# Property tests run with fixed seeds in CI (a failure found once is found again, and its
# reproduction is printed); PAYSWITCH_HYPOTHESIS=explore draws fresh seeds and keeps every
# failing example in .hypothesis/ to replay.
hypothesis_settings.register_profile("ci", derandomize=True, print_blob=True, database=None)
hypothesis_settings.register_profile(
    "explore", print_blob=True,
    database=DirectoryBasedExampleDatabase(str(Path(__file__).parent.parent / ".hypothesis")))
hypothesis_settings.load_profile(os.environ.get("PAYSWITCH_HYPOTHESIS", "ci"))


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption("--run-slow", action="store_true", help="run the long (slow) tests too")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--run-slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with --run-slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    ray.init(address="local", num_cpus=2, include_dashboard=False,
             object_store_memory=256 * 1024 * 1024, log_to_driver=False,
             configure_logging=False, labels={STORAGE_LABEL: LOCAL_NODE})
    yield
    ray.shutdown()


def operator_key(data_dir: Path) -> str:
    """The key the switch's first start wrote (switch/api/registry_api.py)."""
    return (data_dir / "operator.key").read_text().strip()


def switch_settings(data_dir: Path, shards: int = 3, **overrides: Any) -> Settings:
    return load_settings(environ={}, overrides={
        "data.dir": str(data_dir), "shards.count": shards, "router.redrive_interval_ms": 200,
        **overrides,
    })


class RunningSwitch:
    """The whole switch in this process: shard actors on Ray, the router, uvicorn on a socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.fleet: RayShards | None = None
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.router: Router | None = None
        self.topology: Topology | None = None
        self.query_actor: Any = None
        self.port = 0
        self.client = httpx.Client(timeout=60)
        self.operator_key = ""

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunningSwitch:
        self.topology = open_topology(self.settings)
        self._wait_unlocked(self.topology.shard_count)
        self.fleet = start_shards(self.settings, self.topology)
        self.router = build_router(self.settings, self.fleet, self.topology)
        placements = self.fleet.placements()
        self.query_actor = start_query_actor(self.topology)
        app = create_app(self.router, self.settings, placements=placements,
                         on_tick=RayMetrics().publish, query_actor=self.query_actor,
                         list_nodes=cluster_nodes)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, loop="uvloop", http=CoalescingHttpToolsProtocol, lifespan="on",
                                log_level="warning", access_log=False)
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [sock]},
                                        daemon=True)
        self._thread.start()
        deadline = time.monotonic() + 30
        while not self._server.started:
            assert time.monotonic() < deadline, "server did not start"
            assert self._thread.is_alive(), "server thread died"
            time.sleep(0.02)
        self.operator_key = operator_key(Path(self.settings.data.dir))
        self.client.headers["Authorization"] = f"Bearer {self.operator_key}"
        return self

    def _stop_server(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._server = self._thread = None

    @property
    def shards(self) -> list[Any]:
        """The shard actors (Ray handles), in shard order."""
        return self.fleet.actors if self.fleet is not None else []

    def stop(self) -> None:
        """A clean stop: the server drains, the shards close their logs."""
        self._stop_server()
        if self.fleet is not None:
            stop_shards(self.fleet)
            self.fleet.kill()
        ray.kill(self.query_actor)
        self.fleet = None

    def crash(self) -> None:
        """Kill every shard process at once (SIGKILL), whatever it was doing."""
        if self.fleet is not None:
            self.fleet.kill()
        ray.kill(self.query_actor, no_restart=True)
        self._stop_server()
        self.fleet = None

    def restart(self) -> RunningSwitch:
        self.stop()
        return self.start()

    def _wait_unlocked(self, shard_count: int) -> None:
        data_dir = Path(self.settings.data.dir)
        deadline = time.monotonic() + 30
        for index in range(shard_count):
            while is_locked(shard_directory(data_dir, index)):
                assert time.monotonic() < deadline, "a killed shard still holds its directory"
                time.sleep(0.05)

    # ---- API helpers ----

    def post(self, path: str, body: Any) -> httpx.Response:
        return self.client.post(self.url + path, json=body)

    def get(self, path: str) -> httpx.Response:
        return self.client.get(self.url + path)

    def account(self, account_id: str) -> dict[str, Any]:
        response = self.get(f"/v1/accounts/{account_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def ring(self, prefix: str, accounts: int, transfers: int) -> None:
        """Accounts `<prefix>0..`, and transfers `<prefix>t0..` each from one to the next."""
        created = [{"id": f"{prefix}{n}", "ledger": "USD", "code": 1, "owner": "o"}
                   for n in range(accounts)]
        assert self.post("/v1/accounts", created).status_code == 200
        moved = [{"id": f"{prefix}t{n}", "debit_account_id": f"{prefix}{n % accounts}",
                  "credit_account_id": f"{prefix}{(n + 1) % accounts}", "amount": 1 + n,
                  "ledger": "USD", "code": 1} for n in range(transfers)]
        assert self.post("/v1/transfers", moved).status_code == 200

    def wait_for_credits(self, account_id: str, credits_posted: int) -> None:
        """An acknowledged cross-shard transfer's credit reaches its account's shard after the
        answer (its finalize is queued, not awaited). Before calling that shard directly
        (`shard_call`, not behind it in the router's queue), wait for it."""
        deadline = time.monotonic() + 10
        while self.account(account_id)["credits_posted"] < credits_posted:
            assert time.monotonic() < deadline, f"the credit never reached {account_id}"
            time.sleep(0.05)

    def shard_call(self, shard: int, commands: list[Command]) -> list[Any]:
        """Commands straight to one shard actor (not through the router under test)."""
        reply = decode_reply(ray.get(self.shards[shard].handle.remote(
            encode_commands(commands))))
        assert not reply.failed, reply
        return list(reply.replies)

    def totals(self) -> dict[str, list[int]]:
        """Per-ledger sums straight from the shards (not through the API under test)."""
        sums: dict[str, list[int]] = {}
        for shard in range(len(self.shards)):
            (reply,) = self.shard_call(shard, [GetTotals()])
            add_totals(sums, reply.totals)
        return sums

    def totals_at_rest(self, timeout_s: float = 10) -> dict[str, list[int]]:
        """Totals once nothing is in flight. An answer leaves when the decision is durable;
        its last round (finalizing the parts elsewhere) follows at once but may still be
        running, and these reads do not queue behind it. Returns the last totals seen."""
        deadline = time.monotonic() + timeout_s
        while True:
            totals = self.totals()
            at_rest = all(row[0] == row[1] and row[2] == row[3] for row in totals.values())
            if at_rest or time.monotonic() > deadline:
                return totals
            time.sleep(0.05)

    def in_doubt(self) -> int:
        return sum(len(self.shard_call(shard, [ListInDoubt(0)])[0].parts)
                   for shard in range(len(self.shards)))


def shard_ids(router: Router, shard: int, prefix: str, count: int) -> list[str]:
    """Ids (with this prefix) that the router places on the given shard."""
    found, n = [], 0
    while len(found) < count:
        candidate = f"{prefix}{n}"
        if router.shard_of(candidate) == shard:
            found.append(candidate)
        n += 1
    return found


@pytest.fixture
def switch(ray_session: None, tmp_path: Path) -> Iterator[RunningSwitch]:
    running = RunningSwitch(switch_settings(tmp_path / "data")).start()
    yield running
    running.stop()


@pytest.fixture
def quiet_switch(ray_session: None, tmp_path: Path) -> Iterator[RunningSwitch]:
    """A switch whose periodic redrive never runs, for tests that play a crash by calling the
    shards directly: only the redrive at start-up may settle what they leave (a periodic one
    could void a part between two of the test's calls on a slow machine)."""
    settings = switch_settings(tmp_path / "data", **{"router.redrive_interval_ms": 600_000})
    running = RunningSwitch(settings).start()
    yield running
    running.stop()


@pytest.fixture(scope="module")
def shared_switch(ray_session: None, tmp_path_factory: pytest.TempPathFactory
                  ) -> Iterator[RunningSwitch]:
    """One switch for a whole module, for tests that leave no state behind."""
    running = RunningSwitch(switch_settings(tmp_path_factory.mktemp("data"))).start()
    yield running
    running.stop()


def assert_balanced(totals: dict[str, list[int]]) -> None:
    """Per ledger: debits equal credits, posted and pending alike."""
    for ledger, (debits_posted, credits_posted, debits_pending, credits_pending) in totals.items():
        assert debits_posted == credits_posted, (ledger, totals)
        assert debits_pending == credits_pending, (ledger, totals)


os.environ.setdefault("RAY_DEDUP_LOGS", "0")
