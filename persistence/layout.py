"""A data directory: one sub-directory per shard, `shard-0000`, `shard-0001`, ..."""

from __future__ import annotations

import re
from pathlib import Path

SHARD_DIRECTORY = re.compile(r"^shard-(\d{4})$")


def shard_directory(data_dir: Path, shard_index: int) -> Path:
    return data_dir / f"shard-{shard_index:04d}"


def shard_directories(data_dir: Path) -> list[tuple[int, Path]]:
    """The shards found in a data directory, by index; they must be numbered 0..n-1."""
    if not data_dir.is_dir():
        raise FileNotFoundError(f"{data_dir} is not a directory")
    found = sorted(
        (int(match.group(1)), path)
        for path in data_dir.iterdir()
        if path.is_dir() and (match := SHARD_DIRECTORY.match(path.name))
    )
    if [index for index, _ in found] != list(range(len(found))):
        raise ValueError(f"{data_dir}: shard directories are not numbered 0..n-1: {found}")
    if not found:
        raise FileNotFoundError(f"{data_dir} holds no shard directories")
    return found
