"""The write-ahead log of one shard in one LMDB environment.

Opened with explicit durability options: every commit is fsync'd (`sync`, `metasync`) and
pages are written through the file, not a writable map (`writemap=False`), so a stray write
into the map cannot corrupt the database. Each append is one write transaction: the shard's
group commit. The map size is the configured bound on the log; a commit that does not fit
raises StorageFull and writes nothing.
"""

from __future__ import annotations

import contextlib
import struct
from collections.abc import Iterator
from itertools import takewhile
from pathlib import Path

import lmdb

from persistence.index import (
    TRANSFER_CACHE_MAX_DEFAULT,
    IndexConflict,
    LmdbStore,
    open_tables,
    put_all,
)
from persistence.lmdb_file import check_data_file
from persistence.lock import DirectoryLock
from persistence.log import RecordLog, StorageFull, StoreDamaged
from persistence.records import GENESIS_CHAIN, CorruptRecord

KEY = struct.Struct(">Q")  # big-endian, so byte order is numeric order
LOG_DB = b"log"
SNAPSHOTS_DB = b"snapshots"
SNAPSHOTS_DIR = "snapshots"
# Read-only opens map this much address space (not memory): enough for any log's file.
READONLY_MAP_SIZE_BYTES = 1 << 40
ARCHIVE_DIR = "archive"


