"""`payswitch serve --workers N`: N ingress processes on one port, and their supervisor.

The process that ran `payswitch serve` keeps Ray, the shards and the read model (they are its
actors, named so that the workers find them) and supervises: it runs the start-up (redrive
of what a crash left, the first operator key, what a crash left unmade) before any worker
serves, binds the port, starts N worker processes that accept from that one socket, starts
again any that dies (kill -9 included), and on SIGINT or SIGTERM stops them (each drains its
open requests) before closing the shards. Each worker is a Ray driver of its own with its
own router; a worker that dies takes only the connections it had accepted with it.

Nothing one worker holds in memory is needed by another: a transfer's attempt numbers are
random per router, and a worker's redrive settles another's in-doubt parts once they are
older than `router.foreign_redrive_age_ms` (its own at once); the home's fence makes a late
commit of an attempt it voided fail instead of moving money. A cross-shard answer waits for
its finalize, so a read through another worker sees it whole. The switch layer's windows
are read from the ledger; its read-then-move operator actions take a file lock in the data
directory; scheduled window closes run in worker 0.
"""

from __future__ import annotations

import logging
import multiprocessing
import os
import shutil
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from multiprocessing.connection import wait
from multiprocessing.process import BaseProcess
from pathlib import Path
from types import FrameType
from typing import Any

import ray

from actors.runtime import configure_logging
from actors.shard.actor import NAMESPACE, RayShards
from actors.topology import Topology
from persistence.topology import load_topology
from switch.cli.banner import server_url, show_serving
from switch.cli.ingress import ingress_app, ray_address, run_start_up, serve_http
from switch.cli.settings import Settings
from switch.observe.context import RequestIdFilter
from switch.observe.metrics import MULTIPROCESS_DIR_ENV
from switch.read.query_actor import find_query_actor

log = logging.getLogger("payswitch")

RESTARTS_MAX = 5  # a worker that dies this often within RESTART_WINDOW_S stops the switch:
RESTART_WINDOW_S = 60.0  # it cannot serve (a port taken, a bad setting), restarting won't help
STOP_TIMEOUT_S = 20.0  # a worker that has not drained by then is killed
PARENT_POLL_S = 1.0  # a worker whose supervisor died stops (the shards died with it)
LISTEN_BACKLOG = 2048


def supervise_workers(settings: Settings, shards: RayShards, topology: Topology,
                      query_actor: Any, ray_dashboard_url: str | None) -> int:
    """Run the start-up, then N workers until SIGINT or SIGTERM; 0 after a clean stop, 1 if
    they kept dying, 2 if the port cannot be had."""
    run_start_up(settings, shards, topology, query_actor)
    try:
        listener = listening_socket(settings.server.host, settings.server.port)
    except OSError as error:
        log.error("refusing to start: cannot listen on %s: %s", server_url(settings), error)
        return 2
    context = multiprocessing.get_context("spawn")  # a fresh interpreter: no Ray state copied
    stopping = threading.Event()

    def stop(signum: int, _frame: FrameType | None) -> None:
        stopping.set()

    for signum in (signal.SIGINT, signal.SIGTERM):
        signal.signal(signum, stop)

    def start(index: int) -> BaseProcess:
        process = context.Process(
            target=run_worker, name=f"payswitch-ingress-{index}", daemon=False,
            args=(settings, topology, ray_address(), ray_dashboard_url, index, os.getpid(),
                  listener))
        process.start()
        log.info("ingress worker %d started (pid %s)", index, process.pid)
        return process

    # Each worker's request counters in files here: /metrics sums them over the workers
    # (those started again included: a dead worker's counts stay).
    os.environ[MULTIPROCESS_DIR_ENV] = tempfile.mkdtemp(prefix="payswitch-metrics-")
    workers: dict[int, BaseProcess] = {}
    try:
        for index in range(settings.server.workers):
            workers[index] = start(index)
        show_serving(settings, topology, ray_dashboard_url)  # the port listens already
        return _supervise(workers, start, stopping)
    finally:
        _stop_all(workers)
        listener.close()
        shutil.rmtree(os.environ.pop(MULTIPROCESS_DIR_ENV), ignore_errors=True)


def _supervise(workers: dict[int, BaseProcess], start: Callable[[int], BaseProcess],
               stopping: threading.Event) -> int:
    """Start again each worker that dies, until stopped (0) or they keep dying (1)."""
    deaths: list[float] = []
    while not stopping.is_set():
        wait([worker.sentinel for worker in workers.values()], timeout=0.5)
        for index, worker in list(workers.items()):
            if worker.is_alive() or stopping.is_set():
                continue
            now = time.monotonic()
            deaths = [t for t in deaths if now - t < RESTART_WINDOW_S] + [now]
            if len(deaths) > RESTARTS_MAX:
                log.error("ingress workers died %d times within %.0f s (the last: worker %d, "
                          "exit code %s); stopping. Their log lines above say why.",
                          len(deaths), RESTART_WINDOW_S, index, worker.exitcode)
                return 1
            log.warning("ingress worker %d (pid %s) exited with code %s: starting it again",
                        index, worker.pid, worker.exitcode)
            workers[index] = start(index)
    log.info("stopping %d ingress processes", len(workers))
    return 0


def _stop_all(workers: dict[int, BaseProcess]) -> None:
    for worker in workers.values():
        if worker.is_alive():
            worker.terminate()  # SIGTERM: uvicorn drains what is open
    deadline = time.monotonic() + STOP_TIMEOUT_S
    for worker in workers.values():
        worker.join(max(0.0, deadline - time.monotonic()))
        if worker.is_alive():
            log.warning("ingress worker (pid %s) did not stop in %.0f s: killed", worker.pid,
                        STOP_TIMEOUT_S)
            worker.kill()
            worker.join()


def listening_socket(host: str, port: int) -> socket.socket:
    """The port, bound once here and shared by every worker (each accepts from it): a port
    another program holds is refused at once, and no other process can join it."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # (TIME_WAIT only)
    sock.bind((host, port))
    sock.listen(LISTEN_BACKLOG)
    return sock


def run_worker(settings: Settings, topology: Topology, gcs_address: str,
               ray_dashboard_url: str | None, index: int, supervisor_pid: int,
               listener: socket.socket) -> None:
    """One worker process: join Ray, find the switch's actors, serve until told to stop.
    It places ids by the topology saved now: slot moves and pins made since the supervisor
    started (a worker started again after one) are in it."""
    configure_logging(settings.logging.level, settings.logging.json_lines)
    topology = load_topology(Path(settings.data.dir)) or topology
    for handler in logging.getLogger().handlers:
        handler.addFilter(RequestIdFilter())
    _stop_when_orphaned(supervisor_pid)
    ray.init(address=gcs_address, namespace=NAMESPACE, log_to_driver=False,
             configure_logging=False)
    try:
        shards = RayShards.find(topology)
        app = ingress_app(settings, shards, topology, find_query_actor(topology),
                          ray_dashboard_url, worker_index=index)
        log.info("ingress worker %d (pid %d) serving", index, os.getpid())
        code = serve_http(settings, app, listener)
    finally:
        ray.shutdown()
    sys.exit(code)


def _stop_when_orphaned(supervisor_pid: int) -> None:
    """A worker outliving its supervisor would serve 503 for shards that died with it."""
    def watch() -> None:
        while os.getppid() == supervisor_pid:
            time.sleep(PARENT_POLL_S)
        log.error("the supervisor (pid %d) is gone: this ingress worker stops", supervisor_pid)
        os.kill(os.getpid(), signal.SIGTERM)

    threading.Thread(target=watch, name="supervisor-watch", daemon=True).start()
