"""The events the ledger records: the whole of what a log record holds, one type per kind.

Each event is a tagged msgspec Struct (the tag is its kind, the first element of its encoded
array), declared once here and decoded through this declaration by every reader: recovery,
the WAL tool, the event stream and the read model. `Ledger.apply` is the only code that
changes state from them. A field added later must have a default, so that older records
still decode (records also carry a format version: actors/codec.py).
"""

from __future__ import annotations

import msgspec

from actors.ledger.limits import Limits
from actors.ledger.model import DEBITS_MUST_NOT_EXCEED_CREDITS, Account, Transfer
from actors.ledger.parts import SlotState
from actors.ledger.pending import Claim as Claim  # defined beside PendingState
from actors.ledger.registry import ApiKey, Participant


class _Event(msgspec.Struct, array_like=True, gc=False):
    pass


class AccountCreated(_Event, tag="account_created"):
    account: Account
    key_id: str = ""  # the key that created it ("" before keys existed)


class TransferCommitted(_Event, tag="transfer_committed"):
    """At the transfer's home: the decision, and its sides held here posted (or held)."""

    transfer: Transfer
    roles: int
    attempt: int  # the cross-shard attempt whose parts it settles (0: wholly on this shard)


class TransferReserved(_Event, tag="transfer_reserved"):
    """A part of a cross-shard transfer (or of a linked chain's member) held pending here."""

    transfer: Transfer
    roles: int
    attempt: int
    chain: str = ""  # a linked chain's member: the chain's key (its first member's id)
    member: int = 0  # and its place in the chain


class ReservationPosted(_Event, tag="reservation_posted"):
    transfer_id: str
    timestamp: int  # the commit's, at the transfer's home
    amount: int = 0  # what it moved if less than held (balancing); 0: as held


class ReservationVoided(_Event, tag="reservation_voided"):
    transfer_id: str
    # Format 8: the part as it was reserved (None in older records). A refused transfer is
    # stored nowhere: this is how a participant's stream shows the release of what its
    # `transfer_reserved` showed.
    transfer: Transfer | None = None


class ReservationHeld(_Event, tag="reservation_held"):
    """A part of a pending transfer, now committed: held until the transfer is resolved."""

    transfer_id: str
    amount: int = 0  # 0: as reserved


class PendingClaimed(_Event, tag="pending_claimed"):
    pending_id: str
    claim: Claim


class PendingClaimReleased(_Event, tag="pending_claim_released"):
    pending_id: str


class PendingResolved(_Event, tag="pending_resolved"):
    pending_id: str
    status: str  # posted or voided
    amount_posted: int
    resolution: Transfer  # the post or void that resolved it, as stored


class PendingExpired(_Event, tag="pending_expired"):
    pending_id: str


class HeldSettled(_Event, tag="held_settled"):
    """A held part of a resolved pending transfer: posted (the amount given) or released."""

    pending_id: str
    post: bool
    amount: int
    resolution: Transfer | None  # the post or void, when known (always for a post)


class PendingSettled(_Event, tag="pending_settled"):
    """At pending transfers' home: their held parts are all settled (the router saw every
    part's shard answer): nothing more to do for them."""

    pending_ids: list[str]


class LimitsChanged(_Event, tag="limits_changed"):
    account_id: str
    limits: Limits
    timestamp: int
    key_id: str = ""  # the key that changed them ("" before keys existed)


# ---- the registry (actors/ledger/registry.py): each names the acting key and the time ----

class ParticipantCreated(_Event, tag="participant_created"):
    participant: Participant  # stamped
    key_id: str


class ParticipantStatusChanged(_Event, tag="participant_status_changed"):
    participant_id: str
    status: str
    timestamp: int
    key_id: str


class KeyCreated(_Event, tag="key_created"):
    key: ApiKey  # stamped; its secret only as a hash
    key_id: str  # the key that created it


class KeyRevoked(_Event, tag="key_revoked"):
    revoked_key_id: str
    timestamp: int
    key_id: str  # the key that revoked it


class AlarmThresholdSet(_Event, tag="alarm_threshold_set"):
    """A participant's NDC alarm threshold on one ledger (percent of its cap)."""

    participant_id: str
    ledger: str
    percent: int
    timestamp: int
    key_id: str


class NdcAlarm(_Event, tag="ndc_alarm"):
    """A participant's position crossed its alarm threshold upwards (switch/hub/watch.py):
    recorded so that it is on `/v1/events` for the participant and the operator."""

    participant_id: str
    ledger: str
    position: int
    net_debit_cap: int
    percent: int  # the threshold crossed
    timestamp: int
    key_id: str


class ChainCommitted(_Event, tag="chain_committed"):
    """At a linked chain's coordinator: the decision, with each member's timestamp and amount
    and, for a post or void member, its fields as stored."""

    chain: str
    attempt: int
    timestamps: list[int]
    amounts: list[int]
    resolving: list[Transfer | None]


