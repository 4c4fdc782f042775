"""Participants and API keys: who may act on the switch, kept in the ledger's log (pure).

The registry lives on one shard (`REGISTRY_SHARD`): its events are recorded in that shard's
hash-chained log like any other, with the acting key and the time, so every privileged change
is audited where money movements are. Only a hash of a key's secret is ever recorded; the
secret is made and shown by the ingress (switch/api/keys.py) and never reaches a shard.

A participant's status is also known to every shard (`disabled`): a shard refuses to debit
an account whose owner is disabled, so the router sends a status change to every shard.
"""

from __future__ import annotations

from enum import StrEnum

import msgspec

REGISTRY_SHARD = 0  # participants and keys live in this shard's log

OPERATOR, PARTICIPANT, AUDITOR = "operator", "participant", "auditor"
ROLES = (OPERATOR, PARTICIPANT, AUDITOR)
ACTIVE, DISABLED = "active", "disabled"
STATUSES = (ACTIVE, DISABLED)
SYSTEM = "system"  # the acting key of changes made at start-up or offline (no key yet)
ALARM_PERCENT_MIN, ALARM_PERCENT_MAX = 1, 100


class Participant(msgspec.Struct, array_like=True, frozen=True, gc=False):
    id: str
    name: str
    ledgers: list[str]
    status: str = ACTIVE
    timestamp: int = 0
    # Per ledger: the share of its net debit cap at which its position raises the NDC alarm
    # (a ledger not here: the switch's `hub.alarm_percent`). Records format 5 on.
    alarm_percents: dict[str, int] = msgspec.field(default_factory=dict)


class ApiKey(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A key as stored: its secret only as a hash (switch/api/keys.py makes and checks it)."""

    key_id: str
    role: str
    participant_id: str  # "" unless the role is participant
    secret_hash: bytes
    timestamp: int = 0
    revoked_at: int = 0  # 0: in force
    requests_per_second: int = 0  # its rate limit; 0: the switch's (auth.requests_per_second)
    burst: int = 0  # 0: the switch's (auth.burst)

    @property
    def revoked(self) -> bool:
        return self.revoked_at != 0


class RegistryResult(StrEnum):
    ok = "ok"
    unchanged = "unchanged"  # the same status again, or a key already revoked
    role_invalid = "role_invalid"
    status_invalid = "status_invalid"
    ledger_unknown = "ledger_unknown"
    participant_not_found = "participant_not_found"
    key_not_found = "key_not_found"
    exists_with_different_name = "exists_with_different_name"
    exists_with_different_ledgers = "exists_with_different_ledgers"
    exists = "exists"
    ledger_not_enabled = "ledger_not_enabled"  # an alarm on a ledger the participant is not on
    percent_invalid = "percent_invalid"  # an alarm threshold outside 1..100


class Registry:
    """Participants and keys by id, and the ids of disabled participants (on every shard).
    `version` counts the changes, so a reader asks only for what changed since it last read."""

    def __init__(self) -> None:
        self.participants: dict[str, Participant] = {}
        self.keys: dict[str, ApiKey] = {}
        self.disabled: set[str] = set()
        self.version = 0

    # ---- decisions (read-only) ----

    def check_participant(self, participant: Participant, ledgers: frozenset[str]
                          ) -> RegistryResult:
        if any(ledger not in ledgers for ledger in participant.ledgers):
            return RegistryResult.ledger_unknown
        existing = self.participants.get(participant.id)
        if existing is None:
            return RegistryResult.ok
        if existing.name != participant.name:
            return RegistryResult.exists_with_different_name
        if sorted(existing.ledgers) != sorted(participant.ledgers):
            return RegistryResult.exists_with_different_ledgers
        return RegistryResult.exists

    def check_status(self, participant_id: str, status: str, registry: bool) -> RegistryResult:
        """`registry`: this shard keeps the registry (else it keeps only who is disabled)."""
        if status not in STATUSES:
            return RegistryResult.status_invalid
        if registry:
            existing = self.participants.get(participant_id)
            if existing is None:
                return RegistryResult.participant_not_found
            if existing.status == status:
                return RegistryResult.unchanged
            return RegistryResult.ok
        disabled = participant_id in self.disabled
        return RegistryResult.unchanged if disabled == (status == DISABLED) \
            else RegistryResult.ok

    def check_key(self, key: ApiKey) -> RegistryResult:
        if key.role not in ROLES or (key.role == PARTICIPANT) != bool(key.participant_id):
            return RegistryResult.role_invalid
        if key.role == PARTICIPANT and key.participant_id not in self.participants:
            return RegistryResult.participant_not_found
        if key.key_id in self.keys:
            return RegistryResult.exists
        return RegistryResult.ok

    def check_revoke(self, key_id: str) -> RegistryResult:
        key = self.keys.get(key_id)
        if key is None:
            return RegistryResult.key_not_found
        return RegistryResult.unchanged if key.revoked else RegistryResult.ok

    def check_alarm(self, participant_id: str, ledger: str, percent: int) -> RegistryResult:
        existing = self.participants.get(participant_id)
        if existing is None:
            return RegistryResult.participant_not_found
        if ledger not in existing.ledgers:
            return RegistryResult.ledger_not_enabled
        if not ALARM_PERCENT_MIN <= percent <= ALARM_PERCENT_MAX:
            return RegistryResult.percent_invalid
        if existing.alarm_percents.get(ledger) == percent:
            return RegistryResult.unchanged
        return RegistryResult.ok

    # ---- changes (from events) ----

    def add_participant(self, participant: Participant) -> None:
        if participant.id in self.participants:
            raise AssertionError(f"participant {participant.id} created twice")
        self.participants[participant.id] = participant
        self.version += 1

    def set_status(self, participant_id: str, status: str) -> None:
        existing = self.participants.get(participant_id)
        if existing is not None:
            self.participants[participant_id] = msgspec.structs.replace(existing, status=status)
        if status == DISABLED:
            self.disabled.add(participant_id)
        else:
            self.disabled.discard(participant_id)
        self.version += 1

    def set_alarm_percent(self, participant_id: str, ledger: str, percent: int) -> None:
        existing = self.participants[participant_id]
        self.participants[participant_id] = msgspec.structs.replace(
            existing, alarm_percents={**existing.alarm_percents, ledger: percent})
        self.version += 1

    def add_key(self, key: ApiKey) -> None:
        if key.key_id in self.keys:
            raise AssertionError(f"key {key.key_id} created twice")
        self.keys[key.key_id] = key
        self.version += 1

    def revoke(self, key_id: str, timestamp: int) -> None:
        self.keys[key_id] = msgspec.structs.replace(self.keys[key_id], revoked_at=timestamp)
        self.version += 1


class RegistryState(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """The registry as a snapshot holds it."""

    participants: list[Participant]
    keys: list[ApiKey]
    disabled: list[str]
    version: int

    @classmethod
    def of(cls, registry: Registry) -> RegistryState:
        return cls(list(registry.participants.values()), list(registry.keys.values()),
                   sorted(registry.disabled), registry.version)

    def restore(self, registry: Registry) -> None:
        registry.participants = {p.id: p for p in self.participants}
        registry.keys = {k.key_id: k for k in self.keys}
        registry.disabled = set(self.disabled)
        registry.version = self.version
