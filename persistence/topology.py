"""A data directory's saved topology (`topology.json`): written durably the first time the
directory is served, read at every later start, never reinterpreted silently.

- A new directory: the topology the settings ask for (half the CPUs, at least one, when
  they ask for 0; shards dealt round-robin to the storage nodes there are) is written with
  a new switch id and `shards_created` false (temporary file, fsync, rename, fsync of the
  directory). Each shard then makes its directory on its node (persistence/identity.py)
  and the caller saves the topology again with `shards_created` true: from then on a shard
  directory that goes missing is noticed by its shard instead of being recreated empty.
- A directory with shards but no topology (written by a release before topologies): the
  topology is adopted once from the shard directories present (slots dealt round-robin, as
  those releases did) and saved; the caller logs that it did so.
- A version 1 topology (before storage nodes) is upgraded once: a switch id, every shard on
  the local node.
- Settings that disagree with the saved topology are refused, naming both values.
"""

from __future__ import annotations

import fcntl
import os
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import msgspec

from actors.topology import LOCAL_NODE, Topology, named, round_robin
from persistence.durable_file import write_durably
from persistence.layout import SHARD_DIRECTORY, shard_directories

TOPOLOGY_FILE = "topology.json"
TOPOLOGY_LOCK_FILE = "topology.lock"  # flock: one writer of topology.json at a time


class TopologyMismatch(Exception):
    """The settings ask for a layout the data directory was not written with."""


@dataclass(frozen=True)
class Resolved:
    topology: Topology
    how: str  # "saved", "created", "adopted" or "upgraded"


def topology_path(data_dir: Path) -> Path:
    return data_dir / TOPOLOGY_FILE


def load_topology(data_dir: Path) -> Topology | None:
    """The saved topology, or None if the directory has none (yet)."""
    path = topology_path(data_dir)
    if not path.exists():
        return None
    try:
        return msgspec.json.decode(path.read_bytes(), type=Topology).check()
    except (msgspec.DecodeError, ValueError) as error:
        raise TopologyMismatch(f"{path} cannot be read: {error}") from None


class SavedTopology:
    """The saved topology, read again only when its file changed (a stat per look): how an
    ingress process hears of a slot move or a failover another process saved."""

    def __init__(self, data_dir: Path) -> None:
        self.path = topology_path(data_dir)
        self._seen: tuple[int, int, int] | None = None

    def changed(self, anyway: bool = False) -> Topology | None:
        """The topology if the file changed since the last look (or at the first, or
        `anyway`), else None; None too while it cannot be read (a look later tries again)."""
        try:
            stat = self.path.stat()
        except OSError:
            return None
        seen = (stat.st_ino, stat.st_mtime_ns, stat.st_size)  # (saved by a rename: new inode)
        if seen == self._seen and not anyway:
            return None
        try:
            topology = load_topology(self.path.parent)
        except (TopologyMismatch, OSError):
            return None
        self._seen = seen
        return topology


def save_topology(data_dir: Path, topology: Topology) -> None:
    """Write the file durably: a crash leaves the old file or the new one, never a torn one."""
    write_durably(topology_path(data_dir),
                  msgspec.json.format(msgspec.json.encode(topology.check()), indent=2) + b"\n")