class PartCommitted(_Event, tag="part_committed"):
    """A chain member's id part at its home, its chain committed: the member is committed."""

    transfer_id: str
    timestamp: int
    amount: int
    resolving: Transfer | None = None  # a post or void, filled from its pending transfer


class AttemptFenced(_Event, tag="attempt_fenced"):
    """At a transfer's home (a chain's coordinator): redrive was told this attempt is void,
    and voids its parts elsewhere; so it never commits here, whenever its commit arrives."""

    key: str  # the transfer's id, or the chain's key
    attempt: int
    chain: bool = False



# ---- slot moves (actors/ledger/slots.py) ----

class SlotFrozen(_Event, tag="slot_frozen"):
    """At the slot's shard: the slot is being moved to `to_shard` (as exported now): from
    here on this shard refuses every command about the slot (503, slot_moving)."""

    slot: int
    slots: int  # the topology's slot count: how ids are placed in slots
    to_shard: int
    epoch: int  # the topology epoch the move makes
    account: str = ""  # a pin: this account alone moves (`slot` is its slot), not the slot


class SlotThawed(_Event, tag="slot_thawed"):
    """A move given up before the slot left: this shard serves the slot again."""

    slot: int
    account: str = ""


class SlotImported(_Event, tag="slot_imported"):
    """At the slot's new shard: everything the old one held for it, from here on served."""

    slot: int
    slots: int
    from_shard: int
    epoch: int
    state: SlotState
    account: str = ""
    pinned: bool = True  # an account's: pinned here (else unpinned: back on its slot's shard)


class SlotMovedOut(_Event, tag="slot_moved_out"):
    """At the old shard, once the new one holds the slot: its live state here is let go of,
    and commands about it are answered with where it went."""

    slot: int
    to_shard: int
    epoch: int
    account: str = ""
    pinned: bool = True  # an account's: pinned there (else unpinned: back on its slot's shard)
    homed_count: int = 0  # transfers homed in what left (the shard's count goes down by it)


Event = (AccountCreated | TransferCommitted | TransferReserved | ReservationPosted
         | ReservationVoided | ReservationHeld | PendingClaimed | PendingClaimReleased
         | PendingResolved | PendingExpired | HeldSettled | LimitsChanged | ChainCommitted
         | PartCommitted | PendingSettled | ParticipantCreated | ParticipantStatusChanged
         | KeyCreated | KeyRevoked | AttemptFenced | AlarmThresholdSet | NdcAlarm | SlotFrozen
         | SlotThawed | SlotImported | SlotMovedOut)
EVENT_TYPES: tuple[type[_Event], ...] = (
    AccountCreated, TransferCommitted, TransferReserved, ReservationPosted, ReservationVoided,
    ReservationHeld, PendingClaimed, PendingClaimReleased, PendingResolved, PendingExpired,
    HeldSettled, LimitsChanged, ChainCommitted, PartCommitted, PendingSettled,
    ParticipantCreated, ParticipantStatusChanged, KeyCreated, KeyRevoked, AttemptFenced,
    AlarmThresholdSet, NdcAlarm, SlotFrozen, SlotThawed, SlotImported, SlotMovedOut)
SLOT_EVENTS = (SlotFrozen, SlotThawed, SlotImported, SlotMovedOut)  # a switch's own: no stream
REGISTRY_EVENTS = (ParticipantCreated, ParticipantStatusChanged, KeyCreated, KeyRevoked,
                   AlarmThresholdSet, NdcAlarm)


def kind_of(event: Event) -> str:
    """The event's kind, as the API and the WAL tool name it."""
    return str(event.__struct_config__.tag)


def transfer_id_of(event: Event) -> str:
    """The transfer an event is about ("" for an account's events)."""
    if isinstance(event, TransferCommitted | TransferReserved):
        return event.transfer.id
    if isinstance(event, ReservationPosted | ReservationVoided | ReservationHeld
                  | PartCommitted):
        return event.transfer_id
    if isinstance(event, PendingClaimed | PendingClaimReleased | PendingResolved
                  | PendingExpired | HeldSettled):
        return event.pending_id
    if isinstance(event, PendingSettled) and len(event.pending_ids) == 1:
        return event.pending_ids[0]
    if isinstance(event, AttemptFenced) and not event.chain:
        return event.key
    return ""


def is_privileged(event: Event) -> bool:
    """An action only an operator may take (`payswitch wal export --audit` lists them): a
    change to participants or keys, limits, or an account that may go negative."""
    if isinstance(event, (*REGISTRY_EVENTS, LimitsChanged)):
        return True
    return isinstance(event, AccountCreated) and not (
        event.account.flags & DEBITS_MUST_NOT_EXCEED_CREDITS)
