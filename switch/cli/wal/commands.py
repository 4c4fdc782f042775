"""`payswitch wal ...`: the operator's tool for a data directory's logs (docs/OPERATIONS.md)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import orjson

from actors.codec import decode_events
from actors.ledger.events import (
    AccountCreated,
    Event,
    LimitsChanged,
    is_privileged,
    transfer_id_of,
)
from actors.ledger.model import Transfer
from actors.topology import Placement
from persistence.layout import shard_directories
from persistence.lmdb_log import LmdbLog
from persistence.lock import is_locked
from persistence.log import StoreDamaged
from persistence.records import CorruptRecord, Record
from persistence.scan import scan
from persistence.topology import read_topology, save_topology
from switch.api.params import time_ns
from switch.api.views import account_json
from switch.cli.settings import DEFAULT_CONFIG, Settings, load_settings
from switch.cli.wal import audit as audits
from switch.cli.wal import ops
from switch.read.events import event_json

SEQUENCE_BELOW = 10**15  # an --until below this is a sequence number, else nanoseconds
SETTLE_SECONDS_DEFAULT = 10.0


def add_parser(commands: Any) -> None:
    wal = commands.add_parser("wal", help="inspect, verify, replay, export or repair the logs",
                              description=__doc__)
    sub = wal.add_subparsers(dest="wal_command", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("data_dir", type=Path, help="a switch's data directory (or a copy)")
    common.add_argument("--shard", type=int, help="only this shard")
    common.add_argument("--config", type=Path, default=DEFAULT_CONFIG,
                        help="settings (ledgers, slots) the data was written with")
    inspect = sub.add_parser("inspect", parents=[common], help="per shard: records, range, size")
    inspect.add_argument("--records", action="store_true", help="print records as JSON lines")
    _add_filters(inspect)
    verify = sub.add_parser("verify", parents=[common],
                            help="checksums, chain, sequence, snapshots, conservation")
    verify.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None)
    replay = sub.add_parser(
        "replay", parents=[common], help="rebuild the state at a point",
        description="Rebuild every shard as it was at one moment. A sequence number names a "
        "record of the shard given by --shard (default 0): all shards are rebuilt to the "
        "moment that record was committed, since sequence numbers are per shard.")
    replay.add_argument("--until", required=True,
                        help="sequence number, nanoseconds, or ISO time (UTC if no zone)")
    replay.add_argument("--into", type=Path, required=True, help="a new data directory")
    replay.add_argument("--diff", action="store_true",
                        help="print accounts whose balances differ from the current state")
    export = sub.add_parser("export", parents=[common], help="events as JSON lines")
    _add_filters(export)
    export.add_argument("--audit", action="store_true",
                        help="only privileged actions (participants, keys, limits, accounts "
                             "that may go negative), each with the acting key and time")
    repair = sub.add_parser("repair", parents=[common],
                            help="back up, then cut a damaged tail off a log")
    repair.add_argument("--force", action="store_true",
                        help="cut at damage that intact records follow (they are dropped)")
    sub.add_parser("snapshot", parents=[common], help="take a fresh snapshot of each shard")
    backup = sub.add_parser("backup", parents=[common],
                            help="a consistent, compacted copy (also of a running switch)")
    backup.add_argument("--into", type=Path, required=True, help="a new directory")
    backup.add_argument("--settle-seconds", type=float, default=SETTLE_SECONDS_DEFAULT,
                        help="of a running switch: the copy is its state this long before the "
                        "backup began, one moment on every shard (default %(default)s)")
    compact = sub.add_parser("compact", parents=[common],
                             help="snapshot, then archive the log prefix it makes unnecessary")
    compact.add_argument("--discard", action="store_true",
                         help="drop the prefix instead of archiving it (it is kept by default)")


def _add_filters(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", help="only events that touch this account")
    parser.add_argument("--transfer", help="only events of this transfer")
    parser.add_argument("--from-seq", type=int, default=0)
    parser.add_argument("--to-seq", type=int)
    parser.add_argument("--from", dest="from_time", help="nanoseconds or ISO time")
    parser.add_argument("--to", dest="to_time", help="nanoseconds or ISO time")


def run(args: argparse.Namespace) -> int:
    try:
        settings = load_settings(args.config)
        shards = [(i, d) for i, d in shard_directories(args.data_dir)
                  if args.shard is None or i == args.shard]
        return int(COMMANDS[args.wal_command](args, settings, shards))
    except (ops.Refused, FileNotFoundError, ValueError) as error:
        print(f"payswitch wal: {error}", file=sys.stderr)
        return 2
    except (StoreDamaged, CorruptRecord) as error:
        print(f"payswitch wal: damaged: {error}", file=sys.stderr)
        return 1


Shards = list[tuple[int, Path]]


def _inspect(args: argparse.Namespace, settings: Settings, shards: Shards) -> int:
    if args.records:
        return _print_events(args, shards)
    print(f"{'shard':>5} {'records':>9} {'archived':>8} {'first':>7} {'last':>9}  "
          f"{'from (UTC)':<19}  {'to (UTC)':<19} {'MiB':>8} {'of map':>8}  snapshots")
    status = 0
    for index, directory in shards:
        log = LmdbLog(directory, 1 << 20, readonly=True)
        try:
            report, usage, snapshot_seqs = scan(log), log.usage(), log.snapshot_seqs()
        finally:
            log.close()
        print(f"{index:>5} {report.records:>9,} {report.archived:>8,} {report.first_seq:>7} "
              f"{report.last_seq:>9}  {_iso(report.first_timestamp_ns):<19}  "
              f"{_iso(report.last_timestamp_ns):<19} {usage['file_bytes'] / 2**20:>8.1f} "
              f"{usage['used_bytes'] / settings.wal.map_size_bytes:>8.1%}  {snapshot_seqs}")
        if report.damage is not None:
            print(f"      damaged: record {report.damage.seq}: {report.damage.reason}")
            status = 1
    return status


def _verify(args: argparse.Namespace, settings: Settings, shards: Shards) -> int:
    show = sys.stderr.isatty() if args.progress is None else args.progress
    results = []
    print(f"{'shard':>5} {'records':>9} {'archived':>8} {'last seq':>9} "
          f"{'snapshots checked':<18} result")
    for index, directory in shards:
        progress = _progress(index, directory) if show else None
        result = audits.audit_shard(index, directory, tuple(settings.ledgers),
                                    on_progress=progress)
        if show:
            print(file=sys.stderr)
        results.append(result)
        report = result.report
        print(f"{index:>5} {report.records:>9,} {report.archived:>8,} {report.last_seq:>9} "
              f"{len(result.snapshots_checked):<18} {result.failure or 'ok'}")
    failures = [r.failure for r in results if r.failure]
    if failures or len(shards) != len(shard_directories(args.data_dir)):
        return 1 if failures else _partial(results)
    placement = Placement(read_topology(args.data_dir, settings.shards.slots))
    settled = audits.settle_in_doubt(results, placement)
    books = audits.check_books(results)
    print(f"\nin-doubt cross-shard parts settled as recovery would: {settled}")
    print(f"{'ledger':<7} {'debits_posted':>22} {'credits_posted':>22} {'pending d/c':>14} result")
    for code, (dp, cp, dpe, cpe) in sorted(books.totals.items()):
        verdict = "balanced" if code not in books.unbalanced else "UNBALANCED"
        print(f"{code:<7} {dp:>22,} {cp:>22,} {f'{dpe}/{cpe}':>14} {verdict}")
    for line in books.limits_broken:
        print(f"limit broken: {line}")
    return 1 if books.unbalanced or books.limits_broken else 0


def _partial(results: list[audits.ShardAudit]) -> int:
    print("\n(one shard only: the books are checked across all shards; run without --shard)")
    return 0


def _replay(args: argparse.Namespace, settings: Settings, shards: Shards) -> int:
    until = _cut(args.until, args.data_dir, args.shard or 0)
    shards = shard_directories(args.data_dir)  # a moment is cut across every shard
    topology = read_topology(args.data_dir, settings.shards.slots)
    args.into.mkdir(parents=True, exist_ok=True)
    results = [ops.replay_into(i, d, args.into, tuple(settings.ledgers), until)
               for i, d in shards]
    save_topology(args.into, topology)  # the copy is served with the layout it was written with
    placement = Placement(topology)
    if len(results) == len(shard_directories(args.data_dir)):
        audits.settle_in_doubt(results, placement)
    for result in results:
        print(f"shard {result.index}: replayed to record {result.report.last_seq} "
              f"({_iso(result.report.last_timestamp_ns)}) into {args.into}")
    current = {} if not args.diff else {
        a.id: a for r in audits.audit_data_dir(args.data_dir, tuple(settings.ledgers))
        for a in r.ledger.accounts.values()}
    for result in results:
        for account in result.ledger.accounts.values():
            now = current.get(account.id)
            row = account_json(account)
            if args.diff and now is not None and now == account:
                continue
            if args.diff and now is not None:
                row["now"] = {k: v for k, v in account_json(now).items()
                              if k.endswith(("_posted", "_pending"))}
            sys.stdout.buffer.write(orjson.dumps(row) + b"\n")
    return 0


def _export(args: argparse.Namespace, settings: Settings, shards: Shards) -> int:
    return _print_events(args, shards)


def _repair(args: argparse.Namespace, settings: Settings, shards: Shards) -> int:
    backup_root = args.data_dir.parent / f"{args.data_dir.name}-backup-{_stamp()}"
    for index, directory in shards:
        report = ops.repair_shard(index, directory, backup_root, force=args.force)
        if report.reason is None:
            print(f"shard {index}: intact, nothing to repair")
            continue
        print(f"shard {index}: {report.reason}; backup in {report.backup}")
        print(f"  dropped records {report.dropped_seqs}")
        print(f"  transfer ids in them: {report.dropped_transfer_ids or 'none readable'}")
        if report.undecodable_seqs:
            print(f"  records too damaged to read: {report.undecodable_seqs}")
    return 0


def _backup(args: argparse.Namespace, settings: Settings, shards: Shards) -> int:
    topology = read_topology(args.data_dir, settings.shards.slots)
    running = any(is_locked(directory) for _, directory in shards)
    started = [ops.backup_shard(directory, args.into / directory.name)
               for _, directory in shards]
    save_topology(args.into, topology)
    if running and len(shards) > 1:
        # Shards are copied one after another: cut every copy at one moment that each holds
        # entirely (a record is stamped just before its commit, and commits take less than
        # the settle time), so that no copy holds a part whose decision another lacks.
        moment = min(started) - int(args.settle_seconds * 1e9)
        for index, directory in shards:
            dropped = ops.cut_at(args.into / directory.name, moment)
            print(f"shard {index}: copied to {args.into / directory.name}, cut at "
                  f"{_iso(moment)} ({dropped} later records left out)")
    else:
        for index, directory in shards:
            print(f"shard {index}: copied to {args.into / directory.name}")
    return 0


def _snapshot(args: argparse.Namespace, settings: Settings, shards: Shards) -> int:
    for index, directory in shards:
        result = ops.snapshot_shard(index, directory, tuple(settings.ledgers))
        print(f"shard {index}: snapshot at record {result.report.last_seq}")
    return 0


def _compact(args: argparse.Namespace, settings: Settings, shards: Shards) -> int:
    for index, directory in shards:
        moved = ops.compact_shard(index, directory, tuple(settings.ledgers), args.discard)
        where = "discarded" if args.discard else "moved to archive/"
        print(f"shard {index}: {moved} records {where}")
    return 0


COMMANDS: dict[str, Callable[[argparse.Namespace, Settings, Shards], int]] = {
    "inspect": _inspect, "verify": _verify, "replay": _replay, "export": _export,
    "repair": _repair, "snapshot": _snapshot, "compact": _compact, "backup": _backup,
}


# ---- events, times, progress ----

def _print_events(args: argparse.Namespace, shards: Shards) -> int:
    from_ns, to_ns = time_ns(args.from_time, 0), time_ns(args.to_time, 2**64)
    out = sys.stdout.buffer
    status = 0
    for index, directory in shards:
        log = LmdbLog(directory, 1 << 20, readonly=True)

        def emit(record: Record, index: int = index) -> None:
            if not (args.from_seq <= record.seq <= (args.to_seq or record.seq)):
                return
            if not from_ns <= record.timestamp_ns <= to_ns:
                return
            for event in decode_events(record.payload):
                if getattr(args, "audit", False) and not is_privileged(event):
                    continue
                if _matches(event, args.account, args.transfer):
                    out.write(orjson.dumps({"shard": index, "seq": record.seq,
                                            "timestamp_ns": record.timestamp_ns,
                                            "event": event_json(event)}) + b"\n")
        try:
            report = scan(log, emit)
        finally:
            log.close()
        if report.damage is not None:
            print(f"shard {index} record {report.damage.seq}: {report.damage.reason}",
                  file=sys.stderr)
            status = 1
    return status


def _matches(event: Event, account: str | None, transfer: str | None) -> bool:
    """Whether an event is about this transfer and touches this account (None: any)."""
    fields = [getattr(event, name) for name in event.__struct_fields__]
    transfers = [value for value in fields if isinstance(value, Transfer)]
    ids = {transfer_id_of(event), *(t.id for t in transfers)}
    accounts = {side for t in transfers for side in (t.debit_account_id, t.credit_account_id)}
    if isinstance(event, AccountCreated):
        accounts.add(event.account.id)
    if isinstance(event, LimitsChanged):
        accounts.add(event.account_id)
    return (transfer is None or transfer in ids) and (account is None or account in accounts)


def _cut(text: str, data_dir: Path, shard: int) -> Callable[[Record], bool]:
    """Which records are past the moment a replay rebuilds.

    A time cut is consistent across shards: a cross-shard transfer's reservations are all
    recorded before its home's commit, so a cut after the commit holds them too.
    """
    moment = time_ns(text, 0)
    if text.isdigit() and int(text) < SEQUENCE_BELOW:
        moment = _timestamp_of(data_dir, shard, int(text))
    return lambda record: record.timestamp_ns > moment


def _timestamp_of(data_dir: Path, shard: int, seq: int) -> int:
    log = LmdbLog(dict(shard_directories(data_dir))[shard], 1 << 20, readonly=True)
    try:
        report = scan(log, stop_before=lambda record: record.seq > seq)
    finally:
        log.close()
    if report.last_seq != seq:
        raise ValueError(f"shard {shard} has no intact record {seq}")
    return report.last_timestamp_ns


def _iso(timestamp_ns: int) -> str:
    if not timestamp_ns:
        return "-"
    return datetime.fromtimestamp(timestamp_ns / 1e9, UTC).strftime("%Y-%m-%d %H:%M:%S")


def _stamp() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S")


def _progress(index: int, directory: Path) -> Callable[[int], None]:
    log = LmdbLog(directory, 1 << 20, readonly=True)
    total = max(1, log.last_seq - log.first_seq() + 1 + sum(1 for _ in log.archived_raw_records()))
    log.close()

    def show(records: int) -> None:
        done = min(1.0, records / total)
        bar = "#" * int(30 * done) + "." * (30 - int(30 * done))
        print(f"\rshard {index} [{bar}] {done:4.0%} {records:,}/{total:,} records",
              end="", file=sys.stderr, flush=True)
    return show