class LmdbLog(RecordLog):
    """A shard's log. The shard opens it as the owner; the WAL tool opens it read-only (no
    lock, so it can look at a running switch's data) or as the owner to repair or compact."""

    def __init__(self, directory: Path, map_size_bytes: int, readonly: bool = False,
                 check_tail: bool = True,
                 transfer_cache_max: int = TRANSFER_CACHE_MAX_DEFAULT) -> None:
        super().__init__()
        self._transfer_cache_max = transfer_cache_max
        if map_size_bytes < 1 << 16:
            raise ValueError(f"a map size of {map_size_bytes} bytes is below 64 KiB")
        self.directory = directory
        self.readonly = readonly
        if readonly and not (directory / "data.mdb").exists():
            raise FileNotFoundError(f"{directory} holds no log (no data.mdb)")
        self._lock = None if readonly else DirectoryLock(directory)
        if readonly:
            map_size_bytes = READONLY_MAP_SIZE_BYTES
        try:
            self._open(directory, map_size_bytes, readonly, check_tail)
        except lmdb.Error as error:
            if self._lock is not None:
                self._lock.release()
            raise StoreDamaged(f"{directory}: LMDB cannot open it: {error}") from None
        except BaseException:
            if self._lock is not None:
                self._lock.release()
            raise

    def _open(self, directory: Path, map_size_bytes: int, readonly: bool,
              check_tail: bool) -> None:
        self._env = _open_env(directory, map_size_bytes, readonly)
        self._log_db = self._env.open_db(LOG_DB, create=not readonly)
        if not readonly:  # slots of readers that died (a killed tool) would pin old pages
            self._env.reader_check()
        self.store = LmdbStore(self._env, open_tables(self._env, readonly),
                               self._transfer_cache_max)
        # Snapshots have an environment of their own: a snapshot is written on another
        # thread while the shard goes on, and must not hold the log's single writer lock.
        self._snapshots_env = _open_env(directory / SNAPSHOTS_DIR, map_size_bytes, readonly)
        self._snapshots_db = self._snapshots_env.open_db(SNAPSHOTS_DB, create=not readonly)
        self._map_size_bytes = map_size_bytes
        self._archive_env: lmdb.Environment | None = None
        if readonly or not check_tail:
            self.tail_error = self._try_load_tail()
        else:
            self._load_tail()

    def _try_load_tail(self) -> CorruptRecord | None:
        try:
            self._load_tail()
        except CorruptRecord as error:
            last = self._last_raw()
            self.last_seq = last[0] if last else 0
            return error
        return None

    def _write(self, db: lmdb._Database, key: bytes, value: bytes | None, append: bool) -> None:
        env = self._snapshots_env if db is self._snapshots_db else self._env
        try:
            with env.begin(write=True) as txn:
                if value is None:
                    txn.delete(key, db=db)
                elif not txn.put(key, value, append=append, db=db):  # an append out of order
                    raise IndexConflict(f"{self.directory}: key {key.hex()} was not written "
                                        "(an append after a greater key)")
        except lmdb.MapFullError as error:
            raise StorageFull(f"{self.directory}: log map is full ({error})") from None

    def _put_raw(self, seq: int, raw: bytes) -> None:
        self._write(self._log_db, KEY.pack(seq), raw, append=True)

    def _commit_record(self, seq: int, raw: bytes, timestamp_ns: int) -> None:
        writes = self.store.staged_writes(seq, timestamp_ns)
        try:
            with self._env.begin(write=True) as txn:
                if not txn.put(KEY.pack(seq), raw, append=True, db=self._log_db):
                    raise IndexConflict(f"{self.directory}: record {seq} is already stored")
                put_all(txn, writes)
        except lmdb.MapFullError as error:
            raise StorageFull(f"{self.directory}: log map is full ({error})") from None

    def overwrite_raw(self, seq: int, raw: bytes) -> None:
        self._write(self._log_db, KEY.pack(seq), raw, append=False)

    def _raw_range(self, seq_from: int, seq_to: int | None) -> Iterator[tuple[int, bytes]]:
        return _iterate(self._env, self._log_db, seq_from, seq_to)

    def _last_raw(self) -> tuple[int, bytes] | None:
        with _reading(self._env), self._env.begin(db=self._log_db) as txn:
            cursor = txn.cursor()
            if not cursor.last():
                return None
            return _seq_of(cursor.key(), self._env), cursor.value()

    def _put_snapshot(self, seq: int, raw: bytes) -> None:
        self._write(self._snapshots_db, KEY.pack(seq), raw, append=False)

    def _get_snapshot(self, seq: int) -> bytes:
        with _reading(self._snapshots_env), \
                self._snapshots_env.begin(db=self._snapshots_db) as txn:
            raw = txn.get(KEY.pack(seq))
        if raw is None:
            raise StoreDamaged(f"{self.directory}: snapshot {seq} is listed but not stored")
        return bytes(raw)

    def _delete_snapshot(self, seq: int) -> None:
        self._write(self._snapshots_db, KEY.pack(seq), None, append=False)

    def _snapshot_seqs(self) -> list[int]:
        with _reading(self._snapshots_env), \
                self._snapshots_env.begin(db=self._snapshots_db) as txn:
            return [_seq_of(key, self._snapshots_env)
                    for key in txn.cursor().iternext(values=False)]

    def used_bytes(self) -> int:
        info, stat = self._env.info(), self._env.stat()
        return int((info["last_pgno"] + 1) * stat["psize"])

    def map_size_bytes(self) -> int:
        return int(self._env.info()["map_size"])

    def clear_dead_readers(self) -> int:
        return int(self._env.reader_check()) + int(self._snapshots_env.reader_check())

    # ---- for the WAL tool ----

    def tail_seq(self) -> int:
        """The last record's sequence number now (a reader's `last_seq` is from its open)."""
        last = self._last_raw()
        return last[0] if last else 0

    def first_seq(self) -> int:
        with _reading(self._env), self._env.begin(db=self._log_db) as txn:
            cursor = txn.cursor()
            return _seq_of(cursor.key(), self._env) if cursor.first() else 0

    def raw_records(self, seq_from: int = 1) -> Iterator[tuple[int, bytes]]:
        """Stored records as they are, unchecked: for scans that report damage themselves."""
        return self._raw_range(seq_from, None)

    def archived_raw_records(self) -> Iterator[tuple[int, bytes]]:
        if not (self.directory / ARCHIVE_DIR / "data.mdb").exists():
            return iter(())
        env = self._archive(create=False)
        return _iterate(env, env.open_db(LOG_DB, create=False), 1, None)

    def append_raw_many(self, records: list[tuple[int, bytes]]) -> None:
        """Store already-encoded records in one transaction (copies made by the WAL tool)."""
        self._require_owner()
        try:
            with self._env.begin(write=True, db=self._log_db) as txn:
                for seq, raw in records:
                    if not txn.put(KEY.pack(seq), raw, append=True):
                        raise IndexConflict(f"{self.directory}: record {seq} comes after a "
                                            "greater one: nothing was copied")
        except lmdb.MapFullError as error:
            raise StorageFull(f"{self.directory}: log map is full ({error})") from None
        self._load_tail()

    def truncate_from(self, seq: int) -> list[int]:
        """Delete every record from `seq` on, and snapshots past the new tail (repair only)."""
        self._require_owner()
        if seq < 1:
            raise ValueError(f"truncate_from needs a sequence number, not {seq}")
        with self._env.begin(write=True, db=self._log_db) as txn:
            keys = [key for key, _ in _keys_from(txn.cursor(), seq)]
            for key in keys:
                txn.delete(key)
        dropped = [KEY.unpack(key)[0] for key in keys]
        self.store.cut_from(seq)  # what the dropped records wrote goes with them
        for snapshot_seq in self._snapshot_seqs():
            if snapshot_seq >= seq:
                self._delete_snapshot(snapshot_seq)
        self.last_seq, self.last_chain, self.last_timestamp_ns = 0, GENESIS_CHAIN, 0
        self._load_tail()
        return dropped

    def archive_prefix(self, up_to_seq: int, keep: bool) -> int:
        """Move records up to `up_to_seq` out of the live log: into archive/ when `keep`."""
        self._require_owner()
        moved = 0
        archive = self._archive(create=True) if keep else None
        archive_db = archive.open_db(LOG_DB) if archive is not None else None
        with self._env.begin(write=True, db=self._log_db) as txn:
            prefix = list(takewhile(lambda item: KEY.unpack(item[0])[0] <= up_to_seq,
                                    _keys_from(txn.cursor(), 1)))
            if archive is not None:
                with archive.begin(write=True, db=archive_db) as archive_txn:
                    for key, raw in prefix:  # committed before the live log drops them
                        if not archive_txn.put(key, raw, append=True):
                            raise IndexConflict(f"{self.directory}: the archive already "
                                                f"holds record {KEY.unpack(key)[0]} or later")
            for key, _ in prefix:
                txn.delete(key)
                moved += 1
        return moved

    def _require_owner(self) -> None:
        if self.readonly:
            raise ValueError(f"{self.directory}: opened read-only; this needs the owner's log")

    def copy_to(self, target: Path) -> None:
        """A consistent, compacted copy (LMDB's own copy: safe while the owner writes)."""
        envs = [(self._env, target), (self._snapshots_env, target / SNAPSHOTS_DIR)]
        if (self.directory / ARCHIVE_DIR / "data.mdb").exists():
            envs.append((self._archive(create=False), target / ARCHIVE_DIR))
        for env, path in envs:
            path.mkdir(parents=True, exist_ok=False)
            env.copy(str(path), compact=True)

    def stored_bytes(self) -> int:
        return self.usage()["used_bytes"]

    def usage(self) -> dict[str, int]:
        info, stat = self._env.info(), self._env.stat()
        files = [self.directory / "data.mdb", self.directory / SNAPSHOTS_DIR / "data.mdb",
                 self.directory / ARCHIVE_DIR / "data.mdb"]
        return {
            "map_size_bytes": int(info["map_size"]),
            "used_bytes": int((info["last_pgno"] + 1) * stat["psize"]),
            "file_bytes": sum(f.stat().st_size for f in files if f.exists()),
        }

    def _archive(self, create: bool) -> lmdb.Environment:
        if self._archive_env is None:
            self._archive_env = _open_env(self.directory / ARCHIVE_DIR, self._map_size_bytes,
                                          readonly=self.readonly or not create)
        return self._archive_env

    def close(self) -> None:
        if self._archive_env is not None:
            self._archive_env.close()
        self._snapshots_env.close()
        self._env.close()
        if self._lock is not None:
            self._lock.release()


