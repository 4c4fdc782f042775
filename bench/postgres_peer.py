"""A PostgreSQL ledger to measure payswitch against: what a team would otherwise build.

A scratch PostgreSQL 15 cluster (Debian's binaries; `initdb` in a temporary directory, run as
the `postgres` user when we are root, listening on 127.0.0.1 only) with `fsync=on` and
`synchronous_commit=on`: a transfer is durable when answered, as in payswitch. Two tables
(accounts with their posted balances, transfers by id) and one PL/pgSQL function that does
what payswitch's single-phase transfer does: idempotent by id (`exists`), both accounts
locked in id order (no deadlocks), same ledger, different accounts, the overdraft flag
checked, both balances and the transfer written in one transaction.

The load comes from pgbench (C, like wrk for payswitch), over TCP on loopback, with the same
accounts and the same distributions as `bench.throughput`: one call per transaction, or 100
calls per transaction.
"""

from __future__ import annotations

import glob
import os
import shutil
import statistics
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

SCHEMA = """
CREATE TABLE accounts (
    id text PRIMARY KEY,
    ledger text NOT NULL,
    code integer NOT NULL,
    debits_posted bigint NOT NULL DEFAULT 0,
    credits_posted bigint NOT NULL DEFAULT 0,
    debits_must_not_exceed_credits boolean NOT NULL DEFAULT false
);
CREATE TABLE transfers (
    id text PRIMARY KEY,
    debit_account_id text NOT NULL,
    credit_account_id text NOT NULL,
    amount bigint NOT NULL CHECK (amount > 0),
    ledger text NOT NULL,
    code integer NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now()
);
CREATE FUNCTION create_transfer(p_id text, p_debit text, p_credit text, p_amount bigint,
                                p_ledger text, p_code integer) RETURNS text
LANGUAGE plpgsql AS $$
DECLARE
    stored transfers;
    debit accounts;
    credit accounts;
BEGIN
    SELECT * INTO stored FROM transfers WHERE id = p_id;
    IF FOUND THEN
        RETURN CASE WHEN (stored.debit_account_id, stored.credit_account_id, stored.amount,
                          stored.ledger, stored.code)
                         = (p_debit, p_credit, p_amount, p_ledger, p_code) THEN 'exists'
                    ELSE 'exists_with_different_fields' END;
    END IF;
    IF p_debit = p_credit THEN
        RETURN 'accounts_must_be_different';
    END IF;
    PERFORM 1 FROM accounts WHERE id IN (p_debit, p_credit) ORDER BY id FOR UPDATE;
    SELECT * INTO debit FROM accounts WHERE id = p_debit;
    IF NOT FOUND THEN RETURN 'debit_account_not_found'; END IF;
    SELECT * INTO credit FROM accounts WHERE id = p_credit;
    IF NOT FOUND THEN RETURN 'credit_account_not_found'; END IF;
    IF debit.ledger <> p_ledger OR credit.ledger <> p_ledger THEN
        RETURN 'transfer_must_have_the_same_ledger_as_accounts';
    END IF;
    IF debit.debits_must_not_exceed_credits
       AND debit.debits_posted + p_amount > debit.credits_posted THEN
        RETURN 'exceeds_credits';
    END IF;
    INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger, code)
        VALUES (p_id, p_debit, p_credit, p_amount, p_ledger, p_code)
        ON CONFLICT (id) DO NOTHING;
    IF NOT FOUND THEN
        RETURN 'exists';  -- a concurrent call with this id won
    END IF;
    UPDATE accounts SET debits_posted = debits_posted + p_amount WHERE id = p_debit;
    UPDATE accounts SET credits_posted = credits_posted + p_amount WHERE id = p_credit;
    RETURN 'ok';
END $$;
-- Many transfers in one transaction: every account they touch locked first, in id order, so
-- that concurrent batches cannot deadlock. When no account in the batch may refuse a debit
-- (no overdraft flag) and every account exists on the ledger, the batch is applied set-wise:
-- new transfers inserted, each account's sums added once. Otherwise each transfer in turn.
CREATE FUNCTION create_transfers(p_ids text[], p_debits text[], p_credits text[],
                                 p_amounts bigint[], p_ledger text, p_code integer)
RETURNS integer LANGUAGE plpgsql AS $$
DECLARE
    touched integer;
    found_accounts integer;
    flagged boolean;
    inserted integer;
BEGIN
    SELECT count(DISTINCT id) INTO touched FROM unnest(p_debits || p_credits) AS id;
    SELECT count(*), coalesce(bool_or(debits_must_not_exceed_credits OR ledger <> p_ledger),
                              false)
        INTO found_accounts, flagged
        FROM (SELECT * FROM accounts WHERE id = ANY (p_debits || p_credits)
              ORDER BY id FOR UPDATE) AS locked;
    IF flagged OR found_accounts <> touched THEN
        inserted := 0;
        FOR i IN 1 .. array_length(p_ids, 1) LOOP
            IF create_transfer(p_ids[i], p_debits[i], p_credits[i], p_amounts[i], p_ledger,
                               p_code) = 'ok' THEN
                inserted := inserted + 1;
            END IF;
        END LOOP;
        RETURN inserted;
    END IF;
    WITH batch AS (
        SELECT * FROM unnest(p_ids, p_debits, p_credits, p_amounts)
            AS b(id, debit_account_id, credit_account_id, amount)
        WHERE debit_account_id <> credit_account_id AND amount > 0),
    new AS (
        INSERT INTO transfers (id, debit_account_id, credit_account_id, amount, ledger, code)
            SELECT id, debit_account_id, credit_account_id, amount, p_ledger, p_code
            FROM batch ON CONFLICT (id) DO NOTHING
            RETURNING debit_account_id, credit_account_id, amount),
    moves AS (
        SELECT debit_account_id AS id, amount AS debits, 0::bigint AS credits FROM new
        UNION ALL
        SELECT credit_account_id, 0, amount FROM new),
    sums AS (
        SELECT id, sum(debits)::bigint AS debits, sum(credits)::bigint AS credits
        FROM moves GROUP BY id),
    updated AS (
        UPDATE accounts SET debits_posted = debits_posted + sums.debits,
                            credits_posted = credits_posted + sums.credits
        FROM sums WHERE accounts.id = sums.id RETURNING 1)
    SELECT count(*) INTO inserted FROM new;
    RETURN inserted;
END $$;
"""

