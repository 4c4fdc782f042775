"""Which switch's shard a directory holds: `shard.json`, written when the shard first makes
its directory, checked before its log is opened at every start.

A shard started where its data is not (a storage node that joined without its disk, a wrong
`PAYSWITCH_STORAGE_DIR`) would otherwise open an empty log and serve its accounts as if they
had never existed; one started on another switch's data would serve that switch's money.
Both are refused, naming the directory, as is a directory without its log once the shards
were made (an empty mount point). A directory from a release before identities (a log, no
`shard.json`) is adopted by the first start that finds it under an existing topology.
"""

from __future__ import annotations

from pathlib import Path

import msgspec

from persistence.durable_file import fsync_directory, write_durably

IDENTITY_FILE = "shard.json"
LOG_FILE = "data.mdb"  # LMDB's data file: the directory holds a log


class ShardIdentity(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    switch_id: str
    shard: int


class ShardDataMissing(Exception):
    """The shard's directory is not here, and the topology says it was made already."""


class ForeignShardData(Exception):
    """The directory holds another switch's shard, or another shard of this one."""


def claim_shard_directory(directory: Path, identity: ShardIdentity, may_create: bool) -> str:
    """Make sure `directory` holds `identity`'s shard before its log is opened; returns how:
    "found", "created" or "adopted". Raises ShardDataMissing or ForeignShardData."""
    path = directory / IDENTITY_FILE
    if path.exists():
        try:
            found = msgspec.json.decode(path.read_bytes(), type=ShardIdentity)
        except msgspec.DecodeError as error:
            raise ForeignShardData(f"{path} cannot be read: {error}") from None
        if found != identity:
            raise ForeignShardData(
                f"{directory} holds shard {found.shard} of switch {found.switch_id}, not shard "
                f"{identity.shard} of switch {identity.switch_id}")
        _require_log(directory, identity, may_create)
        return "found"
    if not directory.is_dir() and not may_create:
        raise ShardDataMissing(
            f"{directory} does not exist, but the topology says shard {identity.shard} was "
            "made already: its data is elsewhere (another node, another disk) or lost")
    has_log = (directory / LOG_FILE).exists()
    _require_log(directory, identity, may_create)
    if has_log and may_create:
        raise ForeignShardData(f"{directory} holds a log this new switch did not write")
    if not directory.is_dir():
        directory.mkdir(parents=True)
        fsync_directory(directory.parent)
    write_durably(path, msgspec.json.encode(identity) + b"\n")
    return "adopted" if has_log else "created"


def _require_log(directory: Path, identity: ShardIdentity, may_create: bool) -> None:
    """Once the shards were made, each has its log: a directory without one (a volume not
    mounted, a log deleted) would open an empty log in its place."""
    if not may_create and not (directory / LOG_FILE).exists():
        raise ShardDataMissing(
            f"{directory} holds no log ({LOG_FILE}), but the topology says shard "
            f"{identity.shard} was made already: is its volume mounted?")


def copy_identity(source: Path, target: Path) -> None:
    """A copy of a shard's data (a backup, a replay) keeps whose shard it is, if it says."""
    path = source / IDENTITY_FILE
    if path.exists():
        write_durably(target / IDENTITY_FILE, path.read_bytes())
