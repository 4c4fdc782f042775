"""The commands the router sends a shard, and the shard's replies: the whole wire protocol.

One call carries a batch of commands; the shard replies with one `BatchReply`: a reply per
command, in order, or the reason the whole batch was refused (then nothing of it applied).
Each command and reply is a tagged msgspec Struct declared once here and encoded and
decoded through this declaration (actors/codec.py): nobody reads protocol data by position.
Transfers cross as `Transfer` values whose timestamp is 0 until their home stamps them.
"""

from __future__ import annotations

from typing import TypeVar

import msgspec

from actors.ledger.balancing import Rule
from actors.ledger.chains import ChainPart
from actors.ledger.events import NdcAlarm
from actors.ledger.ledger import Verdict
from actors.ledger.limits import Limits
from actors.ledger.model import Account, Transfer
from actors.ledger.parts import SlotState
from actors.ledger.pending import PendingStatus
from actors.ledger.queries import ClaimInDoubt, LedgerTotals, PartInDoubt, Settling
from actors.ledger.registry import ApiKey, Participant
from actors.ledger.store import Balances, ChainDecision


class _Message(msgspec.Struct, array_like=True, gc=False):
    pass


# ---- commands that write ----

class CreateAccount(_Message, tag="account"):
    account: Account  # timestamp 0: the shard stamps it
    limits: Limits | None = None
    key_id: str = ""  # who asked (recorded)
    participant_id: str = ""  # for whom ("": the operator)
    # A participant's accounts this shard may hold, its share of the quota by the slots it
    # holds as the router knows them (-1: the shard's own share; 0: no quota)
    quota_share: int = -1


class SetLimits(_Message, tag="limits"):
    account_id: str
    limits: Limits
    key_id: str = ""  # who asked (recorded)


# ---- the registry (at REGISTRY_SHARD; a status change at every shard) ----

class CreateParticipant(_Message, tag="create_participant"):
    participant: Participant  # timestamp 0: the shard stamps it
    key_id: str


class SetParticipantStatus(_Message, tag="participant_status"):
    participant_id: str
    status: str
    key_id: str
    registry: bool  # sent to the registry's shard (else: a shard that only blocks debits)


class SetAlarmThreshold(_Message, tag="alarm_threshold"):
    participant_id: str
    ledger: str
    percent: int
    key_id: str


class RecordNdcAlarm(_Message, tag="record_ndc_alarm"):
    """At the registry's shard: a position seen above its alarm threshold (its timestamp
    is the shard's)."""

    alarm: NdcAlarm


class CreateKey(_Message, tag="create_key"):
    key: ApiKey  # timestamp 0: the shard stamps it
    key_id: str


class RevokeKey(_Message, tag="revoke_key"):
    revoked_key_id: str
    key_id: str


class GetRegistry(_Message, tag="get_registry"):
    known_version: int  # the reader's: answered with nothing when nothing changed since


class Commit(_Message, tag="commit"):
    """At the transfer's home: decide it (and post or hold the sides held there)."""

    transfer: Transfer
    roles: int
    remote: str = "ok"  # the lowest-ranked verdict of its parts elsewhere
    attempt: int = 0  # the cross-shard attempt (0: wholly on this shard)
    remote_rules: list[Rule] | None = None  # a balancing transfer's rules elsewhere
    pending: Transfer | None = None  # a post's or void's pending transfer, as claimed


class Reserve(_Message, tag="reserve"):
    """A part of a cross-shard transfer, held pending until its home decides."""

    transfer: Transfer
    roles: int
    attempt: int


class Stage(_Message, tag="stage"):
    """At a cross-shard transfer's home, in the same round as its `Reserve`s: check and hold
    the id and the home's own sides (answered with a TransferReply: the staged transfer)."""

    transfer: Transfer
    roles: int  # the home's own sides (debit and/or credit, or none)
    attempt: int


class ReserveChain(_Message, tag="reserve_chain"):
    chain: str
    attempt: int
    parts: list[ChainPart]


class Asked(_Message):
    """Per chain member, for its coordinator: the amount asked, its balancing rules on the
    other shards (None: not balancing), and a post's or void's fields as stored if its claim
    was taken on another shard."""

    amount: int
    rules: list[Rule] | None
    filled: Transfer | None = None


class CommitChain(_Message, tag="commit_chain"):
    chain: str
    attempt: int
    parts: list[ChainPart]  # the coordinator's own parts
    verdicts: list[str]  # each member's verdict on the other shards
    asked: list[Asked]


class ResolveChain(_Message, tag="resolve_chain"):
    chain: str
    attempt: int


class Finalize(_Message, tag="finalize"):
    transfer_id: str
    attempt: int
    outcome: str  # post, void or hold
    timestamp: int  # the commit's
    amount: int = 0  # what it moved if less than held; 0: as held
    resolving: Transfer | None = None  # a chain's post or void as stored


class Resolve(_Message, tag="resolve"):
    transfer_id: str
    attempt: int