# One transfer's accounts, amount and id number, as bench.throughput picks them (uniform; or
# with :hot_percent percent of transfers having one side, debit or credit alike, on one of 10
# hot accounts).
PICK = r"""\set debit{i} random(0, :accounts - 1)
\set credit{i} random(0, :accounts - 1)
\set hot random(1, 100)
\if :hot <= :hot_percent / 2
\set debit{i} random(0, 9)
\elif :hot <= :hot_percent
\set credit{i} random(0, 9)
\endif
\if :debit{i} = :credit{i}
\set credit{i} (:credit{i} + 1) % :accounts
\endif
\set amount{i} random(1, 1000)
\set n{i} random(1, 9000000000000000000)
"""


# N transfers in one `create_transfers` call: picked the same way in SQL (pgbench passes at
# most 255 variables to a statement).
BATCH = r"""\set n random(1, 9000000000000000000)
SELECT create_transfers(array_agg(id), array_agg(debit), array_agg(credit), array_agg(amount),
                        'USD', 1)
FROM (SELECT 'r' || :run || '-' || :client_id || '-' || :n || '-' || g AS id,
             'a' || d AS debit,
             'a' || CASE WHEN c = d THEN (c + 1) % :accounts ELSE c END AS credit,
             (1 + floor(random() * 1000))::bigint AS amount
      FROM (SELECT g,
                   floor(random() * CASE WHEN h < :hot_percent / 2.0 THEN 10
                                         ELSE :accounts END)::int AS d,
                   floor(random() * CASE WHEN h >= :hot_percent / 2.0 AND h < :hot_percent
                                         THEN 10 ELSE :accounts END)::int AS c
            FROM (SELECT g, random() * 100 AS h
                  FROM generate_series(1, {count}) AS g) AS drawn) AS picked) AS batch;
"""


def script(transfers_per_transaction: int) -> str:
    """A pgbench script: one `create_transfer` call per transaction, or one `create_transfers`
    call with N transfers."""
    if transfers_per_transaction > 1:
        return BATCH.format(count=transfers_per_transaction)
    return PICK.format(i=0) + ("SELECT create_transfer('r' || :run || '-' || :client_id || '-' "
                               "|| :n0, 'a' || :debit0, 'a' || :credit0, :amount0, 'USD', 1);\n")


def binaries() -> Path:
    """The directory of PostgreSQL's server programs (initdb, pg_ctl)."""
    found = shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    for directory in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(directory) / "initdb").exists():
            return Path(directory)
    raise SystemExit("PostgreSQL's server is not installed: `make bench-peers` installs it "
                     "(apt-get install postgresql), or install it and run this again")