def update_topology(data_dir: Path, change: Callable[[Topology], Topology]) -> Topology:
    """Read, change and save the topology under an exclusive lock, so that its writers (the
    replication controller, a slot move in any ingress process) never undo each other."""
    fd = os.open(data_dir / TOPOLOGY_LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # held for a file write: never long
        saved = load_topology(data_dir)
        if saved is None:
            raise TopologyMismatch(f"{data_dir} has no topology to change")
        changed = change(saved)
        if changed != saved:
            save_topology(data_dir, changed)
        return changed
    finally:
        os.close(fd)  # drops the lock


def read_topology(data_dir: Path, slots: int) -> Topology:
    """For readers that must not write (the WAL tool): the saved topology, or the one an older
    release's directory implies (`slots` from the settings it was written with)."""
    saved = load_topology(data_dir)
    if saved is not None:
        return saved
    return round_robin(len(shard_directories(data_dir)), slots)


def default_shard_count(cpu_count: int) -> int:
    """A new data directory's shards when none are asked: half the machine's cores, at least
    one. The ingress processes need about as much CPU as the shards they drive, and a
    transfer across shards costs about three shard commands where one shard needs one: on
    2 cores one shard carries more than two (bench/RESULTS.md, "How many shards on 2
    cores")."""
    return max(1, cpu_count // 2)


def resolve_topology(data_dir: Path, shards_asked: int, slots_asked: int,
                     cpu_count: int, storage_nodes: Sequence[str] = (LOCAL_NODE,)) -> Resolved:
    """The topology to serve `data_dir` with; saves it if the directory had none, or had a
    version 1 one ("upgraded").

    `shards_asked` 0 means "what the data directory says" (for a new one:
    `default_shard_count(cpu_count)`).
    `storage_nodes`: the names of the storage nodes a new directory's shards are dealt to.
    Raises TopologyMismatch when the settings disagree with the data.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    saved = load_topology(data_dir)
    how = "saved"
    if saved is None:
        present = _shard_directories_present(data_dir)
        if present:
            saved, how = round_robin(present, slots_asked, switch_id=new_switch_id()), "adopted"
        else:
            saved, how = round_robin(shards_asked or default_shard_count(cpu_count), slots_asked,
                                     switch_id=new_switch_id(), nodes=sorted(storage_nodes),
                                     shards_created=False), "created"
    elif not saved.switch_id:
        saved, how = named(saved, new_switch_id()), "upgraded"
    _refuse_disagreement(data_dir, saved, shards_asked, slots_asked, how)
    _refuse_extra_shard_directories(data_dir, saved)
    if how != "saved":
        save_topology(data_dir, saved)
    return Resolved(saved, how)


def check_saved_layout(data_dir: Path, shards_asked: int, slots_asked: int) -> None:
    """Before anything starts: a data directory with a saved topology that the settings
    disagree with is refused at once (`resolve_topology` checks again, and the rest)."""
    saved = load_topology(data_dir) if data_dir.is_dir() else None
    if saved is not None:
        _refuse_disagreement(data_dir, saved, shards_asked, slots_asked, "saved")


def new_switch_id() -> str:
    return uuid.uuid4().hex


def mark_shards_created(data_dir: Path, topology: Topology) -> Topology:
    """Every shard has made its directory: from now on one that goes missing is refused."""
    created = msgspec.structs.replace(topology, shards_created=True)
    save_topology(data_dir, created)
    return created


def _refuse_disagreement(data_dir: Path, saved: Topology, shards_asked: int, slots_asked: int,
                         how: str) -> None:
    where = f"{data_dir} ({'its shard directories' if how == 'adopted' else TOPOLOGY_FILE})"
    if shards_asked and shards_asked != saved.shard_count:
        raise TopologyMismatch(
            f"the data directory {where} holds {saved.shard_count} shards, but the settings ask "
            f"for {shards_asked} (--shards / shards.count / PAYSWITCH_SHARDS_COUNT). Serve it "
            f"with {saved.shard_count}, or with 0 (what the data directory says); serving it "
            "with another count would lose accounts and make transfer ids free again.")
    if slots_asked != saved.slots:
        raise TopologyMismatch(
            f"the data directory {where} was written with {saved.slots} slots, but the "
            f"settings ask for {slots_asked} (shards.slots). Serve it with {saved.slots}.")


def _shard_directories_present(data_dir: Path) -> int:
    try:
        return len(shard_directories(data_dir))
    except FileNotFoundError:  # no shard directories: a new data directory
        return 0


def _refuse_extra_shard_directories(data_dir: Path, topology: Topology) -> None:
    """Shard directories beyond the topology's shards (a missing one is its shard's to
    notice: on a storage node of its own, the ingress cannot see it)."""
    present = len([path for path in data_dir.iterdir()
                   if path.is_dir() and SHARD_DIRECTORY.match(path.name)])
    if present > topology.shard_count:
        raise TopologyMismatch(
            f"{data_dir} holds {present} shard directories, but its {TOPOLOGY_FILE} has "
            f"{topology.shard_count} shards: the extra ones were not written by this layout. "
            "Move them away (keep a copy) and start again.")