class ProbePart(_Message, tag="probe_part"):
    """Recovery of a staged transfer: is this attempt's part here? If not, fence it."""

    transfer_id: str
    attempt: int
    # The sides the prober expects here: a shard that gave their slot away must not answer
    # "absent" for them (the part may be on the slot's new shard).
    accounts: list[str] = []


class ClaimPending(_Message, tag="claim"):
    resolving: Transfer  # a post or void
    attempt: int


class FinalizeClaim(_Message, tag="finalize_claim"):
    pending_id: str
    resolving_id: str
    attempt: int
    resolution: Transfer | None  # the post or void as committed; None: not committed


class Settle(_Message, tag="settle"):
    pending_id: str
    post: bool
    amount: int
    resolution: Transfer | None
    # The sides the sender expects this shard to hold ([]: not said): a shard that gave one
    # away in a slot move refuses, saying where it went, rather than settle only the other.
    accounts: list[str] = []


# ---- commands that read ----

# ---- slot moves (actors/ledger/slots.py; switch/routing/slot_move.py drives them) ----

class FreezeSlot(_Message, tag="freeze_slot"):
    """At the slot's shard: stop serving it and send what it holds (or say it is busy)."""

    slot: int
    slots: int
    to_shard: int
    epoch: int
    account: str = ""  # a pin: this account alone, not its slot


class ImportSlot(_Message, tag="import_slot"):
    slot: int
    slots: int
    from_shard: int
    epoch: int
    state: SlotState
    account: str = ""
    pinned: bool = True  # an account's: pinned there (else unpinned: to its slot's shard)


class ReleaseSlot(_Message, tag="release_slot"):
    slot: int
    to_shard: int
    epoch: int
    account: str = ""
    pinned: bool = True
    homed_count: int = 0  # as the freeze's state said


class ThawSlot(_Message, tag="thaw_slot"):
    slot: int
    account: str = ""


class GetSlotMoves(_Message, tag="slot_moves"):
    pass


class GetPendingStatus(_Message, tag="pending_status"):
    pending_id: str


class ListClaims(_Message, tag="claims"):
    min_age_ms: int


class ListInDoubt(_Message, tag="in_doubt"):
    min_age_ms: int


class GetAccount(_Message, tag="get_account"):
    account_id: str


class GetTransfer(_Message, tag="get_transfer"):
    transfer_id: str


class AccountTransfers(_Message, tag="account_transfers"):
    account_id: str
    limit: int
    before: int | None = None


class BalanceHistory(_Message, tag="balance_history"):
    account_id: str
    since_ns: int
    until_ns: int
    limit: int


class GetTotals(_Message, tag="totals"):
    pass


class ListSettling(_Message, tag="settling"):
    min_age_ms: int


class SettleDone(_Message, tag="settle_done"):
    """At pending transfers' home: every shard holding a part of them answered its Settle."""

    pending_ids: list[str]


Command = (CreateAccount | SetLimits | CreateParticipant | SetParticipantStatus | CreateKey
           | RevokeKey | SetAlarmThreshold | RecordNdcAlarm | GetRegistry | Commit | Reserve
           | Stage | ProbePart | ReserveChain | CommitChain
           | ResolveChain | Finalize | Resolve | ClaimPending | FinalizeClaim | Settle
           | GetPendingStatus | ListClaims | ListInDoubt | GetAccount | GetTransfer
           | AccountTransfers | BalanceHistory | GetTotals | ListSettling | SettleDone
           | FreezeSlot | ImportSlot | ReleaseSlot | ThawSlot | GetSlotMoves)

# Commands that only read: never refused at a full queue, never written to the log.
READS = (GetPendingStatus, ListClaims, ListInDoubt, GetAccount, GetTransfer,
         AccountTransfers, BalanceHistory, GetTotals, ListSettling, GetRegistry, GetSlotMoves)


# ---- replies ----

class AccountReply(_Message, tag="account"):
    result: str
    account: Account | None = None
    limits: Limits | None = None


class TransferReply(_Message, tag="transfer"):
    """A transfer decided at its home: the result, and the stored transfer for ok and
    exists*."""

    result: str
    transfer: Transfer | None = None


class ReserveReply(_Message, tag="reserved"):
    result: str
    held: int | None = None  # a balancing part: the amount held (None: nothing held)
    rules: list[Rule] | None = None  # a balancing part: its rules here


class PartReply(_Message, tag="part"):
    """A chain member's part on one shard, reserved (or refused)."""

    result: str
    stored: Transfer | None  # a home part finding its id taken: the stored transfer
    held: int | None  # the amount its reservation holds (None: nothing reserved)
    rules: list[Rule]  # a balancing member's rules here
    filled: Transfer | None  # a post or void whose claim was taken here: as it will be stored


class PartsReply(_Message, tag="parts"):
    parts: list[PartReply]


class StoredMember(_Message):
    member: int
    transfer: Transfer


class ChainReply(_Message, tag="chain"):
    """The coordinator's answer: each member's code; the decision if the chain committed."""

    codes: list[str]
    decision: ChainDecision | None
    stored: list[StoredMember]  # members whose id was taken here: their stored transfer


class ChainVerdict(_Message, tag="chain_verdict"):
    decision: ChainDecision | None


