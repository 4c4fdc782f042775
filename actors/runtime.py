"""Process tuning shared by the ingress and the shard processes."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator

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
