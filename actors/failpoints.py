"""Named failpoints in the write path, for crash tests.

Arm them with an environment variable before the switch starts (Ray passes it on to the
shard processes):

    PAYSWITCH_FAILPOINTS="shard.after_commit=#40"      the 40th time it is reached
    PAYSWITCH_FAILPOINTS="router.after_reserve=0.01"   each time with probability 0.01

(several, comma-separated; PAYSWITCH_FAILPOINT_SEED seeds the probabilities). When one fires,
its process ends at once with os._exit, as if killed: no cleanup, no flush, no reply.

One failpoint plays a bug instead of a crash: `shard.command_raises=@t-1234` makes
any command that writes about id t-1234 raise, every time (reads answer as usual; the shard
must answer that command alone with internal_error and commit the rest of its batch).
Disarmed, a failpoint costs one check of a module global: `if failpoints.ARMED: hit(...)`.
"""

from __future__ import annotations

import os
import random
import sys

SHARD_BEFORE_COMMIT = "shard.before_commit"  # batch applied in memory, nothing on disk yet
SHARD_AFTER_COMMIT = "shard.after_commit"  # batch on disk, reply not sent
SHARD_SNAPSHOT_MIDWAY = "shard.snapshot_midway"  # snapshot encoded, not yet written
# Cross-shard parts reserved (a staged transfer: staged too), nothing decided yet
ROUTER_AFTER_RESERVE = "router.after_reserve"
# The home committed (staged transfers: their answers told), parts not finalized
ROUTER_AFTER_COMMIT = "router.after_commit"
# A linked chain decided at its coordinator, its parts on the other shards not finalized.
ROUTER_CHAIN_HALF_DECIDED = "router.chain_half_decided"
ALL = (SHARD_BEFORE_COMMIT, SHARD_AFTER_COMMIT, SHARD_SNAPSHOT_MIDWAY, ROUTER_AFTER_RESERVE,
       ROUTER_AFTER_COMMIT, ROUTER_CHAIN_HALF_DECIDED)  # those that end their process
SHARD_COMMAND_RAISES = "shard.command_raises"  # applying the command about one id raises
EXIT_CODE = 86
ENVIRONMENT_VARIABLE = "PAYSWITCH_FAILPOINTS"


class FailpointRaised(RuntimeError):
    """What `shard.command_raises` raises: a bug, as far as the shard can tell."""


def _parse(spec: str) -> dict[str, tuple[str, float | str]]:
    armed: dict[str, tuple[str, float | str]] = {}
    for item in filter(None, (part.strip() for part in spec.split(","))):
        name, _, when = item.partition("=")
        if name == SHARD_COMMAND_RAISES:
            if not when.startswith("@"):
                raise ValueError(f"{name} takes @<id>, not {when!r}")
            armed[name] = ("id", when[1:])
            continue
        if name not in ALL:
            raise ValueError(f"unknown failpoint {name!r}; known: "
                             f"{', '.join((*ALL, SHARD_COMMAND_RAISES))}")
        if when.startswith("#"):
            armed[name] = ("count", float(int(when[1:])))
        else:
            armed[name] = ("probability", float(when or 1.0))
    return armed


_armed = _parse(os.environ.get(ENVIRONMENT_VARIABLE, ""))
_hits: dict[str, int] = dict.fromkeys(_armed, 0)
_random = random.Random(int(os.environ.get("PAYSWITCH_FAILPOINT_SEED", "0")) + os.getpid())
ARMED = bool(_armed)


def hit(name: str) -> None:
    """Reached `name`: end the process here if it is armed to fire now."""
    rule = _armed.get(name)
    if rule is None:
        return
    _hits[name] += 1
    kind, value = rule
    if (kind == "count" and _hits[name] == int(value)) or (
            kind == "probability" and _random.random() < float(value)):
        sys.stderr.write(f"failpoint {name} fired in process {os.getpid()}\n")
        sys.stderr.flush()
        os._exit(EXIT_CODE)


def raise_for(identifier: str) -> None:
    """Applying the command about `identifier`: raise if `shard.command_raises` names it."""
    rule = _armed.get(SHARD_COMMAND_RAISES)
    if rule is not None and rule[1] == identifier:
        raise FailpointRaised(f"failpoint {SHARD_COMMAND_RAISES} raised for {identifier}")
