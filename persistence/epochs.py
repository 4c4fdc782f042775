"""A shard copy's leader epochs (`epochs.json` in its directory): KIP-101's epoch cache.

Each entry says from which record on a leader epoch wrote: `[(1, 1), (2, 812)]` means the
first leader wrote records 1 to 811, and the leader promoted in epoch 2 wrote from 812.
A leader records its epoch before its first commit in it; a follower takes the leader's
list when it joins. A copy that returns after a promotion compares: its records from the
start of the first epoch after its own newest one were never acknowledged (the new leader
does not hold them), and are cut before it copies the new leader's log.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from persistence.durable_file import write_durably

EPOCHS_FILE = "epochs.json"


class EpochStart(msgspec.Struct, frozen=True, array_like=True):
    epoch: int
    start_seq: int


class EpochsDamaged(Exception):
    """The epochs file cannot be read: the copy does not know which epochs it served."""


def load_epochs(directory: Path) -> list[EpochStart]:
    """The copy's epochs, oldest first (empty: it never served under replication)."""
    path = directory / EPOCHS_FILE
    if not path.exists():
        return []
    try:
        return msgspec.json.decode(path.read_bytes(), type=list[EpochStart])
    except msgspec.DecodeError as error:
        raise EpochsDamaged(f"{path} cannot be read: {error}") from None


def save_epochs(directory: Path, epochs: list[EpochStart]) -> None:
    write_durably(directory / EPOCHS_FILE, msgspec.json.encode(epochs) + b"\n")


def current_epoch(epochs: list[EpochStart]) -> int:
    return epochs[-1].epoch if epochs else 0


def entered(epochs: list[EpochStart], epoch: int, next_seq: int) -> list[EpochStart]:
    """The list once a leader of `epoch` starts writing at `next_seq` (unchanged if it
    already leads in it)."""
    if epoch < current_epoch(epochs):
        raise ValueError(f"epoch {epoch} is older than this copy's {current_epoch(epochs)}")
    if epoch == current_epoch(epochs):
        return epochs
    return [*epochs, EpochStart(epoch, next_seq)]


def end_of(epochs: list[EpochStart], epoch: int, next_seq: int) -> int:
    """In the history `epochs` (whose log's next record is `next_seq`), the first record
    after what epoch `epoch` wrote: a copy whose newest epoch is `epoch` keeps only the
    records before it."""
    for start in epochs:
        if start.epoch > epoch:
            return start.start_seq
    return next_seq
