"""One owner per data directory: an exclusive, non-blocking flock held while the log is open.
And `IngressLock`: work that the ingress processes of one machine take turns at.

The kernel drops the lock when its process dies, kill -9 included, so a crash never leaves a
directory locked; a second live owner is refused at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
from collections.abc import AsyncIterator
from pathlib import Path

LOCK_FILE_NAME = "owner.lock"
INGRESS_LOCK_POLL_S = 0.01


class DirectoryLocked(Exception):
    """Another live process owns this data directory."""


class DirectoryLock:
    def __init__(self, directory: Path) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.path = directory / LOCK_FILE_NAME
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.pread(self._fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(self._fd)
            message = f"{directory} is owned by another process (pid {owner})"
            raise DirectoryLocked(message) from None
        os.ftruncate(self._fd, 0)
        os.pwrite(self._fd, str(os.getpid()).encode(), 0)

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = -1


def is_locked(directory: Path) -> bool:
    """True while a live process owns the directory (tools use this to refuse to write)."""
    path = directory / LOCK_FILE_NAME
    if not path.exists():
        return False
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)
    return False


class IngressLock:
    """Serializes one kind of work across this machine's ingress processes (`--workers`):
    an exclusive flock on `path`, waited for. The kernel drops it when its holder dies, so a
    killed worker never leaves it held. Async: the wait polls (a cancelled waiter leaves
    nothing behind, as a thread blocked in flock would)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._local = asyncio.Lock()  # this process's tasks queue here, not on the file

    @contextlib.asynccontextmanager
    async def held(self) -> AsyncIterator[None]:
        async with self._local:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
            try:
                while True:
                    try:
                        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                        break
                    except BlockingIOError:
                        await asyncio.sleep(INGRESS_LOCK_POLL_S)
                yield
            finally:
                os.close(fd)  # drops the flock
