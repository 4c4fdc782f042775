"""Damage a stopped shard's files every way a disk or a person can, and check that recovery
and `payswitch wal verify` either keep a valid prefix of the log or stop with a clear error
that names the place: never a state the log did not have, never a hang. Each probe of a
damaged file runs in a subprocess, so a crash inside LMDB cannot take the test down.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from actors.codec import encode_commands, encode_snapshot
from actors.ledger import snapshot
from actors.ledger.ledger import Ledger
from actors.ledger.model import Account, Transfer
from actors.messages import Commit, CreateAccount
from actors.shard.host import ShardConfig, ShardHost
from persistence.lmdb_log import LmdbLog
from persistence.records import GENESIS_CHAIN, raw_of
from switch.cli.wal.audit import replay_record

LEDGERS = ("USD",)
PAGE_BYTES = 4096
PROBE = """
import hashlib, sys, orjson
from pathlib import Path
from actors.codec import encode_snapshot
from actors.ledger import snapshot
from actors.shard.host import ShardConfig, ShardHost
from persistence.lmdb_log import LmdbLog
for directory in sys.argv[1:]:
    try:
        config = ShardConfig(0, ("USD",), 1_000_000)
        host = ShardHost(config, lambda: LmdbLog(Path(directory), 1 << 26))
    except Exception as error:
        print(orjson.dumps({"ok": False, "error": f"{type(error).__name__}: {error}"}).decode())
    else:
        digest = hashlib.sha256(encode_snapshot(snapshot.dump(host.ledger))).hexdigest()
        print(orjson.dumps({"ok": True, "digest": digest, "last_seq": host._log.last_seq}).decode())
        host.close()
    sys.stdout.flush()