@contextlib.contextmanager
def _reading(env: lmdb.Environment) -> Iterator[None]:
    """LMDB reporting a damaged page (or worse) is damage to the store, named by its path."""
    try:
        yield
    except lmdb.MapFullError:
        raise
    except lmdb.Error as error:
        raise StoreDamaged(f"{env.path()}: LMDB cannot read it: {error}") from None


def _seq_of(key: bytes, env: lmdb.Environment) -> int:
    """A stored key as a sequence number; a damaged page may hand back anything else."""
    if len(key) != KEY.size:
        raise StoreDamaged(f"{env.path()}: a key of {len(key)} bytes where a sequence "
                           "number belongs (a damaged page)")
    return int(KEY.unpack(key)[0])


def _keys_from(cursor: lmdb.Cursor, seq_from: int) -> Iterator[tuple[bytes, bytes]]:
    if cursor.set_range(KEY.pack(seq_from)):
        for key, raw in cursor.iternext():
            yield bytes(key), bytes(raw)


def _iterate(env: lmdb.Environment, db: lmdb._Database, seq_from: int, seq_to: int | None
             ) -> Iterator[tuple[int, bytes]]:
    with _reading(env), env.begin(db=db, buffers=False) as txn:
        cursor = txn.cursor()
        if not cursor.set_range(KEY.pack(seq_from)):
            return
        for key, raw in cursor.iternext():
            seq = _seq_of(key, env)
            if seq_to is not None and seq > seq_to:
                return
            yield seq, raw


def _open_env(directory: Path, map_size_bytes: int, readonly: bool = False) -> lmdb.Environment:
    check_data_file(directory / "data.mdb")  # never map a file LMDB would crash on
    return lmdb.open(
        str(directory),
        map_size=map_size_bytes,
        subdir=True,
        max_dbs=10,
        readonly=readonly,
        sync=True,
        metasync=True,
        writemap=False,
        map_async=False,
        meminit=False,
        readahead=False,
        lock=True,
    )
