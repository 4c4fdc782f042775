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
import orjson
import pytest
import ray
import uvicorn

from actors import messages as p
from actors.topology import Topology
from persistence.layout import shard_directory
from persistence.lock import is_locked
from switch.api.app import create_app
from switch.cli.serve import build_router, open_topology, start_shards, stop_shards
from switch.cli.settings import Settings, load_settings
from switch.observe.ray_metrics import RayMetrics
from switch.read.query_actor import start_query_actor
from switch.routing.router import Router


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
             configure_logging=False)
    yield
    ray.shutdown()


def switch_settings(data_dir: Path, shards: int = 3, **overrides: Any) -> Settings:
    return load_settings(environ={}, overrides={
        "data.dir": str(data_dir), "shards.count": shards, "router.redrive_interval_ms": 200,
        **overrides,
    })


class RunningSwitch:
    """The whole switch in this process: shard actors on Ray, the router, uvicorn on a socket."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.shards: list[Any] = []
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self.router: Router | None = None
        self.topology: Topology | None = None
        self.query_actor: Any = None
        self.port = 0
        self.client = httpx.Client(timeout=60)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunningSwitch:
        self.topology = open_topology(self.settings)
        self._wait_unlocked(self.topology.shard_count)
        self.shards = start_shards(self.settings, self.topology)
        self.router = build_router(self.settings, self.shards, self.topology)
        placements = ray.get([shard.placement.remote() for shard in self.shards])
        self.query_actor = start_query_actor(Path(self.settings.data.dir), tuple(
            self.settings.ledgers), self.topology)
        app = create_app(self.router, self.settings, placements=placements,
                         on_tick=RayMetrics().publish, query_actor=self.query_actor)
        sock = socket.socket()
        sock.bind(("127.0.0.1", 0))
        self.port = sock.getsockname()[1]
        config = uvicorn.Config(app, loop="uvloop", http="httptools", lifespan="on",
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
        return self

    def _stop_server(self) -> None:
        if self._server is not None and self._thread is not None:
            self._server.should_exit = True
            self._thread.join(timeout=30)
        self._server = self._thread = None

    def stop(self) -> None:
        """A clean stop: the server drains, the shards close their logs."""
        self._stop_server()
        stop_shards(self.shards)
        for actor in [*self.shards, self.query_actor]:
            ray.kill(actor)
        self.shards = []

    def crash(self) -> None:
        """Kill every shard process at once (SIGKILL), whatever it was doing."""
        for actor in [*self.shards, self.query_actor]:
            ray.kill(actor, no_restart=True)
        self._stop_server()
        self.shards = []

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

    def totals(self) -> dict[str, list[int]]:
        """Per-ledger sums straight from the shards (not through the API under test)."""
        replies = ray.get([s.handle.remote(orjson.dumps([[p.OP_TOTALS]])) for s in self.shards])
        sums: dict[str, list[int]] = {}
        for reply in replies:
            for ledger, values in orjson.loads(reply)[1][0].items():
                row = sums.setdefault(ledger, [0, 0, 0, 0])
                for i, value in enumerate(values):
                    row[i] += value
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
        command = orjson.dumps([[p.OP_IN_DOUBT, 0]])
        replies = ray.get([s.handle.remote(command) for s in self.shards])
        return sum(len(orjson.loads(reply)[1][0]) for reply in replies)


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
