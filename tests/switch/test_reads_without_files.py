"""The event stream and the queries reach the shards through their links only: neither the
ingress process nor the read model's process ever opens a file of a shard's data directory
(which is what lets shards live on other nodes). Checked from the kernel's side: the files
each process has mapped or open."""

from __future__ import annotations

import os
from pathlib import Path

import ray

from tests.conftest import RunningSwitch


def files_of(pid: int) -> set[str]:
    """Every file a process has mapped (LMDB maps its data files) or open."""
    found = set()
    with open(f"/proc/{pid}/maps") as maps:
        for line in maps:
            parts = line.split(maxsplit=5)
            if len(parts) == 6 and parts[5].startswith("/"):
                found.add(parts[5].strip())
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            found.add(os.readlink(f"/proc/{pid}/fd/{fd}"))
        except OSError:
            continue
    return found


def test_events_and_queries_never_open_a_shards_files(switch: RunningSwitch) -> None:
    switch.ring("r", accounts=6, transfers=12)
    events = switch.get("/v1/events?limit=100").json()["events"]
    assert len(events) >= 18
    assert len(switch.get("/v1/transfers?limit=100").json()["transfers"]) == 12
    assert len(switch.get("/v1/accounts?limit=100&owner=o").json()["accounts"]) == 6
    data_dir = str(Path(switch.settings.data.dir).resolve())
    shard_pids = [ray.get(actor.placement.remote())["pid"] for actor in switch.shards]
    query_pid = ray.get(switch.query_actor.pid.remote())
    for pid in (os.getpid(), query_pid):
        foreign = {path for path in files_of(pid) if path.startswith(data_dir)}
        assert not foreign, (pid, foreign)
    # The check can fail: each shard's own process does map its data directory.
    assert all(any(p.startswith(data_dir) for p in files_of(pid)) for pid in shard_pids)
