"""The write-ahead log of one shard in one LMDB environment.

Opened with explicit durability options: every commit is fsync'd (`sync`, `metasync`) and
pages are written through the file, not a writable map (`writemap=False`), so a stray write
into the map cannot corrupt the database. Each append is one write transaction: the shard's
group commit. The map size is the configured bound on the log; a commit that does not fit
raises StorageFull and writes nothing.
"""

from __future__ import annotations

import struct
from collections.abc import Iterator
from pathlib import Path

import lmdb

from persistence.lock import DirectoryLock
from persistence.log import RecordLog, StorageFull

KEY = struct.Struct(">Q")  # big-endian, so byte order is numeric order
LOG_DB = b"log"
SNAPSHOTS_DB = b"snapshots"
SNAPSHOTS_DIR = "snapshots"


class LmdbLog(RecordLog):
    def __init__(self, directory: Path, map_size_bytes: int) -> None:
        super().__init__()
        assert map_size_bytes >= 1 << 16, "map size below 64 KiB"
        self.directory = directory
        self._lock = DirectoryLock(directory)
        try:
            self._env = _open_env(directory, map_size_bytes)
            self._log_db = self._env.open_db(LOG_DB)
            # Snapshots have an environment of their own: a snapshot is written on another
            # thread while the shard goes on, and must not hold the log's single writer lock.
            self._snapshots_env = _open_env(directory / SNAPSHOTS_DIR, map_size_bytes)
            self._snapshots_db = self._snapshots_env.open_db(SNAPSHOTS_DB)
            self._load_tail()
        except BaseException:
            self._lock.release()
            raise

    def _write(self, db: lmdb._Database, key: bytes, value: bytes | None, append: bool) -> None:
        env = self._snapshots_env if db is self._snapshots_db else self._env
        try:
            with env.begin(write=True) as txn:
                if value is None:
                    txn.delete(key, db=db)
                else:
                    txn.put(key, value, append=append, db=db)
        except lmdb.MapFullError as error:
            raise StorageFull(f"{self.directory}: log map is full ({error})") from None

    def _put_raw(self, seq: int, raw: bytes) -> None:
        self._write(self._log_db, KEY.pack(seq), raw, append=True)

    def overwrite_raw(self, seq: int, raw: bytes) -> None:
        self._write(self._log_db, KEY.pack(seq), raw, append=False)

    def _raw_range(self, seq_from: int, seq_to: int | None) -> Iterator[tuple[int, bytes]]:
        with self._env.begin(db=self._log_db, buffers=False) as txn:
            cursor = txn.cursor()
            if not cursor.set_range(KEY.pack(seq_from)):
                return
            for key, raw in cursor.iternext():
                (seq,) = KEY.unpack(key)
                if seq_to is not None and seq > seq_to:
                    return
                yield seq, raw

    def _last_raw(self) -> tuple[int, bytes] | None:
        with self._env.begin(db=self._log_db) as txn:
            cursor = txn.cursor()
            if not cursor.last():
                return None
            return KEY.unpack(cursor.key())[0], cursor.value()

    def _put_snapshot(self, seq: int, raw: bytes) -> None:
        self._write(self._snapshots_db, KEY.pack(seq), raw, append=False)

    def _get_snapshot(self, seq: int) -> bytes:
        with self._snapshots_env.begin(db=self._snapshots_db) as txn:
            raw = txn.get(KEY.pack(seq))
        assert raw is not None
        return bytes(raw)

    def _delete_snapshot(self, seq: int) -> None:
        self._write(self._snapshots_db, KEY.pack(seq), None, append=False)

    def _snapshot_seqs(self) -> list[int]:
        with self._snapshots_env.begin(db=self._snapshots_db) as txn:
            return [KEY.unpack(key)[0] for key in txn.cursor().iternext(values=False)]

    def used_bytes(self) -> int:
        info, stat = self._env.info(), self._env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])

    def map_size_bytes(self) -> int:
        return int(self._env.info()["map_size"])

    def close(self) -> None:
        self._snapshots_env.close()
        self._env.close()
        self._lock.release()


def _open_env(directory: Path, map_size_bytes: int) -> lmdb.Environment:
    return lmdb.open(
        str(directory),
        map_size=map_size_bytes,
        subdir=True,
        max_dbs=2,
        sync=True,
        metasync=True,
        writemap=False,
        map_async=False,
        meminit=False,
        readahead=False,
        lock=True,
    )
