"""A shard copy's leader epochs (persistence/epochs.py): what a returning copy keeps."""

from __future__ import annotations

from pathlib import Path

import pytest

from persistence.epochs import (
    EPOCHS_FILE,
    EpochsDamaged,
    EpochStart,
    current_epoch,
    end_of,
    entered,
    load_epochs,
    save_epochs,
)


def test_a_copy_keeps_what_its_newest_epoch_wrote_before_the_next_began() -> None:
    history = [EpochStart(1, 1), EpochStart(2, 812), EpochStart(4, 900)]
    assert end_of(history, 1, 1000) == 812  # epoch 1's leader wrote 1..811
    assert end_of(history, 2, 1000) == 900
    assert end_of(history, 3, 1000) == 900  # never led here: what 2 wrote, no more
    assert end_of(history, 4, 1000) == 1000  # the current epoch: all of it
    assert end_of(history, 0, 1000) == 1  # a copy from before replication: nothing


def test_a_leader_enters_its_epoch_once_and_never_an_older_one(tmp_path: Path) -> None:
    assert load_epochs(tmp_path) == [] and current_epoch([]) == 0
    first = entered([], 1, 1)
    assert entered(first, 1, 50) == first  # a restart in the same epoch
    second = entered(first, 3, 50)
    assert second == [EpochStart(1, 1), EpochStart(3, 50)]
    with pytest.raises(ValueError, match="older"):
        entered(second, 2, 60)
    save_epochs(tmp_path, second)
    assert load_epochs(tmp_path) == second
    (tmp_path / EPOCHS_FILE).write_text("[[1,")
    with pytest.raises(EpochsDamaged, match="cannot be read"):
        load_epochs(tmp_path)
