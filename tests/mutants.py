"""Seeded mutants: each breaks the code one way a weak test once let through, and names the
tests that must now fail on it. Proof that those tests can fail (the hardening issue).

    python -m tests.mutants [NAME ...]      # all by default; prints a line per mutant

Each mutant runs in a copy of the working tree (`git ls-files`, with uncommitted changes),
never in it: the copy gets the one change, then pytest runs the named tests there. A mutant
is *killed* when pytest fails; the script exits 1 if any mutant survives, or if a mutation
no longer applies (its code moved: update the mutant).
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class Mutant:
    name: str
    why: str  # the weak test it answers
    path: str
    old: str
    new: str
    tests: tuple[str, ...]


MUTANTS = [
    Mutant("wrong-result-code",
           "the chaos load's assertions never reached the test (they ran in client threads)",
           "switch/api/app.py",
           '    return outcome[0]  # type: ignore[index]',
           '    code = outcome[0]  # type: ignore[index]\n'
           '    return "exceeds_debits" if code == "ok" and hash(id(outcome)) % 50 == 0 '
           'else code',
           ("tests/test_crash.py::test_kill_9_under_load[1]",)),
    Mutant("verify-always-fails",
           "the crash test never ran wal verify on what the crash left",
           "switch/cli/wal/commands.py",
           "    return 1 if books.unbalanced or books.limits_broken else 0",
           "    return 1",
           ("tests/test_crash.py::test_kill_9_under_load[1]",)),
    Mutant("no-meta-page-check",
           "the corruption tests took a SIGBUS or an LMDB assertion for a clear error",
           "persistence/lmdb_file.py",
           "    if not path.exists():\n        return\n",
           "    if True:\n        return\n",
           ("tests/persistence/test_corruption.py::test_file_cut_short_at_a_random_offset",)),
    Mutant("repair-lists-nothing",
           "the repair test passed through its 'too damaged to read' branch",
           "switch/cli/wal/ops.py",
           "            result.dropped_transfer_ids.extend(ids)",
           "            pass",
           ("tests/test_wal_repair.py::test_a_torn_tail_is_cut_with_exactly_its_ids_listed",)),
    Mutant("debit-closed-unchecked",
           "a table row for 'debit closed before credit closed' used an account that did "
           "not exist",
           "actors/ledger/ledger.py",
           "        if account.flags & _CLOSED:\n            return _R.debit_account_closed",
           "        if False:\n            return _R.debit_account_closed",
           ("tests/actors/test_ledger_table.py::test_commit_transfer",)),
    Mutant("rule-refusal-as-409",
           "tests accepted two or three statuses where the docs name one",
           "switch/api/errors.py",
           "    if result == \"in_flight\":\n        return 503\n    return 422",
           "    if result == \"in_flight\":\n        return 503\n    return 409",
           ("tests/switch/test_two_phase.py::test_two_phase_rejections",)),
    Mutant("long-poll-never-waits",
           "a long-poll test never checked that the request waited",
           "switch/read/events_api.py",
           "            while not found and time.monotonic() < deadline:",
           "            while False:",
           ("tests/switch/test_events.py::test_long_poll_returns_when_an_event_arrives",)),
    Mutant("lost-home-answer-voids",
           "no test had a channel that loses replies (a lost answer was taken as 'not done')",
           "switch/routing/router.py",
           "            if not isinstance(reply, TransferReply):\n"
           "                continue  # no answer from the home: only its decision decides; "
           "redrive asks\n"
           "            committed = reply.transfer if reply.result == _OK else None",
           "            committed = reply.transfer if isinstance(reply, TransferReply) and "
           "reply.result == _OK else None",
           ("tests/switch/test_router_hardening.py::"
            "test_a_lost_answer_from_the_home_never_voids_what_it_may_have_committed",
            "tests/switch/test_router_flaky_model.py")),
]


def _copy_tree(target: Path) -> None:
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True,
                           check=True).stdout.decode().split("\0")
    for name in filter(None, files):
        source = ROOT / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def run(mutant: Mutant) -> str:
    with tempfile.TemporaryDirectory(prefix=f"mutant-{mutant.name}-") as work:
        tree = Path(work)
        _copy_tree(tree)
        path = tree / mutant.path
        text = path.read_text()
        if text.count(mutant.old) != 1:
            return "NOT APPLIED (the code it changes moved: update the mutant)"
        path.write_text(text.replace(mutant.old, mutant.new))
        result = subprocess.run([sys.executable, "-m", "pytest", "-q", "-x", "-p",
                                 "no:cacheprovider", *mutant.tests], cwd=tree,
                                capture_output=True, text=True, timeout=1200)
        lines = result.stdout.strip().splitlines() or ["(no output)"]
        first_error = next((line.strip() for line in lines if line.startswith("E ")), "")
        return ("killed: " if result.returncode != 0 else "SURVIVED: ") + lines[-1] + (
            f"\n{'':24} {first_error[:150]}" if first_error else "")


def main(names: list[str]) -> int:
    chosen = [m for m in MUTANTS if not names or m.name in names]
    survived = 0
    for mutant in chosen:
        outcome = run(mutant)
        survived += not outcome.startswith("killed")
        print(f"{mutant.name:24} {outcome}\n{'':24} ({mutant.why})", flush=True)
    return 1 if survived else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
