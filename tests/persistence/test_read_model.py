"""The read model's scratch directories: one per process, removed once their process is gone."""

from __future__ import annotations

import os

from persistence.read_model import SCRATCH_ROOT, ReadModel, scratch_directory


def test_a_dead_processs_scratch_directory_is_removed_by_the_next_one() -> None:
    SCRATCH_ROOT.mkdir(exist_ok=True)
    dead = SCRATCH_ROOT / "999999999-left"  # above any pid_max: no such process
    dead.mkdir(exist_ok=True)
    mine = scratch_directory()
    assert not dead.exists()
    assert mine.exists() and mine.name.startswith(f"{os.getpid()}-")
    model = ReadModel(mine)
    model.close()
    assert not mine.exists()
