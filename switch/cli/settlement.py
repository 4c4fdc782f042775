"""`payswitch settlement verify`: a closed window's report, derived again from `payswitch wal
export` output alone, and checked against the report the switch published and signed.

An auditor or a participant runs it without trusting the running switch: the export is
replayed through the ledger's own rules (every field of every event is in it), the window's
payments are read from the rebuilt window accounts, and the report and Merkle root are
computed by the same pure functions the switch uses (switch/hub/window_model.py). The
signature is checked with the switch's public key (GET /v1/hub/public-key).

    payswitch wal export DATA_DIR > export.jsonl
    curl .../v1/settlement-windows/USD.3/report > report.json
    payswitch settlement verify --export export.jsonl --report report.json \\
        --public-key HEX --window USD.3
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from actors.ledger.ledger import Ledger
from actors.ledger.model import Transfer
from actors.ledger.store import MemoryStore
from switch.hub.window_model import (
    WINDOW_CODE,
    PaymentInWindow,
    marker_id,
    merkle_root,
    parse_window_id,
    payment_in_window,
    rows_of,
    signed_statement,
    window_id,
)
from switch.read.events import event_from_json

HISTORY_PAGE = 1000


def add_parser(commands: Any) -> None:
    settlement = commands.add_parser("settlement", help="check a settlement window offline")
    sub = settlement.add_subparsers(dest="settlement_command", required=True)
    verify = sub.add_parser("verify", help="derive a closed window's report again from a WAL "
                                           "export and check the switch's signed report")
    verify.add_argument("--export", required=True, type=Path,
                        help="the output of `payswitch wal export DATA_DIR`")
    verify.add_argument("--window", required=True, help="the window's id, e.g. USD.3")
    verify.add_argument("--report", type=Path, help="the report the switch published "
                                                    "(GET /v1/settlement-windows/{id}/report)")
    verify.add_argument("--public-key", help="the switch's Ed25519 public key, hex "
                                             "(GET /v1/hub/public-key)")


def run(args: argparse.Namespace) -> int:
    parsed = parse_window_id(args.window)
    if parsed is None:
        print(f"{args.window!r} is not a window id (e.g. USD.3)", file=sys.stderr)
        return 2
    ledger_code, number = parsed
    shards = replay(args.export)
    derived = derive(shards, ledger_code, number)
    print(orjson.dumps(derived, option=orjson.OPT_INDENT_2).decode())
    if args.report is None:
        return 0
    published = orjson.loads(args.report.read_bytes())
    problems = compare(derived, published, args.public_key)
    for problem in problems:
        print(f"MISMATCH: {problem}", file=sys.stderr)
    if not problems:
        print(f"verified: {window_id(ledger_code, number)} as published, signature good",
              file=sys.stderr)
    return 1 if problems else 0


def replay(export: Path) -> list[Ledger]:
    """Each shard's ledger, rebuilt from the export (as tests/test_wal_tool.py checks)."""
    lines = [orjson.loads(line) for line in export.read_bytes().splitlines() if line.strip()]
    codes = {line["event"]["account"]["ledger"] for line in lines
             if line["event"]["type"] == "account_created"}
    shards: dict[int, Ledger] = {}
    seq_of: dict[int, int] = {}
    for line in lines:
        shard = line["shard"]
        ledger = shards.setdefault(shard, Ledger(sorted(codes), MemoryStore()))
        if line["seq"] != seq_of.get(shard, 0):  # a new record: the last one's writes stay
            ledger.store.flush(seq_of.get(shard, 0), 0)
            seq_of[shard] = line["seq"]
            ledger.store.begin_at(line["seq"])
        event = event_from_json(line["event"])
        ledger.apply(event)
    for shard, ledger in shards.items():
        ledger.store.flush(seq_of.get(shard, 0), 0)
    return [shards[index] for index in sorted(shards)]


def derive(shards: list[Ledger], ledger_code: str, number: int) -> dict[str, Any]:
    prefix = f"{marker_id(ledger_code, number)}:"
    legs: dict[str, PaymentInWindow] = {}
    participants: list[str] = []
    for ledger in shards:
        for account_id in list(ledger.accounts):
            if not account_id.startswith(prefix):
                continue
            participants.append(account_id.removeprefix(prefix))
            for leg in _history(ledger, account_id):
                if leg.code == WINDOW_CODE and leg.id not in legs:
                    legs[leg.id] = payment_in_window(leg, _owner(leg.debit_account_id),
                                                     _owner(leg.credit_account_id))
    payments = list(legs.values())
    rows = rows_of(sorted(participants), payments)
    closed_at = _closed_at(shards, marker_id(ledger_code, number))
    return {"id": window_id(ledger_code, number), "closed_at": closed_at,
            "participants": [{"participant_id": r.participant_id, "sent": r.sent,
                              "received": r.received, "fees": r.fees, "net": r.net}
                             for r in rows],
            "payments": len(payments), "merkle_root": merkle_root(payments)}


def compare(derived: dict[str, Any], published: dict[str, Any], public_key: str | None
            ) -> list[str]:
    problems = []
    if published.get("state") != "closed":
        problems.append("the published report is of a window still open")
    for field in ("id", "closed_at", "payments", "merkle_root"):
        if derived[field] != published.get(field):
            problems.append(f"{field}: derived {derived[field]!r}, published "
                            f"{published.get(field)!r}")
    rows = {r["participant_id"]: r for r in derived["participants"]}
    for row in published.get("participants", []):
        if rows.get(row["participant_id"], {**row, "net": 0, "sent": 0, "received": 0,
                                            "fees": 0}) != row:
            problems.append(f"participant {row['participant_id']}: derived "
                            f"{rows.get(row['participant_id'])}, published {row}")
    if public_key is not None:
        ledger_code, number = parse_window_id(derived["id"]) or ("", 0)
        statement = signed_statement(ledger_code, number, derived["merkle_root"],
                                     derived["closed_at"])
        try:
            Ed25519PublicKey.from_public_bytes(bytes.fromhex(public_key)).verify(
                bytes.fromhex(published.get("signature") or ""), statement)
        except (InvalidSignature, ValueError):
            problems.append("the signature does not verify with this public key")
    return problems


def _history(ledger: Ledger, account_id: str) -> Iterator[Transfer]:
    account = ledger.accounts[account_id]
    before: int | None = None
    while True:
        page, following = ledger.store.history(account_id, account.history_head, HISTORY_PAGE,
                                               before)
        yield from page
        if following is None:
            return
        before = following


def _closed_at(shards: list[Ledger], marker: str) -> int | None:
    for ledger in shards:
        stored = ledger.store.transfer(f"{marker}:close")
        if stored is not None:
            return int(stored.transfer.timestamp)
    return None


def _owner(window_account: str) -> str:
    return window_account.split(":", 4)[4]

