"""`payswitch keys create`: make an API key offline, while the switch is stopped.

For when no key is at hand (the operator's file was lost, or a first key for an automation
before the switch is exposed). The key is recorded in the registry shard's log as any change
is, by the `system` actor; its secret is printed once, here, and never stored.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from actors.codec import decode_reply, encode_commands
from actors.ledger.registry import PARTICIPANT, REGISTRY_SHARD, ROLES, SYSTEM, ApiKey
from actors.messages import CreateKey, RegistryReply, expect
from actors.shard.host import ShardConfig, ShardHost
from persistence.layout import shard_directory
from persistence.lmdb_log import LmdbLog
from persistence.lock import DirectoryLocked
from switch.api.keys import new_key
from switch.cli.settings import DEFAULT_CONFIG, load_settings


def add_parser(commands: Any) -> None:
    keys = commands.add_parser("keys", help="make API keys offline (the switch stopped)")
    sub = keys.add_subparsers(dest="keys_command", required=True)
    create = sub.add_parser("create", help="make a key; its secret is printed once")
    create.add_argument("--data-dir", type=Path, required=True)
    create.add_argument("--role", choices=ROLES, required=True)
    create.add_argument("--participant", help="the participant's id (role participant only)")
    create.add_argument("--config", type=Path, default=DEFAULT_CONFIG)


def run(args: argparse.Namespace) -> int:
    if (args.role == PARTICIPANT) != bool(args.participant):
        print("payswitch keys: --participant goes with --role participant, and only with it",
              file=sys.stderr)
        return 2
    settings = load_settings(args.config)
    directory = shard_directory(args.data_dir, REGISTRY_SHARD)
    if not directory.is_dir():
        print(f"payswitch keys: {args.data_dir} holds no switch data: start the switch on it "
              "once (its first start writes the operator key)", file=sys.stderr)
        return 2
    key_id, token, secret_hash = new_key()
    key = ApiKey(key_id, args.role, args.participant or "", secret_hash)
    try:
        reply = _record(settings.ledgers, settings.wal.map_size_bytes, directory, key)
    except DirectoryLocked:
        print(f"payswitch keys: {args.data_dir} is owned by a running switch: stop it, or make "
              "the key with POST /v1/keys", file=sys.stderr)
        return 2
    if reply.result != "ok":
        print(f"payswitch keys: {reply.result}: no participant {args.participant!r}; create it "
              "first (POST /v1/participants)", file=sys.stderr)
        return 1
    print(f"key {key_id} ({args.role}{' of ' + args.participant if args.participant else ''})"
          f" made; its secret, shown this once:\n{token}")
    return 0


def _record(ledgers: dict[str, int], map_size_bytes: int, directory: Path, key: ApiKey
            ) -> RegistryReply:
    config = ShardConfig(REGISTRY_SHARD, tuple(ledgers), snapshot_every_events=1 << 62)
    host = ShardHost(config, lambda: LmdbLog(directory, map_size_bytes))
    try:
        reply = decode_reply(host.handle(encode_commands([CreateKey(key, SYSTEM)])))
    finally:
        host.close()
    if reply.failed:
        raise RuntimeError(f"the registry's shard refused: {reply.failed} {reply.message}")
    return expect(reply.replies[0], RegistryReply)
