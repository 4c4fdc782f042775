"""The saved topology: created on a data directory's first start, read at every later one,
adopted from an older release's shard directories, and settings that disagree refused."""

from __future__ import annotations

from pathlib import Path

import pytest

from actors.topology import Placement, round_robin
from persistence.layout import shard_directory
from persistence.topology import (
    TOPOLOGY_FILE,
    TopologyMismatch,
    load_topology,
    read_topology,
    resolve_topology,
    save_topology,
)


def test_a_new_directory_gets_the_asked_layout_and_its_shard_directories(tmp_path: Path) -> None:
    resolved = resolve_topology(tmp_path, shards_asked=3, slots_asked=64, cpu_count=8)
    assert resolved.how == "created"
    assert (resolved.topology.shard_count, resolved.topology.slots) == (3, 64)
    assert resolved.topology.epoch == 1
    assert load_topology(tmp_path) == resolved.topology
    assert all(shard_directory(tmp_path, index).is_dir() for index in range(3))


def test_zero_means_one_per_cpu_for_a_new_directory_then_what_it_says(tmp_path: Path) -> None:
    assert resolve_topology(tmp_path, 0, 64, cpu_count=5).topology.shard_count == 5
    again = resolve_topology(tmp_path, 0, 64, cpu_count=2)  # another machine: same data
    assert again.how == "saved" and again.topology.shard_count == 5


@pytest.mark.parametrize(("shards", "slots", "message"), [
    (4, 64, "holds 2 shards, but the settings ask for 4"),
    (2, 128, "written with 64 slots, but the settings ask for 128"),
])
def test_settings_that_disagree_are_refused_naming_both(tmp_path: Path, shards: int, slots: int,
                                                       message: str) -> None:
    resolve_topology(tmp_path, 2, 64, cpu_count=8)
    with pytest.raises(TopologyMismatch, match=message):
        resolve_topology(tmp_path, shards, slots, cpu_count=8)
    assert load_topology(tmp_path) == round_robin(2, 64)  # nothing changed


def test_an_older_releases_directory_is_adopted_once(tmp_path: Path) -> None:
    for index in range(3):
        shard_directory(tmp_path, index).mkdir()
    with pytest.raises(TopologyMismatch, match="holds 3 shards, but the settings ask for 2"):
        resolve_topology(tmp_path, 2, 1024, cpu_count=2)
    assert load_topology(tmp_path) is None  # a refused start writes nothing
    assert read_topology(tmp_path, 1024) == round_robin(3, 1024)  # what the WAL tool reads
    adopted = resolve_topology(tmp_path, 0, 1024, cpu_count=2)
    assert adopted.how == "adopted" and adopted.topology == round_robin(3, 1024)
    assert resolve_topology(tmp_path, 3, 1024, cpu_count=2).how == "saved"


def test_a_missing_or_extra_shard_directory_is_refused(tmp_path: Path) -> None:
    resolve_topology(tmp_path, 2, 64, cpu_count=8)
    shard_directory(tmp_path, 1).rmdir()
    with pytest.raises(TopologyMismatch, match="shard-0001 missing"):
        resolve_topology(tmp_path, 0, 64, cpu_count=8)
    shard_directory(tmp_path, 1).mkdir()
    shard_directory(tmp_path, 2).mkdir()
    with pytest.raises(TopologyMismatch, match="holds 3 shard directories"):
        resolve_topology(tmp_path, 0, 64, cpu_count=8)


def test_a_damaged_or_future_topology_file_is_refused(tmp_path: Path) -> None:
    save_topology(tmp_path, round_robin(2, 64))
    path = tmp_path / TOPOLOGY_FILE
    path.write_text(path.read_text().replace('"format_version": 1', '"format_version": 9'))
    with pytest.raises(TopologyMismatch, match="format version 9 is not known"):
        load_topology(tmp_path)
    path.write_text("{not json")
    with pytest.raises(TopologyMismatch, match="cannot be read"):
        load_topology(tmp_path)


def test_placement_follows_the_table_not_the_shard_count() -> None:
    topology = round_robin(2, 8)
    moved = type(topology)(topology.format_version, 8, 2, [1] * 7 + [0], 2)
    ids = [f"id-{n}" for n in range(200)]
    assert {Placement(moved).shard_of(i) for i in ids} == {0, 1}
    assert [Placement(moved).shard_of(i) for i in ids] != [Placement(topology).shard_of(i)
                                                            for i in ids]