"""


def digest(ledger: Ledger) -> str:
    return hashlib.sha256(encode_snapshot(snapshot.dump(ledger))).hexdigest()


@pytest.fixture(scope="module")
def original(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, set[str], str, int]:
    """A small shard log written by the shard host, and the digest of every prefix of it."""
    directory = tmp_path_factory.mktemp("shard") / "shard-0000"
    host = ShardHost(ShardConfig(0, LEDGERS, snapshot_every_events=15),
                     lambda: LmdbLog(directory, 1 << 26))
    host.handle(encode_commands([CreateAccount(Account(f"a{i}", "USD", 1, "o", 0, ""))
                                 for i in range(6)]))
    rng = random.Random(5)
    for n in range(40):
        batch = [Commit(Transfer(f"t{n}-{k}", f"a{rng.randrange(3)}", f"a{3 + rng.randrange(3)}",
                                 rng.randint(1, 99), "USD", 1, "x" * rng.randrange(300)), 3)
                 for k in range(rng.randint(1, 4))]
        host.handle(encode_commands(batch))  # type: ignore[arg-type]
    host.close()
    prefixes, ledger = {digest(Ledger(LEDGERS))}, Ledger(LEDGERS)
    log = LmdbLog(directory, 1 << 26, readonly=True)
    for record in log.read(1, GENESIS_CHAIN):
        replay_record(ledger, record)  # as recovery does: history heads name the same places
        prefixes.add(digest(ledger))
    last_seq = log.last_seq
    log.close()
    return directory, prefixes, digest(ledger), last_seq


def copy_of(directory: Path, tmp_path: Path) -> Path:
    target = tmp_path / "data" / directory.name
    shutil.copytree(directory, target)
    return target


def probe(directory: Path) -> dict[str, Any]:
    return probe_many([directory])[0]


def probe_many(directories: list[Path]) -> list[dict[str, Any]]:
    """Each directory recovered by a shard host in one subprocess (a damaged file may crash
    LMDB: the test survives it), in order."""
    result = subprocess.run([sys.executable, "-c", PROBE, *map(str, directories)],
                            capture_output=True, text=True, timeout=120)
    if result.returncode != 0:
        return [{"ok": False, "error": f"exit {result.returncode}: {result.stderr[-300:]}"}
                ] * len(directories)
    return [dict(orjson.loads(line)) for line in result.stdout.splitlines()]


def verify(data_dir: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "switch.cli", "wal", "verify", str(data_dir),
                           "--config", str(Path(__file__).parents[2] / "config/default.toml")],
                          capture_output=True, text=True, timeout=60)


def assert_whole_or_clear_error(directory: Path, whole: str) -> None:
    """Damage below the log: the shard recovers everything it had (the damage fell where
    nothing is read), or refuses to start with an error naming the shard's files and what is
    wrong. Never a signal or an LMDB assertion (the probe's exit code would show it), never a
    shorter history in silence; verify says the same, by its exit code."""
    recovered = probe(directory)
    if recovered["ok"]:
        assert recovered["digest"] == whole, ("recovered less than the log held, in silence",
                                              recovered)
    else:
        assert "exit" not in recovered["error"], recovered  # died instead of answering
        assert "shard-0000" in recovered["error"] or "shard 0" in recovered["error"], recovered
    checked = verify(directory.parent)
    assert checked.returncode in (0, 1), (checked.returncode, checked.stderr[-500:])
    text = checked.stdout + checked.stderr
    if checked.returncode == 1:
        assert "shard 0" in text or "shard-0000" in text, text  # names the place
        assert "Traceback" not in checked.stderr, checked.stderr[-800:]


def test_every_record_boundary_keeps_that_prefix(original: tuple[Path, set[str], str, int],
                                                tmp_path: Path,
                                                request: pytest.FixtureRequest) -> None:
    """Every cut recovers that prefix; the WAL tool verifies the first, middle and last (every
    one with --run-slow: it is a process a cut)."""
    directory, prefixes, _, last_seq = original
    every = request.config.getoption("--run-slow")
    cuts = list(range(1, last_seq + 1))
    damaged = [copy_of(directory, tmp_path / f"cut{cut}") for cut in cuts]
    for cut, copy in zip(cuts, damaged, strict=True):
        log = LmdbLog(copy, 1 << 26)
        log.truncate_from(cut)
        log.close()
    for cut, copy, recovered in zip(cuts, damaged, probe_many(damaged), strict=True):
        assert recovered["ok"] and recovered["last_seq"] == cut - 1, (cut, recovered)
        assert recovered["digest"] in prefixes
        if every or cut in (1, last_seq // 2, last_seq):
            assert verify(copy.parent).returncode == 0


@pytest.mark.parametrize("seed", [
    *range(4), *(pytest.param(seed, marks=pytest.mark.slow) for seed in range(4, 24))])
def test_torn_record_at_a_random_byte_is_never_applied(original: tuple[Path, set[str], str, int],
                                                       tmp_path: Path, seed: int) -> None:
    directory, prefixes, _, last_seq = original
    rng = random.Random(seed)
    damaged = copy_of(directory, tmp_path)
    log = LmdbLog(damaged, 1 << 26)
    seq = last_seq if seed % 2 == 0 else rng.randint(1, last_seq)  # tails and middles
    raw = raw_of(next(log.read(seq, _chain_before(log, seq), seq)))
    log.overwrite_raw(seq, raw[: rng.randrange(len(raw))])
    newest_snapshot = max(log.snapshot_seqs(), default=0)
    log.close()
    recovered = probe(damaged)
    if seq > newest_snapshot:
        assert not recovered["ok"] and f"record {seq}" in recovered["error"], recovered
    else:  # recovery starts after the damage and never reads it; verify (below) names it
        assert recovered["ok"] and recovered["digest"] == original[2], recovered
    checked = verify(damaged.parent)
    assert checked.returncode == 1 and f"shard 0 record {seq}" in checked.stdout
    repair = [sys.executable, "-m", "switch.cli", "wal", "repair", str(damaged.parent)]
    if seq < last_seq:  # not the tail: cutting drops acknowledged records, so it must be forced
        refused = subprocess.run(repair, capture_output=True, text=True, timeout=60)
        assert refused.returncode == 2 and "--force" in refused.stderr, refused
        untouched = LmdbLog(damaged, 1 << 26, readonly=True)
        assert untouched.tail_seq() == last_seq  # refused: nothing was cut
        untouched.close()
        repair.append("--force")
    repaired = subprocess.run(repair, capture_output=True, text=True, timeout=60)
    assert repaired.returncode == 0 and f"record {seq}" in repaired.stdout, repaired.stderr
    after = probe(damaged)
    assert after["ok"] and after["last_seq"] == seq - 1 and after["digest"] in prefixes


def _chain_before(log: LmdbLog, seq: int) -> bytes:
    chain = GENESIS_CHAIN
    for record in log.read(1, GENESIS_CHAIN, seq - 1):
        chain = record.chain
    return chain


@pytest.mark.parametrize("seed", range(16))
def test_flipped_bits_in_random_pages(original: tuple[Path, set[str], str, int],
                                      tmp_path: Path, seed: int) -> None:
    directory, _, whole, _ = original
    rng = random.Random(seed)
    damaged = copy_of(directory, tmp_path)
    data = bytearray((damaged / "data.mdb").read_bytes())
    for _ in range(rng.randint(1, 4)):
        position = rng.randrange(len(data))
        data[position] ^= 1 << rng.randrange(8)
    (damaged / "data.mdb").write_bytes(bytes(data))
    assert_whole_or_clear_error(damaged, whole)


@pytest.mark.parametrize("seed", range(10))
def test_a_page_overwritten_with_another(original: tuple[Path, set[str], str, int],
                                         tmp_path: Path, seed: int) -> None:
    directory, _, whole, _ = original
    rng = random.Random(seed)
    damaged = copy_of(directory, tmp_path)
    data = bytearray((damaged / "data.mdb").read_bytes())
    pages = len(data) // PAGE_BYTES
    source, target = rng.randrange(pages), rng.randrange(pages)
    data[target * PAGE_BYTES:(target + 1) * PAGE_BYTES] = \
        data[source * PAGE_BYTES:(source + 1) * PAGE_BYTES]
    (damaged / "data.mdb").write_bytes(bytes(data))
    assert_whole_or_clear_error(damaged, whole)


@pytest.mark.parametrize("seed", range(6))
def test_file_cut_short_at_a_random_offset(original: tuple[Path, set[str], str, int],
                                           tmp_path: Path, seed: int) -> None:
    directory, _, whole, _ = original
    damaged = copy_of(directory, tmp_path)
    data = (damaged / "data.mdb").read_bytes()
    (damaged / "data.mdb").write_bytes(data[: random.Random(seed).randrange(len(data))])
    assert_whole_or_clear_error(damaged, whole)
