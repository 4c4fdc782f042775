"""The read model's tables: an LMDB environment of its own in a scratch directory.

The read model (switch/read/query.py) keeps here what queries filter on, fed from the shards'
log feeds; it is a cache, rebuilt at every start, so it is written without fsync and removed
when closed. It never opens a shard's files.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path

import lmdb

READ_MODEL_MAP_BYTES = 1 << 40  # address space, not memory: the bound is the disk
SCRATCH_ROOT = Path(tempfile.gettempdir()) / "payswitch-read-models"
Transaction = lmdb.Transaction


def scratch_directory() -> Path:
    """This process's scratch directory; those of processes that are gone are removed (a
    killed actor never cleans up after itself)."""
    SCRATCH_ROOT.mkdir(exist_ok=True)
    for old in SCRATCH_ROOT.iterdir():
        pid = old.name.partition("-")[0]
        if pid.isdigit() and not Path(f"/proc/{pid}").exists():
            shutil.rmtree(old, ignore_errors=True)
    return Path(tempfile.mkdtemp(prefix=f"{os.getpid()}-", dir=SCRATCH_ROOT))


class ReadModel:
    def __init__(self, directory: Path | None = None) -> None:
        self.directory = directory or scratch_directory()
        self.env = lmdb.open(str(self.directory), map_size=READ_MODEL_MAP_BYTES, max_dbs=5,
                             sync=False, metasync=False, lock=True)  # a cache: no fsync
        self.accounts = self.env.open_db(b"accounts")  # (timestamp, id) -> Account (fixed)
        self.transfers = self.env.open_db(b"transfers")  # (timestamp, id) -> Transfer
        self.status = self.env.open_db(b"status")  # pending transfer id -> its status
        self.reserved = self.env.open_db(b"reserved")  # a chain member's id part, undecided
        self.owners = self.env.open_db(b"owners")  # account id -> its owner

    def close(self) -> None:
        self.env.close()
        shutil.rmtree(self.directory, ignore_errors=True)