class ScratchPostgres:
    """A PostgreSQL cluster of its own, in a temporary directory, gone when closed."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.bin = binaries()
        self.directory = Path(tempfile.mkdtemp(prefix="payswitch-peer-pg-"))
        self.data = self.directory / "data"
        # initdb and postgres refuse to run as root: then they run as `postgres`
        self.as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
        if self.as_user:
            shutil.chown(self.directory, "postgres")

    def start(self) -> ScratchPostgres:
        self._server(str(self.bin / "initdb"), "-D", str(self.data), "-U", "bench",
                     "-A", "trust", "-E", "UTF8", "--no-locale")
        options = (f"-c port={self.port} -c listen_addresses=127.0.0.1 "
                   f"-c unix_socket_directories={self.directory} -c fsync=on "
                   "-c synchronous_commit=on -c shared_buffers=256MB -c max_connections=200")
        self._server(str(self.bin / "pg_ctl"), "-D", str(self.data), "-w", "-l",
                     str(self.directory / "server.log"), "-o", options, "start")
        self.sql("CREATE DATABASE bench", database="postgres")
        self.sql(SCHEMA)
        return self

    def close(self) -> None:
        self._server(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", "fast", "-w", "stop",
                     check=False)
        shutil.rmtree(self.directory, ignore_errors=True)

    def _server(self, *command: str, check: bool = True) -> None:
        subprocess.run([*self.as_user, *command], check=check, capture_output=True)

    def sql(self, statement: str, database: str = "bench") -> str:
        done = subprocess.run(
            ["psql", "-h", "127.0.0.1", "-p", str(self.port), "-U", "bench", "-d", database,
             "-v", "ON_ERROR_STOP=1", "-qAt", "-c", statement],
            check=True, capture_output=True, text=True)
        return done.stdout.strip()

    def create_accounts(self, count: int) -> None:
        self.sql("INSERT INTO accounts (id, ledger, code) SELECT 'a' || n, 'USD', 1 "
                 f"FROM generate_series(0, {count - 1}) AS n ON CONFLICT DO NOTHING")

    def balanced(self) -> bool:
        debits, credits = self.sql(
            "SELECT sum(debits_posted), sum(credits_posted) FROM accounts").split("|")
        return debits == credits

    def transfers_stored(self) -> int:
        return int(self.sql("SELECT count(*) FROM transfers"))

    def pgbench(self, run: int, accounts: int, hot_percent: int, per_transaction: int,
                clients: int, seconds: float) -> dict[str, Any]:
        """pgbench for `seconds`; transfers per second and the latency of each transaction."""
        work = Path(tempfile.mkdtemp(prefix="payswitch-pgbench-"))
        try:
            (work / "transfer.sql").write_text(script(per_transaction))
            before = self.transfers_stored()
            done = subprocess.run(
                ["pgbench", "-h", "127.0.0.1", "-p", str(self.port), "-U", "bench", "-n",
                 "-c", str(clients), "-j", str(min(clients, 2)), "-T", str(int(seconds)),
                 "-D", f"accounts={accounts}", "-D", f"hot_percent={hot_percent}",
                 "-D", f"run={run}", "-M", "prepared", "-f", str(work / "transfer.sql"),
                 "-l", f"--log-prefix={work / 'latency'}", "bench"],
                check=False, capture_output=True, text=True, cwd=work)
            if done.returncode != 0:
                raise RuntimeError(f"pgbench failed: {done.stderr.strip()[-2000:]}")
            transfers = self.transfers_stored() - before
            fields = [line.split()[2] for log in work.glob("latency*")
                      for line in log.read_text().splitlines()]
            latencies = sorted(int(field) for field in fields if field.isdigit())
            if not latencies:
                raise RuntimeError(f"no transaction succeeded ({len(fields)} failed)")
        finally:
            shutil.rmtree(work, ignore_errors=True)
        return {"transfers": transfers, "seconds": seconds,
                "transfers_per_s": transfers / seconds, "transactions": len(latencies),
                "errors": len(fields) - len(latencies),
                "latency_ms_p50": statistics.median(latencies) / 1000,
                "latency_ms_p99": latencies[int(0.99 * (len(latencies) - 1))] / 1000}


@contextmanager
def scratch_postgres(port: int) -> Iterator[ScratchPostgres]:
    server = ScratchPostgres(port)
    try:
        yield server.start()
    finally:
        server.close()
