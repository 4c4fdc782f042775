"""A shard's directory names its switch and shard (`shard.json`): a shard refuses to start
where its data is missing or is another switch's, instead of opening an empty log."""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence.identity import (
    IDENTITY_FILE,
    LOG_FILE,
    ForeignShardData,
    ShardDataMissing,
    ShardIdentity,
    claim_shard_directory,
)

MINE = ShardIdentity("switch-a", 1)


def test_a_new_shard_makes_its_directory_and_finds_it_at_every_later_start(
        tmp_path: Path) -> None:
    directory = tmp_path / "data" / "shard-0001"
    assert claim_shard_directory(directory, MINE, may_create=True) == "created"
    assert (directory / IDENTITY_FILE).exists()
    (directory / LOG_FILE).write_bytes(b"its log, opened next")
    assert claim_shard_directory(directory, MINE, may_create=False) == "found"
    assert claim_shard_directory(directory, MINE, may_create=True) == "found"  # a retried start


def test_a_missing_directory_is_refused_once_the_shards_were_made(tmp_path: Path) -> None:
    directory = tmp_path / "shard-0001"
    with pytest.raises(ShardDataMissing, match="does not exist"):
        claim_shard_directory(directory, MINE, may_create=False)
    assert not directory.exists()  # nothing created


def test_a_directory_without_its_log_is_refused_once_the_shards_were_made(
        tmp_path: Path) -> None:
    """An empty mount point (a volume not mounted), or a shard.json whose log is gone: either
    would open an empty log and serve the shard's accounts as if they had never existed."""
    directory = tmp_path / "shard-0001"
    directory.mkdir()
    with pytest.raises(ShardDataMissing, match="holds no log"):
        claim_shard_directory(directory, MINE, may_create=False)
    assert not (directory / IDENTITY_FILE).exists()
    claim_shard_directory(directory, MINE, may_create=True)  # the first run: made, no log yet
    with pytest.raises(ShardDataMissing, match="holds no log"):
        claim_shard_directory(directory, MINE, may_create=False)


@pytest.mark.parametrize("theirs", [ShardIdentity("switch-b", 1), ShardIdentity("switch-a", 0)])
def test_another_switchs_or_shards_data_is_refused(tmp_path: Path,
                                                   theirs: ShardIdentity) -> None:
    directory = tmp_path / "shard-0001"
    claim_shard_directory(directory, theirs, may_create=True)
    (directory / LOG_FILE).write_bytes(b"their log")
    for may_create in (True, False):
        with pytest.raises(ForeignShardData, match=f"holds shard {theirs.shard} of switch "
                                                   f"{theirs.switch_id}"):
            claim_shard_directory(directory, MINE, may_create)


def test_an_older_releases_directory_is_adopted_but_never_by_a_new_switch(
        tmp_path: Path) -> None:
    directory = tmp_path / "shard-0001"
    directory.mkdir()
    (directory / LOG_FILE).write_bytes(b"a log written before identities")
    with pytest.raises(ForeignShardData, match="holds a log this new switch did not write"):
        claim_shard_directory(directory, MINE, may_create=True)
    assert claim_shard_directory(directory, MINE, may_create=False) == "adopted"
    assert claim_shard_directory(directory, MINE, may_create=False) == "found"
