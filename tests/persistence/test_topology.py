"""The saved topology: created on a data directory's first start, read at every later one,
adopted from an older release's shard directories, and settings that disagree refused."""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from actors.topology import (
    LOCAL_NODE,
    Placement,
    placed_as,
    promoted,
    replica_synced,
    round_robin,
    with_replicas,
)
from persistence.layout import shard_directory
from persistence.topology import (
    TOPOLOGY_FILE,
    SavedTopology,
    TopologyMismatch,
    default_shard_count,
    load_topology,
    mark_shards_created,
    read_topology,
    resolve_topology,
    save_topology,
    update_topology,
)
from switch.routing.slot_move import moved_in


def test_a_new_directory_gets_the_asked_layout_on_the_storage_nodes(tmp_path: Path) -> None:
    resolved = resolve_topology(tmp_path, shards_asked=3, slots_asked=64, cpu_count=8,
                                storage_nodes=["b", "a"])
    topology = resolved.topology
    assert resolved.how == "created"
    assert (topology.shard_count, topology.slots, topology.epoch) == (3, 64, 1)
    assert topology.shard_nodes == ["a", "b", "a"]  # dealt round-robin, by name
    assert len(topology.switch_id) == 32 and not topology.shards_created
    assert load_topology(tmp_path) == topology
    # Each shard makes its own directory, on its node; then the topology says they exist.
    assert not any(shard_directory(tmp_path, index).exists() for index in range(3))
    assert mark_shards_created(tmp_path, topology).shards_created
    again = resolve_topology(tmp_path, 3, 64, cpu_count=8, storage_nodes=["c"])
    assert again.how == "saved" and again.topology.shard_nodes == ["a", "b", "a"]
    assert again.topology.switch_id == topology.switch_id and again.topology.shards_created


def test_a_version_1_topology_is_upgraded_once_with_its_shards_on_the_local_node(
        tmp_path: Path) -> None:
    version_1 = (b'{"format_version": 1, "slots": 4, "shard_count": 2, '
                 b'"slot_table": [0, 1, 0, 1], "epoch": 1}')
    (tmp_path / TOPOLOGY_FILE).write_bytes(version_1)
    assert read_topology(tmp_path, 4).format_version == 1  # the WAL tool reads it as it is
    upgraded = resolve_topology(tmp_path, 0, 4, cpu_count=8, storage_nodes=["x"])
    assert upgraded.how == "upgraded"
    assert upgraded.topology.format_version == 2 and upgraded.topology.shards_created
    assert upgraded.topology.shard_nodes == [LOCAL_NODE, LOCAL_NODE]
    assert upgraded.topology.slot_table == [0, 1, 0, 1]
    again = resolve_topology(tmp_path, 0, 4, cpu_count=8)
    assert again.how == "saved" and again.topology == upgraded.topology


def test_zero_means_half_the_cores_for_a_new_directory_then_what_it_says(tmp_path: Path
                                                                         ) -> None:
    assert [default_shard_count(cores) for cores in (1, 2, 3, 4, 8)] == [1, 1, 1, 2, 4]
    assert resolve_topology(tmp_path, 0, 64, cpu_count=10).topology.shard_count == 5
    again = resolve_topology(tmp_path, 0, 64, cpu_count=2)  # another machine: same data
    assert again.how == "saved" and again.topology.shard_count == 5


@pytest.mark.parametrize(("shards", "slots", "message"), [
    (4, 64, "holds 2 shards, but the settings ask for 4"),
    (2, 128, "written with 64 slots, but the settings ask for 128"),
])
def test_settings_that_disagree_are_refused_naming_both(tmp_path: Path, shards: int, slots: int,
                                                       message: str) -> None:
    created = resolve_topology(tmp_path, 2, 64, cpu_count=8).topology
    with pytest.raises(TopologyMismatch, match=message):
        resolve_topology(tmp_path, shards, slots, cpu_count=8)
    assert load_topology(tmp_path) == created  # nothing changed


def test_an_older_releases_directory_is_adopted_once(tmp_path: Path) -> None:
    for index in range(3):
        shard_directory(tmp_path, index).mkdir()
    with pytest.raises(TopologyMismatch, match="holds 3 shards, but the settings ask for 2"):
        resolve_topology(tmp_path, 2, 1024, cpu_count=2)
    assert load_topology(tmp_path) is None  # a refused start writes nothing
    assert read_topology(tmp_path, 1024) == round_robin(3, 1024)  # what the WAL tool reads
    adopted = resolve_topology(tmp_path, 0, 1024, cpu_count=2)
    assert adopted.how == "adopted" and adopted.topology == round_robin(
        3, 1024, switch_id=adopted.topology.switch_id)
    assert resolve_topology(tmp_path, 3, 1024, cpu_count=2).how == "saved"


