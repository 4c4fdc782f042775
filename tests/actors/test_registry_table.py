"""Participants, keys and who may debit what, as tables: the core's rules (pure), then the
same rules through the real router over three in-process shard hosts (cross-shard parts,
balancing transfers and linked chains take other paths than one-shard commits)."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import msgspec
import pytest
from msgspec.structs import replace

from actors.codec import decode_snapshot, encode_snapshot
from actors.ledger import snapshot
from actors.ledger.codes import AccountResult as A
from actors.ledger.codes import TransferResult as T
from actors.ledger.events import NdcAlarm
from actors.ledger.ledger import Ledger
from actors.ledger.model import (
    BALANCING_CREDIT,
    BALANCING_DEBIT,
    CLOSING_CREDIT,
    LINKED,
    PENDING,
    POST_PENDING,
    Account,
    Transfer,
)
from actors.ledger.registry import (
    AUDITOR,
    DISABLED,
    OPERATOR,
    PARTICIPANT,
    ApiKey,
    Participant,
)
from actors.ledger.registry import RegistryResult as R
from actors.messages import (
    CreateKey,
    CreateParticipant,
    GetRegistry,
    RegistryView,
    RevokeKey,
    SetParticipantStatus,
)
from actors.shard.host import ShardConfig, ShardHost
from persistence.lmdb_log import LmdbLog
from tests.actors.ledger_helpers import apply_all, local_router

NOW = 1_000


def ledger() -> Ledger:
    return Ledger(["USD", "EUR"])


def decided(ledger: Ledger, outcome: tuple[Any, list[Any]]) -> Any:
    result, events = outcome
    apply_all(ledger, events)
    return result


def key(key_id: str, role: str = PARTICIPANT, participant_id: str = "bank-a") -> ApiKey:
    return ApiKey(key_id, role, participant_id if role == PARTICIPANT else "", b"h" * 32, NOW)


# ---- the registry's decisions ----

PARTICIPANT_ROWS = [
    ("new", Participant("bank-a", "Bank A", ["USD"]), R.ok),
    ("same again", Participant("bank-a", "Bank A", ["USD"]), R.exists),
    ("another name", Participant("bank-a", "Bank B", ["USD"]), R.exists_with_different_name),
    ("other ledgers", Participant("bank-a", "Bank A", ["EUR"]),
     R.exists_with_different_ledgers),
    ("ledger unknown", Participant("bank-b", "Bank B", ["JPY"]), R.ledger_unknown),
]


def test_participants_table() -> None:
    state = ledger()
    for name, participant, expected in PARTICIPANT_ROWS:
        result = decided(state, state.create_participant(replace(participant, timestamp=NOW),
                                                         "key-op"))
        assert result is expected, name
    assert list(state.registry.participants) == ["bank-a"]


def test_status_and_keys_table() -> None:
    state = ledger()
    decided(state, state.create_participant(Participant("bank-a", "A", ["USD"], timestamp=NOW),
                                            "key-op"))
    rows: list[tuple[str, Any, R]] = [
        ("unknown participant", lambda: state.set_participant_status("nope", DISABLED, NOW,
                                                                     "k", True),
         R.participant_not_found),
        ("bad status", lambda: state.set_participant_status("bank-a", "asleep", NOW, "k", True),
         R.status_invalid),
        ("disable", lambda: state.set_participant_status("bank-a", DISABLED, NOW, "k", True),
         R.ok),
        ("disable again", lambda: state.set_participant_status("bank-a", DISABLED, NOW, "k",
                                                               True), R.unchanged),
        ("a participant key without participant",
         lambda: state.create_key(key("k1", PARTICIPANT, ""), "k"), R.role_invalid),
        ("an auditor key naming a participant",
         lambda: state.create_key(replace(key("k1", AUDITOR), participant_id="bank-a"), "k"),
         R.role_invalid),
        ("a role that is none", lambda: state.create_key(key("k1", "root"), "k"),
         R.role_invalid),
        ("for a participant that is none",
         lambda: state.create_key(key("k1", PARTICIPANT, "nope"), "k"),
         R.participant_not_found),
        ("participant key", lambda: state.create_key(key("k1"), "k"), R.ok),
        ("same key id", lambda: state.create_key(key("k1", OPERATOR), "k"), R.exists),
        ("revoke unknown", lambda: state.revoke_key("k9", NOW, "k"), R.key_not_found),
        ("revoke", lambda: state.revoke_key("k1", NOW, "k"), R.ok),
        ("revoke again", lambda: state.revoke_key("k1", NOW, "k"), R.unchanged),
    ]
    for name, decide, expected in rows:
        assert decided(state, decide()) is expected, name
    assert state.registry.keys["k1"].revoked
    assert state.registry.disabled == {"bank-a"}
    assert state.registry.participants["bank-a"].status == DISABLED


def test_alarm_thresholds_table_and_alarms_recorded() -> None:
    state = ledger()
    decided(state, state.create_participant(Participant("bank-a", "A", ["USD"], timestamp=NOW),
                                            "key-op"))
    rows: list[tuple[str, Any, R]] = [
        ("unknown participant", lambda: state.set_alarm_threshold("nope", "USD", 50, NOW, "k"),
         R.participant_not_found),
        ("a ledger it is not on", lambda: state.set_alarm_threshold("bank-a", "EUR", 50, NOW,
                                                                    "k"), R.ledger_not_enabled),
        ("0 percent", lambda: state.set_alarm_threshold("bank-a", "USD", 0, NOW, "k"),
         R.percent_invalid),
        ("101 percent", lambda: state.set_alarm_threshold("bank-a", "USD", 101, NOW, "k"),
         R.percent_invalid),
        ("set", lambda: state.set_alarm_threshold("bank-a", "USD", 50, NOW, "k"), R.ok),
        ("the same again", lambda: state.set_alarm_threshold("bank-a", "USD", 50, NOW, "k"),
         R.unchanged),
        ("an alarm of nobody", lambda: state.record_ndc_alarm(NdcAlarm("nope", "USD", 60, 100,
                                                                       50, NOW, "k")),
         R.participant_not_found),
        ("an alarm", lambda: state.record_ndc_alarm(NdcAlarm("bank-a", "USD", 60, 100, 50, NOW,
                                                             "k")), R.ok),
    ]
    version = state.registry.version
    for name, decide, expected in rows:
        assert decided(state, decide()) is expected, name
    assert state.registry.participants["bank-a"].alarm_percents == {"USD": 50}
    assert state.registry.version == version + 1  # the threshold; an alarm changes nothing
    restored = ledger()
    stored, _ = decode_snapshot(encode_snapshot(snapshot.dump(state)))
    snapshot.load(restored, stored)
    assert restored.registry.participants["bank-a"].alarm_percents == {"USD": 50}


def test_a_participant_stored_before_alarm_thresholds_reads_with_none() -> None:
    """A participant as format 3 and 4 records and snapshots hold it: five fields."""
    old = msgspec.msgpack.encode(["bank-a", "A", ["USD"], "active", NOW])
    assert msgspec.msgpack.decode(old, type=Participant).alarm_percents == {}


def test_a_shard_without_the_registry_keeps_who_is_disabled() -> None:
    state = ledger()
    assert decided(state, state.set_participant_status("bank-a", DISABLED, NOW, "k",
                                                       False)) is R.ok
    assert state.registry.disabled == {"bank-a"} and not state.registry.participants
    assert decided(state, state.set_participant_status("bank-a", "active", NOW, "k",
                                                       False)) is R.ok
    assert not state.registry.disabled


def test_the_registry_survives_a_snapshot() -> None:
    state = ledger()
    decided(state, state.create_participant(Participant("bank-a", "A", ["USD"], timestamp=NOW),
                                            "key-op"))
    decided(state, state.create_key(key("k1"), "key-op"))
    decided(state, state.set_participant_status("bank-a", DISABLED, NOW, "key-op", True))
    restored = ledger()
    stored, _ = decode_snapshot(encode_snapshot(snapshot.dump(state)))
    snapshot.load(restored, stored)
    assert restored.registry.participants == state.registry.participants
    assert restored.registry.keys == state.registry.keys
    assert restored.registry.disabled == {"bank-a"}
    assert restored.registry.version == state.registry.version


# ---- who may debit what (one shard) ----

def owned(ledger: Ledger) -> Ledger:
    for account_id, owner in (("a1", "bank-a"), ("a2", "bank-a"), ("b1", "bank-b"),
                              ("house", "op")):
        account = Account(account_id, "USD", 1, owner, 0, "", timestamp=NOW)
        decided(ledger, ledger.create_account(account))
    return ledger


def send(state: Ledger, transfer_id: str, debit: str, credit: str, by: str, amount: int = 5,
         flags: int = 0, pending_id: str = "") -> T:
    transfer = Transfer(transfer_id, debit, credit, amount, "USD", 1, "", flags, pending_id,
                        timestamp=NOW + 1, key_id="k", participant_id=by)
    result, events, _ = state.commit_transfer(transfer, 3, T.ok)
    apply_all(state, events)
    return result


DEBIT_ROWS = [
    ("a participant debits its own account", "t1", "a1", "b1", "bank-a", 0, T.ok),
    ("and credits another's", "t2", "a2", "b1", "bank-a", 0, T.ok),
    ("a participant debits another's account", "t3", "b1", "a1", "bank-a", 0, T.forbidden),
    ("nor the house's", "t4", "house", "a1", "bank-a", 0, T.forbidden),
    ("even balancing", "t5", "b1", "a1", "bank-a", BALANCING_DEBIT, T.forbidden),
    ("the operator debits anyone's", "t6", "house", "a1", "", 0, T.ok),
    ("a missing account is not found, not forbidden", "t7", "zz", "a1", "bank-a", 0,
     T.debit_account_not_found),
    ("another's transfer id, sent again", "t0", "a1", "b1", "bank-b", 0, T.forbidden),
    ("its own, sent again", "t0", "a1", "b1", "bank-a", 0, T.exists),
    ("closing another's account", "t8", "a1", "b1", "bank-a", PENDING | CLOSING_CREDIT,
     T.forbidden),
    ("closing its own", "t9", "a1", "a2", "bank-a", PENDING | CLOSING_CREDIT, T.ok),
    ("the operator closes anyone's", "t10", "house", "b1", "", PENDING | CLOSING_CREDIT, T.ok),
    ("balancing against another's (its amount would tell b1's position)", "t11", "a1", "b1",
     "bank-a", PENDING | BALANCING_CREDIT, T.forbidden),
]


@pytest.mark.parametrize("name,transfer_id,debit,credit,by,flags,expected", DEBIT_ROWS,
                         ids=[row[0] for row in DEBIT_ROWS])
def test_who_may_debit(name: str, transfer_id: str, debit: str, credit: str, by: str,
                       flags: int, expected: T) -> None:
    state = owned(ledger())
    send(state, "t0", "a1", "b1", "bank-a")  # an earlier transfer, for the repeats
    assert send(state, transfer_id, debit, credit, by, flags=flags) is expected


def test_another_participants_account_id_tells_nothing() -> None:
    state = owned(ledger())
    taken = Account("b1", "EUR", 7, "bank-a", 1, "", timestamp=NOW)
    assert state.create_account(taken, participant_id="bank-a") == (A.forbidden, [])
    same = Account("a1", "USD", 1, "bank-a", 0, "", timestamp=NOW)
    assert state.create_account(same, participant_id="bank-a") == (A.exists, [])


def test_a_disabled_participants_accounts_take_credits_not_debits() -> None:
    state = owned(ledger())
    decided(state, state.set_participant_status("bank-b", DISABLED, NOW, "k", False))
    assert send(state, "t1", "b1", "a1", "") is T.debit_participant_disabled
    assert send(state, "t2", "b1", "a1", "bank-b") is T.debit_participant_disabled
    assert send(state, "t3", "a1", "b1", "bank-a") is T.ok
    assert state.accounts["b1"].credits_posted == 5 and not state.accounts["b1"].debits_posted


def test_another_participants_pending_transfer_is_not_found_by_its_post() -> None:
    state = owned(ledger())
    assert send(state, "p1", "a1", "b1", "bank-a", flags=PENDING) is T.ok
    post = Transfer("q1", "", "", 0, "", 1, "", POST_PENDING, "p1", timestamp=NOW + 2,
                    participant_id="bank-b")
    result, _, _ = state.claim_pending(post, 1)
    assert result is T.pending_transfer_not_found
    result, _, _ = state.claim_pending(replace(post, participant_id="bank-a"), 1)
    assert result is T.ok


# ---- the same through the router, across shards ----

@pytest.fixture
def hosts(tmp_path: Path) -> list[ShardHost]:
    return [ShardHost(ShardConfig(index, ("USD",), snapshot_every_events=1_000_000),
                      lambda index=index: LmdbLog(tmp_path / str(index), 1 << 24))
            for index in range(3)]


def test_across_shards_chains_and_balancing(hosts: list[ShardHost]) -> None:
    router = local_router(hosts)

    async def scenario() -> list[str]:
        owners = {"a1": "bank-a", "a2": "bank-a", "b1": "bank-b", "b2": "bank-b"}
        await router.create_accounts([Account(i, "USD", 1, o, 0, "") for i, o in owners.items()])
        fund = [Transfer(f"f-{i}", "b2" if o == "bank-a" else "a2", i, 100, "USD", 1)
                for i, o in owners.items() if i in ("a1", "b1")]
        await router.create_transfers(fund)

        def by_a(transfer_id: str, debit: str, credit: str, flags: int = 0) -> Transfer:
            return Transfer(transfer_id, debit, credit, 10, "USD", 1, "", flags,
                            key_id="ka", participant_id="bank-a")
        outcomes = await router.create_transfers([
            by_a("x1", "a1", "b1"), by_a("x2", "b1", "a1"),
            by_a("x3", "b2", "a1", BALANCING_DEBIT),
            by_a("c1", "a1", "b2", LINKED), by_a("c2", "b1", "a2"),  # a chain, b1 is not a's
        ])
        return [outcome[0] for outcome in outcomes]  # type: ignore[index]

    assert asyncio.run(scenario()) == ["ok", "forbidden", "forbidden", "linked_event_failed",
                                       "forbidden"]


def test_registry_commands_on_a_host(hosts: list[ShardHost]) -> None:
    from tests.actors.test_host import call

    host = hosts[0]
    (created,) = call(host, [CreateParticipant(Participant("bank-a", "A", ["USD"]), "op")])
    assert created.result == "ok" and created.participant.timestamp > 0
    (made, revoked) = call(host, [CreateKey(key("k1"), "op"), RevokeKey("k1", "op")])
    assert made.result == "ok" and revoked.result == "ok" and revoked.key.revoked
    (status,) = call(host, [SetParticipantStatus("bank-a", DISABLED, "op", True)])
    assert status.result == "ok" and status.participant.status == DISABLED
    (view,) = call(host, [GetRegistry(0)])
    assert isinstance(view, RegistryView) and view.version == 4
    assert [k.key_id for k in view.keys or []] == ["k1"]
    (same,) = call(host, [GetRegistry(4)])
    assert same.participants is None and same.keys is None