class VerdictReply(_Message, tag="verdict"):
    verdict: Verdict


class PartProbed(_Message, tag="part_probed"):
    present: bool  # reserved, held or posted here; if not, now fenced


class Applied(_Message, tag="applied"):
    """A finalize, settle or claim's finalize: whether it changed anything."""

    applied: bool


class ClaimReply(_Message, tag="claimed"):
    result: str
    pending: Transfer | None = None


class PendingStatusReply(_Message, tag="pending_status"):
    status: PendingStatus | None


class ClaimsReply(_Message, tag="claims"):
    claims: list[ClaimInDoubt]


class InDoubtReply(_Message, tag="in_doubt"):
    parts: list[PartInDoubt]


class AccountView(_Message, tag="account_view"):
    account: Account | None
    limits: Limits | None = None


class TransferView(_Message, tag="transfer_view"):
    transfer: Transfer | None
    status: PendingStatus | None = None


class TransferPage(_Message, tag="transfer_page"):
    transfers: list[Transfer]
    next_position: int | None


class BalancePage(_Message, tag="balance_page"):
    account: Account | None  # None: no such account
    balances: list[Balances]
    next_since_ns: int | None


class TotalsReply(_Message, tag="totals"):
    totals: list[LedgerTotals]


class SettlingReply(_Message, tag="settling"):
    items: list[Settling]


class RegistryReply(_Message, tag="registry"):
    """A registry change's result, with the participant or key as it now stands."""

    result: str
    participant: Participant | None = None
    key: ApiKey | None = None


class RegistryView(_Message, tag="registry_view"):
    version: int
    participants: list[Participant] | None  # None: unchanged since the known version
    keys: list[ApiKey] | None


class Failed(_Message, tag="failed"):
    """This command was not applied (the rest of its batch was): internal_error (it raised:
    a bug, logged with its id) or storage_full (the log is full: only reads are answered)."""

    code: str
    message: str
    slot: int = -1  # slot_moving, slot_moved: the slot, and the shard it goes or went to
    shard: int = -1
    account: str = ""  # a pinned account's move: the account (then not its whole slot)
    pinned: bool = True  # that account pinned to `shard` (else unpinned: its slot is there)


class SlotReply(_Message, tag="slot"):
    """ok (with the slot's state, to a freeze), slot_busy (`in_doubt` things wait for a
    decision: ask again), slot_moved, slot_move_running, slot_not_frozen or slot_conflict."""

    result: str
    state: SlotState | None = None
    in_doubt: int = 0
    message: str = ""


class SlotMovesView(_Message, tag="slot_moves_view"):
    frozen: dict[int, tuple[int, int]]  # slot: (to shard, epoch)
    moved: dict[int, int]  # slot: the shard it went to
    adopted: dict[int, int]  # slot: the epoch it came here under
    frozen_accounts: dict[str, tuple[int, int]] = {}  # pins under way: account: (to, epoch)
    moved_accounts: dict[str, tuple[int, bool]] = {}  # accounts gone: (shard, pinned there)
    adopted_accounts: dict[str, tuple[int, bool]] = {}  # came alone: (epoch, pinned here)


Reply = (AccountReply | TransferReply | ReserveReply | PartsReply | ChainReply | ChainVerdict
         | VerdictReply | PartProbed | Applied | ClaimReply | PendingStatusReply | ClaimsReply
         | InDoubtReply | AccountView | TransferView | TransferPage | BalancePage | TotalsReply
         | SettlingReply | RegistryReply | RegistryView | SlotReply | SlotMovesView | Failed)


class BatchReply(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """A reply per command, in order; or, when the batch could not be committed, the code and
    message of why (and nothing of the batch was applied)."""

    replies: list[Reply]
    failed: str = ""  # "" when committed; else storage_full or internal_error
    message: str = ""


class FeedRecord(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """One committed log record, as the log feed serves it (payload as stored: the reader
    decodes it with actors.codec.decode_events)."""

    seq: int
    timestamp_ns: int
    payload: bytes


class LogFeed(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """Committed records from a position, for readers that must not open the shard's files
    (the event stream, the read model): served by the shard on its reads thread."""

    records: list[FeedRecord]
    last_seq: int  # the shard's last record when read: records beyond it are not there yet


FAILED_STORAGE_FULL = "storage_full"
# Replication: the shard's follower did not confirm, and the controller has not yet recorded
# it out of sync; nothing of the refused batch was applied (503, retry).
FAILED_REPLICA_UNAVAILABLE = "replica_unavailable"
FAILED_INTERNAL = "internal_error"
# Slot moves: the command is about a slot that is leaving this shard (503, retry), or has
# left it (the router learns where it went and asks there).
FAILED_SLOT_MOVING = "slot_moving"
FAILED_SLOT_MOVED = "slot_moved"


R = TypeVar("R")


def expect(reply: object, kind: type[R]) -> R:
    """A shard's reply as the type its command answers with; anything else is a bug, raised
    however Python runs (an assert would vanish under -O)."""
    if not isinstance(reply, kind):
        raise TypeError(f"expected {kind.__name__} from a shard, got {type(reply).__name__}")
    return reply