def test_an_extra_shard_directory_is_refused(tmp_path: Path) -> None:
    """(A missing one is its shard's to refuse: tests/persistence/test_identity.py.)"""
    resolve_topology(tmp_path, 2, 64, cpu_count=8)
    for index in range(3):
        shard_directory(tmp_path, index).mkdir()
    with pytest.raises(TopologyMismatch, match="holds 3 shard directories"):
        resolve_topology(tmp_path, 0, 64, cpu_count=8)


def test_a_damaged_or_future_topology_file_is_refused(tmp_path: Path) -> None:
    save_topology(tmp_path, round_robin(2, 64))
    path = tmp_path / TOPOLOGY_FILE
    path.write_text(path.read_text().replace('"format_version": 2', '"format_version": 9'))
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


def test_followers_go_on_the_next_storage_node_and_a_version_2_file_still_loads(
        tmp_path: Path) -> None:
    """Replication (format 3) adds each shard's follower, epoch and in-sync flag; a version 2
    file (no followers) reads as every shard in epoch 1 without one."""
    plain = round_robin(3, 64, switch_id="s", nodes=["a", "b", "c"])
    save_topology(tmp_path, plain)
    loaded = load_topology(tmp_path)
    assert loaded is not None and loaded.format_version == 2
    assert [(loaded.replica_node(i), loaded.shard_epoch(i), loaded.replica_in_sync(i))
            for i in range(3)] == [("", 1, False)] * 3
    replicated = with_replicas(loaded, ["a", "b", "c"])
    assert replicated.format_version == 3
    assert replicated.shard_nodes == ["a", "b", "c"]
    assert replicated.replica_nodes == ["b", "c", "a"]
    assert replicated.shard_epochs == [1, 1, 1] and replicated.replicas_in_sync == [False] * 3
    save_topology(tmp_path, replicated)
    assert load_topology(tmp_path) == replicated
    assert with_replicas(plain, ["a"]) == plain  # one node: nowhere to put a follower


def test_only_an_in_sync_follower_is_promoted_under_the_next_epoch() -> None:
    topology = with_replicas(round_robin(2, 64, switch_id="s", nodes=["a", "b"]), ["a", "b"])
    with pytest.raises(ValueError, match="not in sync"):
        promoted(topology, 1)
    after = promoted(replica_synced(topology, 1, True), 1)
    assert after.shard_nodes == ["a", "a"] and after.replica_nodes == ["b", "b"]
    assert after.shard_epochs == [1, 2] and after.replicas_in_sync == [False, False]
    with pytest.raises(ValueError, match="follower on its leader's node"):
        msgspec.structs.replace(topology, replica_nodes=["a", "a"]).check()


def test_the_controllers_save_keeps_a_slot_move_made_meanwhile(tmp_path: Path) -> None:
    """The replication controller holds the topology it started with; a slot move and a pin
    saved since by an ingress process survive its next save (under the topology's lock)."""
    started = with_replicas(round_robin(2, 8, nodes=("a", "b")), ("a", "b"))
    save_topology(tmp_path, started)
    update_topology(tmp_path, lambda saved: moved_in(saved, 3, 0, 2, ""))
    away = 1 - Placement(started).shard_of("hot")  # not its slot's shard: a pin
    update_topology(tmp_path, lambda saved: moved_in(saved, 0, away, 3, "hot"))
    controllers = replica_synced(started, 1, True)  # its change, on its old copy
    saved = update_topology(tmp_path, lambda now: placed_as(controllers, now))
    assert saved.slot_table[3] == 0 and saved.pins == {"hot": away} and saved.epoch == 3
    assert saved.format_version == 4 and saved.replicas_in_sync == [False, True]
    assert load_topology(tmp_path) == saved


def test_a_placement_takes_the_saved_topology_once_it_changed_and_never_an_older_one(
        tmp_path: Path) -> None:
    first = round_robin(2, 64)
    save_topology(tmp_path, first)
    saved = SavedTopology(tmp_path)
    placement = Placement(first)
    assert saved.changed() == first and saved.changed() is None  # read again only if changed
    moved = update_topology(tmp_path, lambda t: moved_in(t, 5, 1 - t.slot_table[5], 2, ""))
    assert saved.changed() == moved and placement.adopt(moved)
    assert (placement.epoch, placement.slot_table[5]) == (2, moved.slot_table[5])
    assert not placement.adopt(first)  # older: what this placement learned stays
    assert placement.epoch == 2 and placement.slot_table[5] == moved.slot_table[5]
    # A late slot_moved answer (no epoch) puts the slot back where it was: the placement
    # knows it learned something, and the file, read again anyway, puts it right.
    placement.move(5, first.slot_table[5])
    assert placement.learned and saved.changed() is None
    again = saved.changed(anyway=True)
    assert again == moved and placement.adopt(again) and not placement.learned
    assert placement.slot_table[5] == moved.slot_table[5]
    (tmp_path / TOPOLOGY_FILE).write_text("{not json")
    assert saved.changed() is None  # unreadable now: looked at again later
