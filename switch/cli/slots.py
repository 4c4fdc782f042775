"""`payswitch slots move SLOT --to SHARD` and `payswitch slots pin ACCOUNT --to SHARD`: move a
slot, or one hot account, to another shard while the switch runs. `payswitch slots where
[ID ...]`: where ids are placed now (the saved topology; the switch running or not).

Clients of the running switch's operator API (`POST /v1/cluster/slot-moves`, `POST
/v1/cluster/pins`): the ingress process that answers drives the move
(switch/routing/slot_move.py). The operator key is read from `--key`, else PAYSWITCH_KEY,
else the data directory's operator.key. Asked again, a move that stopped half way finishes.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

import httpx

from actors.topology import Placement, slot_of
from persistence.topology import TopologyMismatch, load_topology
from switch.api.registry_api import OPERATOR_KEY_FILE
from switch.cli.banner import server_url
from switch.cli.settings import DEFAULT_CONFIG, BadSettings, load_settings

REQUEST_TIMEOUT_S = 660.0  # above the longest wait for transfers in doubt (600 s)


def add_parser(commands: Any) -> None:
    slots = commands.add_parser("slots", help="move slots, or pin hot accounts, between "
                                "shards (the switch running)")
    sub = slots.add_subparsers(dest="slots_command", required=True)
    move = sub.add_parser("move", help="move a slot to another shard, online")
    move.add_argument("slot", type=int)
    pin = sub.add_parser("pin", help="place one account on a shard of your choice, online (to "
                         "its slot's shard: unpinned); see docs/CLUSTER.md for a shard of its "
                         "own")
    pin.add_argument("account_id")
    pin.add_argument("--alone", action="store_true", help="first move every other slot and "
                     "pinned account off that shard: a shard of its own")
    where = sub.add_parser("where", help="the shard of each id given (its slot, or its pin) "
                           "and the slots each shard holds, from the saved topology")
    where.add_argument("ids", nargs="*", help="account or transfer ids")
    where.add_argument("--data-dir", type=Path, help="the switch's data directory (default: "
                       "data.dir of --config)")
    where.add_argument("--config", type=Path, default=DEFAULT_CONFIG)
    for each in (move, pin):
        each.add_argument("--to", type=int, required=True, dest="to_shard", help="the shard")
        each.add_argument("--url", help="the switch's address (default: where `payswitch "
                          "serve` listens with the same settings: --config, PAYSWITCH_SERVER_*)")
        each.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                          help="the TOML settings file serve was given (for the default --url)")
        each.add_argument("--key", help="an operator key (else PAYSWITCH_KEY, else "
                          "--data-dir's operator.key)")
        each.add_argument("--data-dir", type=Path, help="where the switch keeps operator.key")
        each.add_argument("--busy-timeout-ms", type=int, default=10_000,
                          help="how long to wait for its transfers in doubt")


def run(args: argparse.Namespace) -> int:
    if args.slots_command == "where":
        return _where(args)
    key = args.key or os.environ.get("PAYSWITCH_KEY") or _key_file(args.data_dir)
    if not key:
        print("payswitch slots: no operator key: pass --key, set PAYSWITCH_KEY, or --data-dir "
              "of the running switch (its operator.key)", file=sys.stderr)
        return 2
    if not args.url:
        try:
            args.url = server_url(load_settings(args.config))
        except BadSettings as error:
            print(f"payswitch slots: pass --url (the settings do not load: {error})",
                  file=sys.stderr)
            return 2
    path, unit = ("/v1/cluster/pins", {"account_id": args.account_id, "alone": args.alone}) \
        if args.slots_command == "pin" else ("/v1/cluster/slot-moves", {"slot": args.slot})
    try:
        response = httpx.post(f"{args.url.rstrip('/')}{path}", json={
            **unit, "to_shard": args.to_shard, "busy_timeout_ms": args.busy_timeout_ms},
            headers={"Authorization": f"Bearer {key}"}, timeout=REQUEST_TIMEOUT_S)
    except httpx.HTTPError as error:
        print(f"payswitch slots: no answer from {args.url} ({error}); is the switch running "
              "there? If it listens elsewhere (serve --port), name it: --url http://HOST:PORT. "
              "Ask again: a move that stopped half way is finished", file=sys.stderr)
        return 1
    body = response.json() if response.headers.get("content-type", "").startswith(
        "application/json") else {"message": response.text}
    if response.status_code != 200:
        print(f"payswitch slots: {response.status_code} {body.get('code', '')}: "
              f"{body.get('message', '')}", file=sys.stderr)
        return 1
    what = f"account {body['account_id']}" if "account_id" in body else f"slot {body['slot']}"
    if body.get("made_room"):
        print(f"{body['made_room']} slots and pinned accounts moved off shard "
              f"{body['to_shard']} first")
    print(f"{what} moved from shard {body['from_shard']} to shard {body['to_shard']} "
          f"(topology epoch {body['epoch']}): {body['accounts']} accounts, "
          f"{body['transfers']} transfers, {body['seconds']} s")
    return 0


def _where(args: argparse.Namespace) -> int:
    try:
        data_dir = args.data_dir or Path(load_settings(args.config).data.dir)
    except BadSettings as error:
        print(f"payswitch slots: pass --data-dir (the settings do not load: {error})",
              file=sys.stderr)
        return 2
    try:
        topology = load_topology(data_dir)
    except (TopologyMismatch, OSError) as error:
        print(f"payswitch slots: {error} (run it as the user the switch runs as, with its "
              "data directory)", file=sys.stderr)
        return 2
    if topology is None:
        print(f"payswitch slots: {data_dir} holds no switch (no topology.json): pass the "
              "data directory `payswitch serve` was given (--data-dir)", file=sys.stderr)
        return 2
    placement = Placement(topology)
    held = ", ".join(f"shard {shard} {topology.slot_table.count(shard)}"
                     for shard in range(topology.shard_count))
    print(f"topology epoch {topology.epoch}: {topology.slots} slots ({held}), "
          f"{len(topology.pins)} pinned account(s)")
    for key in args.ids:
        pinned = " (pinned)" if key in topology.pins else ""
        print(f"{key}: slot {slot_of(key, topology.slots)}, shard {placement.shard_of(key)}"
              f"{pinned}")
    return 0


def _key_file(data_dir: Path | None) -> str:
    if data_dir is None or not (data_dir / OPERATOR_KEY_FILE).is_file():
        return ""
    return (data_dir / OPERATOR_KEY_FILE).read_text().strip()
