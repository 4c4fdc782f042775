"""Process tuning shared by the ingress and the shard processes."""

from __future__ import annotations

import contextlib
import ctypes
import ctypes.util
import functools
import gc
import logging
import os
from collections.abc import Iterator
from typing import Any

import orjson

# The young generation is collected after this many net allocations. Requests and batches
# allocate thousands of short-lived objects; the default (700) runs a collection every few
# hundred items, each walking everything still young. Profiles put the collector at 20-25%
# of CPU under load with the defaults.
GENERATION0_THRESHOLD_DEFAULT = 100_000
GENERATION1_THRESHOLD = 50
GENERATION2_THRESHOLD = 100


def tune_gc(
    generation0_threshold: int = GENERATION0_THRESHOLD_DEFAULT, freeze: bool = True
) -> None:
    """Freeze what exists now (long-lived state) out of every collection; raise thresholds."""
    if freeze:
        gc.collect()
        gc.freeze()
    gc.set_threshold(generation0_threshold, GENERATION1_THRESHOLD, GENERATION2_THRESHOLD)


@contextlib.contextmanager
def gc_paused() -> Iterator[None]:
    """No collections while building a large, acyclic, short-lived structure (a snapshot)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


# glibc's malloc gives each thread that allocates an arena of its own, up to 8 per core, and
# frees memory back to the system only from the top of each. A Ray worker has a dozen threads;
# a shard's heap then spreads over many arenas and keeps what a snapshot or a large batch
# freed. Two arenas are plenty under the GIL.
# glibc also raises its mmap threshold to the size of each large block freed (up to 32 MiB),
# so after the first array's body, request and reply buffers of a megabyte come from the heap,
# between small objects that outlive them, and stay resident as holes (bench/RESULTS.md,
# "Memory": with this and smaller read-model transactions, shards at 1M accounts went from
# 428 to 199 B per account). A fixed threshold keeps every block of 128 KiB or more in a
# mapping of its own, given back when it is freed.
# Processes read the variables when they start, so they are set before Ray starts its own
# (they inherit them); a running process gets `mallopt`.
MALLOC_TUNING = {"MALLOC_ARENA_MAX": 2, "MALLOC_MMAP_THRESHOLD_": 128 << 10}
_MALLOPT_PARAMETER = {"MALLOC_ARENA_MAX": -8, "MALLOC_MMAP_THRESHOLD_": -3}  # malloc.h


@functools.cache
def _libc() -> Any:
    """glibc, loaded once (finding it may run ldconfig); None elsewhere (musl, macOS)."""
    name = ctypes.util.find_library("c")
    try:
        libc = ctypes.CDLL(name) if name else None
    except OSError:
        return None
    return libc if libc is not None and hasattr(libc, "malloc_trim") else None


def tune_malloc() -> None:
    """This process, and those it starts from now on: at most two arenas and large blocks in
    mappings of their own (`MALLOC_TUNING`, unless the environment says otherwise)."""
    libc = _libc()
    for variable, default in MALLOC_TUNING.items():
        value = os.environ.setdefault(variable, str(default))
        if libc is not None and value.isascii() and value.isdigit():  # not "²"
            libc.mallopt(_MALLOPT_PARAMETER[variable], int(value))


def release_free_memory() -> None:
    """Give the system back the free pages of every arena (after a snapshot: tens of MB were
    just freed, often below the top of the heap, where `free` cannot return them). It walks
    the heap holding each arena's lock: call it off any event loop."""
    libc = _libc()
    if libc is not None:
        libc.malloc_trim(0)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, and any `extra` fields a
    caller passed (request ids, shard, sequence numbers)."""

    _STANDARD = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {
        "message", "color_message"}  # uvicorn's copy of the message with terminal colours

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": round(record.created, 6),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._STANDARD and not key.startswith("_"):  # Ray adds _ray_* fields
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return orjson.dumps(entry, default=str).decode()


def configure_logging(level: str = "INFO", json_lines: bool = True) -> None:
    handler = logging.StreamHandler()
    handler.setFormatter(JsonFormatter() if json_lines else
                         logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
