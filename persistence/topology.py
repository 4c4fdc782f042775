"""A data directory's saved topology (`topology.json`): written durably the first time the
directory is served, read at every later start, never reinterpreted silently.

- A new directory: the topology the settings ask for (one shard per CPU when they ask for 0)
  is chosen, every shard directory is created, then the file is written (temporary file,
  fsync, rename, fsync of the directory), so a shard directory that goes missing later is
  noticed instead of being recreated empty.
- A directory with shards but no topology (written by a release before topologies): the
  topology is adopted once from the shard directories present (slots dealt round-robin, as
  those releases did) and saved; the caller logs that it did so.
- Settings that disagree with the saved topology are refused, naming both values.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import msgspec

from actors.topology import Topology, round_robin
from persistence.layout import shard_directories, shard_directory

TOPOLOGY_FILE = "topology.json"


class TopologyMismatch(Exception):
    """The settings ask for a layout the data directory was not written with."""


@dataclass(frozen=True)
class Resolved:
    topology: Topology
    how: str  # "saved", "created" or "adopted"


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


def save_topology(data_dir: Path, topology: Topology) -> None:
    """Write the file durably: a crash leaves the old file or the new one, never a torn one."""
    data_dir.mkdir(parents=True, exist_ok=True)
    path = topology_path(data_dir)
    temporary = path.with_suffix(".tmp")
    with temporary.open("wb") as file:
        file.write(msgspec.json.format(msgspec.json.encode(topology.check()), indent=2) + b"\n")
        file.flush()
        os.fsync(file.fileno())
    os.replace(temporary, path)
    _fsync_directory(data_dir)


def read_topology(data_dir: Path, slots: int) -> Topology:
    """For readers that must not write (the WAL tool): the saved topology, or the one an older
    release's directory implies (`slots` from the settings it was written with)."""
    saved = load_topology(data_dir)
    if saved is not None:
        return saved
    return round_robin(len(shard_directories(data_dir)), slots)


def resolve_topology(data_dir: Path, shards_asked: int, slots_asked: int,
                     cpu_count: int) -> Resolved:
    """The topology to serve `data_dir` with; saves it if the directory had none.

    `shards_asked` 0 means "what the data directory says" (for a new one: `cpu_count`).
    Raises TopologyMismatch when the settings disagree with the data.
    """
    data_dir.mkdir(parents=True, exist_ok=True)
    saved = load_topology(data_dir)
    how = "saved"
    if saved is None:
        present = _shard_directories_present(data_dir)
        if present:
            saved, how = round_robin(present, slots_asked), "adopted"
        else:
            saved, how = round_robin(shards_asked or cpu_count, slots_asked), "created"
    _refuse_disagreement(data_dir, saved, shards_asked, slots_asked, how)
    if how == "saved":
        _require_shard_directories(data_dir, saved)
        return Resolved(saved, how)
    for index in range(saved.shard_count):
        shard_directory(data_dir, index).mkdir(exist_ok=True)
    _fsync_directory(data_dir)
    save_topology(data_dir, saved)
    return Resolved(saved, how)


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


def _require_shard_directories(data_dir: Path, topology: Topology) -> None:
    missing = [shard_directory(data_dir, index).name for index in range(topology.shard_count)
               if not shard_directory(data_dir, index).is_dir()]
    extra = _shard_directories_present(data_dir) - topology.shard_count if not missing else 0
    if extra > 0:
        raise TopologyMismatch(
            f"{data_dir} holds {topology.shard_count + extra} shard directories, but its "
            f"{TOPOLOGY_FILE} has {topology.shard_count} shards: the extra ones were not written "
            "by this layout. Move them away (keep a copy) and start again.")
    if missing:
        raise TopologyMismatch(
            f"{data_dir}: {', '.join(missing)} missing, but its {TOPOLOGY_FILE} has "
            f"{topology.shard_count} shards. A shard's data cannot be recreated empty: restore "
            "the directory from a backup (docs/OPERATIONS.md).")


def _fsync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
