"""The ledger's decisions: pure, deterministic functions of (state, command, timestamp).

Each decision takes the command (already stamped with the switch's timestamp), reads state
without changing it, and returns a result code and the events to record; `apply` (in
actors/ledger/state.py) is the only code that changes state, for live events and for events
read back from the log alike.

A shard holds part of the ledger. For a transfer it may hold the *home* role (the transfer
id's slot: the id index, the durable commit decision) and the debit and/or credit role (the
accounts). A transfer whose roles all live on one shard is committed in one event; otherwise
its home stages it (`stage_transfer`) while the other roles are reserved (pending), and the
home's decision then commits it and the reservations are posted or voided; a balancing
transfer, a post or a void has its remote roles reserved first and then commits at its
home (docs/ARCHITECTURE.md, "Cross-shard transfers").
"""

from __future__ import annotations

import heapq

import msgspec

import actors.ledger.pending as pending_rules
from actors.ledger import slots as slots_core
from actors.ledger.balancing import (
    Rule,
    credit_rules,
    debit_rules,
    decide,
    most_allowed,
    rule,
)
from actors.ledger.chains import ChainFunds
from actors.ledger.codes import AccountResult, LimitsResult, TransferResult, first_failure
from actors.ledger.events import (
    AccountCreated,
    AlarmThresholdSet,
    AttemptFenced,
    ChainCommitted,
    Claim,
    Event,
    HeldSettled,
    KeyCreated,
    KeyRevoked,
    LimitsChanged,
    NdcAlarm,
    PartCommitted,
    ParticipantCreated,
    ParticipantStatusChanged,
    PendingClaimed,
    PendingClaimReleased,
    PendingExpired,
    PendingResolved,
    PendingSettled,
    ReservationHeld,
    ReservationPosted,
    ReservationVoided,
    SlotFrozen,
    SlotImported,
    SlotMovedOut,
    SlotThawed,
    TransferCommitted,
    TransferReserved,
)
from actors.ledger.exists import account_exists, transfer_exists
from actors.ledger.limits import Limits
from actors.ledger.model import (
    ACCOUNT_FLAGS_ALL,
    BALANCE_MAX,
    BALANCING,
    BALANCING_CREDIT,
    CLOSED,
    CLOSING_CREDIT,
    CREDITS_MUST_NOT_EXCEED_DEBITS,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    PENDING,
    POST_PENDING,
    RESOLVES_PENDING,
    Account,
    Roles,
    Transfer,
)
from actors.ledger.parts import Reservation, SlotState
from actors.ledger.pending import PENDING_STATUS, POSTED, VOIDED, PendingState
from actors.ledger.registry import ApiKey, Participant, RegistryResult
from actors.ledger.state import LedgerState
from actors.ledger.store import ChainDecision

# What a reservation becomes once its transfer's home has decided.
POST, VOID, HOLD = "post", "void", "hold"
STAGED = "staged"  # the home's answer for an attempt staged there and not yet decided

_DEBITS_LIMITED = DEBITS_MUST_NOT_EXCEED_CREDITS
_CREDIT_OWNED_ONLY = CLOSING_CREDIT | BALANCING_CREDIT
_CREDITS_LIMITED = CREDITS_MUST_NOT_EXCEED_DEBITS
_CLOSED = CLOSED
_DEBIT = Roles.debit
_CREDIT = Roles.credit
_BOTH = Roles.both
_HOME = Roles.home
_R = TransferResult
_OK = TransferResult.ok


class Verdict(msgspec.Struct, array_like=True, frozen=True, gc=False):
    """What a transfer's home says about one attempt's parts: post, hold (a pending transfer)
    or void; for post and hold, the committed transfer (its timestamp and amount). `staged`:
    the attempt is staged there, undecided (redrive decides it from its parts first)."""

    outcome: str
    transfer: Transfer | None = None


def check_transfer_static(transfer: Transfer) -> TransferResult:
    """The checks that need no state; the router runs them before routing anything."""
    return pending_rules.check_static(transfer)


class Ledger(LedgerState):
    # ---- decisions (read-only) ----

    def create_account(self, account: Account, limits: Limits | None = None, key_id: str = "",
                       participant_id: str = "", quota_share: int = -1
                       ) -> tuple[AccountResult, list[Event]]:
        """Create an account, with its limits when given (both, or neither); `key_id`: the
        key that asked, recorded with it; `participant_id`: the participant it asked for
        ("": the operator). What a participant may create is the ingress's check; here, that
        an id taken by another owner tells it nothing. `quota_share`: how many accounts of
        the participant this shard may hold (-1: `accounts_per_participant_max`)."""
        flags = account.flags
        if flags & ~ACCOUNT_FLAGS_ALL or (flags & _DEBITS_LIMITED and flags & _CREDITS_LIMITED):
            return AccountResult.flags_invalid, []
        if limits is not None and not limits.valid():
            return AccountResult.limits_invalid, []
        if account.ledger not in self.ledgers:
            return AccountResult.ledger_unknown, []
        existing = self.accounts.get(account.id)
        if existing is not None:
            if participant_id and existing.owner != participant_id:
                return AccountResult.forbidden, []
            return account_exists(existing, account), []
        quota = self.accounts_per_participant_max if quota_share < 0 else quota_share
        if participant_id and quota and self.accounts.owned(account.owner) >= quota:
            return AccountResult.account_quota_exceeded, []
        if account.timestamp <= 0:
            raise ValueError(f"account {account.id} is not stamped")
        events: list[Event] = [AccountCreated(account, key_id)]
        if limits is not None and limits != Limits():
            events.append(LimitsChanged(account.id, limits, account.timestamp, key_id))
        return AccountResult.ok, events

    def set_limits(self, account_id: str, limits: Limits, timestamp: int, key_id: str = ""
                   ) -> tuple[LimitsResult, list[Event]]:
        if account_id not in self.accounts:
            return LimitsResult.account_not_found, []
        if not limits.valid():
            return LimitsResult.limits_invalid, []
        if self.limits.get(account_id, Limits()) == limits:
            return LimitsResult.unchanged, []
        return LimitsResult.ok, [LimitsChanged(account_id, limits, timestamp, key_id)]

    # ---- the registry (actors/ledger/registry.py) ----

    def create_participant(self, participant: Participant, key_id: str
                           ) -> tuple[RegistryResult, list[Event]]:
        result = self.registry.check_participant(participant, self.ledgers)
        if result is not RegistryResult.ok:
            return result, []
        return result, [ParticipantCreated(participant, key_id)]

    def set_participant_status(self, participant_id: str, status: str, timestamp: int,
                               key_id: str, registry: bool) -> tuple[RegistryResult, list[Event]]:
        result = self.registry.check_status(participant_id, status, registry)
        if result is not RegistryResult.ok:
            return result, []
        return result, [ParticipantStatusChanged(participant_id, status, timestamp, key_id)]

    def set_alarm_threshold(self, participant_id: str, ledger: str, percent: int,
                            timestamp: int, key_id: str) -> tuple[RegistryResult, list[Event]]:
        result = self.registry.check_alarm(participant_id, ledger, percent)
        if result is not RegistryResult.ok:
            return result, []
        return result, [AlarmThresholdSet(participant_id, ledger, percent, timestamp, key_id)]

    def record_ndc_alarm(self, alarm: NdcAlarm) -> tuple[RegistryResult, list[Event]]:
        if alarm.participant_id not in self.registry.participants:
            return RegistryResult.participant_not_found, []
        return RegistryResult.ok, [alarm]

    def create_key(self, key: ApiKey, key_id: str) -> tuple[RegistryResult, list[Event]]:
        result = self.registry.check_key(key)
        if result is not RegistryResult.ok:
            return result, []
        return result, [KeyCreated(key, key_id)]

    def revoke_key(self, revoked_key_id: str, timestamp: int, key_id: str
                   ) -> tuple[RegistryResult, list[Event]]:
        result = self.registry.check_revoke(revoked_key_id)
        if result is not RegistryResult.ok:
            return result, []
        return result, [KeyRevoked(revoked_key_id, timestamp, key_id)]

    def commit_transfer(
        self, transfer: Transfer, roles: int, remote: TransferResult, attempt: int = 0,
        remote_rules: list[Rule] | None = None, pending: Transfer | None = None,
    ) -> tuple[TransferResult, list[Event], Transfer | None]:
        """Decide a transfer at its home: the id check, the local roles, the remote verdict.

        `attempt` names the cross-shard attempt whose reservations this decision settles (0 for
        a transfer wholly on this shard); `remote_rules`, for a balancing transfer, those of
        its remote parts; `pending`, for a post or void, its pending transfer as claimed (what
        the post or void leaves out is filled from it). Returns the stored transfer for `ok`
        and `exists*`.
        """
        static = check_transfer_static(transfer)
        if static is not _R.ok:
            return static, [], None
        existing = self.stored(transfer.id)
        if existing is not None:
            return repeat_of(existing, transfer), [], existing
        if transfer.id in self.reservations:  # a linked chain's member, not yet decided
            return _R.in_flight, [], None
        if attempt and self.is_fenced(transfer.id, attempt):  # redrive voided its parts
            return _R.in_flight, [], None
        if transfer.flags & RESOLVES_PENDING:
            transfer = pending_rules.filled(transfer, pending)
        if transfer.flags & BALANCING:
            rules = self.balancing_rules(transfer, roles) + (remote_rules or [])
            result, amount = decide(transfer.amount, rules)
            if result is _OK and amount < transfer.amount:
                transfer = transfer.resized(amount)
        else:
            result = self._check_roles(transfer, roles)
        result = first_failure(result, remote)
        if result is not _OK:
            return result, [], None
        if transfer.timestamp <= 0:
            raise ValueError(f"transfer {transfer.id} is not stamped")
        return _OK, [TransferCommitted(transfer, roles, attempt)], transfer

    def reserve_transfer(
        self, transfer: Transfer, roles: int, attempt: int, chain: str = "", member: int = 0,
        funds: ChainFunds | None = None,
    ) -> tuple[TransferResult, list[Event], Transfer | None]:
        """Check and hold this shard's roles of a cross-shard transfer (or of a linked chain's
        member: `roles` may include its home, `funds` what earlier members hold) as pending.
        Returns the stored transfer when the home part finds the id taken."""
        if roles & _HOME:
            existing = self.stored(transfer.id)
            if existing is not None:
                return repeat_of(existing, transfer), [], existing
        if transfer.id in self.reservations:
            return _R.in_flight, [], None
        if attempt and not chain and self.is_fenced(transfer.id, attempt):
            return _R.in_flight, [], None  # recovery decided this attempt without this part
        result, transfer = self._checked(transfer, roles, funds)
        if result is not _OK:
            return result, [], None
        return _OK, [TransferReserved(transfer, roles, attempt, chain, member)], None

    def stage_transfer(self, transfer: Transfer, roles: int, attempt: int
                       ) -> tuple[TransferResult, list[Event], Transfer | None]:
        """At its home, a cross-shard transfer's own part, in the same round as its parts
        elsewhere are reserved: the id is checked and held, and this shard's roles are
        checked and held pending. Once this and every part are durable the transfer is
        committed; the decision recorded here afterwards only follows (see `probe_part` and
        docs/ARCHITECTURE.md, "Cross-shard transfers"). Returns the stored transfer for
        `exists*`, the staged one for ok."""
        static = check_transfer_static(transfer)
        if static is not _R.ok:
            return static, [], None
        result, events, stored = self.reserve_transfer(transfer, roles | _HOME, attempt)
        return result, events, stored if result is not _OK else transfer

    def probe_part(self, transfer_id: str, attempt: int) -> tuple[bool, list[Event]]:
        """Recovery asks a part of a staged transfer: is this attempt's part here (reserved,
        held, or already posted)? If not, it is fenced (the events returned): a reservation
        for it arriving late is refused, so the answer stays true."""
        # Posted first: while the home is staged, only this attempt can have posted here (a
        # retry's reservation may sit beside it, its home refusing it `in_flight`).
        if self.stored(transfer_id) is not None:
            return True, []
        reservation = self.reservations.get(transfer_id)
        if reservation is not None and reservation.attempt == attempt:
            return True, []
        return False, self._fence(transfer_id, attempt)

    def decide_chain(self, chain: str, attempt: int, timestamps: list[int], amounts: list[int],
                     resolving: list[Transfer | None]) -> list[Event]:
        """At the coordinator, every member ok: the chain commits (each member at its time,
        with its amount: less than asked for a balancing member; a post or void as stored,
        with what it left out filled from its pending transfer)."""
        if self.store.chain(chain) is not None:
            raise ValueError(f"chain {chain} decided twice")
        return [ChainCommitted(chain, attempt, timestamps, amounts, resolving)]

    def resolve_chain(self, chain: str, attempt: int
                      ) -> tuple[ChainDecision | None, list[Event]]:
        """The decision if this attempt of the chain committed, else None (void). Void for a
        chain not decided at all fences the attempt (its events): it never commits later."""
        decision = self.store.chain(chain)
        if decision is not None:
            return (decision if decision.attempt == attempt else None), []
        return None, self._fence(chain, attempt, chain=True)

    def _fence(self, key: str, attempt: int, chain: bool = False) -> list[Event]:
        if self.is_fenced(key, attempt, chain):
            return []
        return [AttemptFenced(key, attempt, chain)]

    def finalize_reservation(
        self, transfer_id: str, attempt: int, outcome: str, timestamp: int, amount: int = 0,
        resolving: Transfer | None = None,
    ) -> list[Event]:
        """Post, void or hold (a pending transfer) a part once its home has decided; a repeat
        changes nothing. `amount`: what the transfer moves, if less than held (balancing);
        `resolving`: a chain's post or void as stored (filled from its pending transfer)."""
        if outcome not in (POST, VOID, HOLD):
            raise ValueError(f"{transfer_id}: a part finalized as {outcome!r}")
        reservation = self.reservations.get(transfer_id)
        if reservation is None or reservation.attempt != attempt or reservation.held:
            return []
        if outcome == VOID:
            return [ReservationVoided(transfer_id, reservation.transfer)]
        if reservation.roles & _HOME and not reservation.chain:
            # A staged transfer's decision: it commits as staged (stamped then; a pending one
            # is held by the commit itself), so `outcome` post or hold and `timestamp` agree.
            return [TransferCommitted(reservation.transfer, reservation.roles & _BOTH, attempt)]
        if reservation.roles & _HOME:  # a chain member's home: commit it here
            return [PartCommitted(transfer_id, timestamp, amount, resolving)]
        if outcome == POST:
            return [ReservationPosted(transfer_id, timestamp, amount)]
        return [ReservationHeld(transfer_id, amount)]

    def resolve(self, transfer_id: str, attempt: int) -> tuple[Verdict, list[Event]]:
        """At the home: what becomes of this attempt's parts.

        The attempt, not the fields, decides: a retry with identical fields reserves too, is
        told `exists`, and its reservation must be voided, never posted a second time. Void
        for an id not committed at all fences the attempt (the events returned): its commit,
        should it still arrive (a dropped connection's, another ingress's), is refused.
        """
        stored = self.store.transfer(transfer_id)
        if stored is None:
            if self.staged(transfer_id, attempt) is not None:  # undecided: ask its parts
                return Verdict(STAGED), []
            return Verdict(VOID), self._fence(transfer_id, attempt)
        if stored.commit_attempt and stored.commit_attempt == attempt:
            committed = stored.transfer
            return Verdict(HOLD if committed.flags & PENDING else POST, committed), []
        return Verdict(VOID), []

    def settled(self, pending_ids: list[str]) -> list[Event]:
        """Every held part of these (final) pending transfers is settled: stop tracking them."""
        present = [pending_id for pending_id in pending_ids if pending_id in self.settling]
        return [PendingSettled(present)] if present else []

    # ---- two-phase: at the pending transfer's home, and at its parts ----

    def claim_pending(
        self, resolving: Transfer, attempt: int, chain: str = "", member: int = 0
    ) -> tuple[TransferResult, list[Event], Transfer | None]:
        """May this post or void take its pending transfer? On ok the pending transfer is
        locked for it (durably) until its home decides (its linked chain's coordinator, for
        a chain's member: the claim then keeps the post or void as it will be stored)."""
        pending = self.stored(resolving.pending_id)
        if pending is None and self.is_staged(resolving.pending_id):
            return _R.in_flight, [], None  # answered ok, its decision not recorded yet
        state = self.pending.get(resolving.pending_id)
        if state is None:
            final = self.store.pending_final(resolving.pending_id)
            state = None if final is None else PendingState(final.status, 0)
        result, amount = pending_rules.check_claim(pending, state, resolving,
                                                   resolving.timestamp)
        if result is not _OK:
            return result, [], pending
        post = bool(resolving.flags & POST_PENDING)
        filled = pending_rules.filled(resolving, pending).unstamped() if chain else None
        claim = Claim(resolving.id, attempt, post, amount, chain, member, filled)
        return _OK, [PendingClaimed(resolving.pending_id, claim)], pending

    def finalize_claim(
        self, pending_id: str, resolving_id: str, attempt: int, resolution: Transfer | None
    ) -> list[Event]:
        """The post or void was committed (as `resolution`) or not (None): record it at the
        pending transfer's home. A repeat, or another attempt's, changes nothing."""
        state = self.pending.get(pending_id)
        claim = None if state is None else state.claim
        if claim is None or claim.resolving_id != resolving_id or claim.attempt != attempt:
            return []
        if resolution is None:
            return [PendingClaimReleased(pending_id)]
        status = POSTED if claim.post else VOIDED
        return [PendingResolved(pending_id, status, claim.amount, resolution)]

    def settle_held(
        self, pending_id: str, post: bool, amount: int, resolution: Transfer | None
    ) -> list[Event]:
        """Post (the amount given) or release this shard's held part of a pending transfer."""
        reservation = self.reservations.get(pending_id)
        if reservation is None or not reservation.held:
            return []
        return [HeldSettled(pending_id, post, amount, resolution)]

    def expire_due(self, now_ns: int) -> list[Event]:
        """Pending transfers whose timeout has passed, and that nobody is resolving: expire."""
        events: list[Event] = []
        expiring: set[str] = set()
        moves = self.slot_moves
        while self._expiries and self._expiries[0][0] <= now_ns:
            _, pending_id = heapq.heappop(self._expiries)
            if (moves.frozen or moves.frozen_accounts) and moves.leaving(pending_id):
                continue  # its new home expires it (or this one, when the move is given up)
            state = self.pending.get(pending_id)  # gone from memory once final
            # The heap may hold a transfer twice (pushed again when a claim was released);
            # these events are not applied yet, so the state alone cannot tell: expire once.
            if state is not None and state.status == PENDING_STATUS and state.claim is None \
                    and pending_id not in expiring:
                expiring.add(pending_id)
                events.append(PendingExpired(pending_id))
        return events

    # ---- slot moves and pins (actors/ledger/slots.py) ----

    def freeze_slot(self, slot: int, slots: int, to_shard: int, epoch: int, account: str = ""
                    ) -> tuple[str, list[Event], SlotState | None, int]:
        """A move's first step here: (result, events, what moves, how many things about it
        are in doubt). A pin (`account`) moves that account alone. Asked again for a move
        frozen already, it sends the state again (a mover that stopped half way resumes)."""
        moves = self.slot_moves
        if (account in moves.moved_accounts) if account else (slot in moves.moved):
            return "slot_moved", [], None, 0
        running = moves.running()
        if running and [(s, a, to) for s, a, to, _ in running] != [
                (-1 if account else slot, account, to_shard)]:
            return "slot_move_running", [], None, 0
        if account and not running:
            refused = self._unpinnable(account)
            if refused:
                return refused, [], None, 0
        in_unit = moves.unit(slot, account, slots)
        events: list[Event] = []
        if not running:
            waiting = slots_core.in_doubt(self, in_unit)
            if waiting:
                return "slot_busy", [], None, waiting
            events.append(SlotFrozen(slot, slots, to_shard, epoch, account))
        return "ok", events, slots_core.export(self, in_unit), 0

    def _unpinnable(self, account: str) -> str:
        """Why this account cannot move alone: it is not here, or its id is also a transfer's
        or a chain's key here (a pin places everything keyed by the id: that would move)."""
        if account not in self.accounts:
            return "account_not_found"
        if self.slot_moves.pinned_here(account):
            return ""  # pinned already: whatever is keyed by its id lives here with it
        if self.store.transfer(account) is not None or self.store.chain(account) is not None \
                or account in self.pending or account in self.reservations:
            return "account_id_shared"
        return ""

    def import_slot(self, slot: int, slots: int, from_shard: int, epoch: int, state: SlotState,
                    account: str = "", pinned: bool = True) -> tuple[str, list[Event]]:
        moves = self.slot_moves
        adopted = moves.adopted_accounts.get(account, (0, True))[0] if account \
            else moves.adopted.get(slot)
        if adopted == epoch:
            return "ok", []  # imported already (the mover asks again after a stop)
        if any(moved.id in self.accounts for moved in state.accounts):
            return "slot_conflict", []
        if account and not pinned and (slot in moves.frozen or slot in moves.moved):
            return "slot_move_running", []  # unpinned to a shard its slot is leaving or left
        if any(self._holds_otherwise(part) for part in state.reservations):
            return "slot_busy", []  # a part of the same transfer here waits for a decision
        return "ok", [SlotImported(slot, slots, from_shard, epoch, state, account, pinned)]

    def _holds_otherwise(self, part: Reservation) -> bool:
        """This shard holds a part of the same transfer that cannot be joined with it: one
        of another attempt, one in doubt, or one of the same side."""
        here = self.reservations.get(part.transfer.id)
        return here is not None and (here.attempt != part.attempt or not here.held
                                     or bool(here.roles & part.roles) or here.chain != part.chain)

    def release_slot(self, slot: int, to_shard: int, epoch: int, account: str = "",
                     pinned: bool = True, homed_count: int = 0) -> tuple[str, list[Event]]:
        moves = self.slot_moves
        gone = moves.moved_accounts.get(account, (-1, True))[0] if account \
            else moves.moved.get(slot)
        if gone == to_shard:
            return "ok", []
        frozen = moves.frozen_accounts.get(account) if account else moves.frozen.get(slot)
        if frozen != (to_shard, epoch):
            return "slot_not_frozen", []
        return "ok", [SlotMovedOut(slot, to_shard, epoch, account, pinned, homed_count)]

    def thaw_slot(self, slot: int, account: str = "") -> tuple[str, list[Event]]:
        moves = self.slot_moves
        if (account not in moves.frozen_accounts) if account else (slot not in moves.frozen):
            return "slot_not_frozen", []
        return "ok", [SlotThawed(slot, account)]

    def _checked(self, transfer: Transfer, roles: int, funds: ChainFunds | None = None
                 ) -> tuple[TransferResult, Transfer]:
        """The checks of this shard's roles, and the transfer as this shard would hold it: a
        balancing transfer with no more than its rules here let through (its answer, and the
        amount that moves, are decided where all its rules meet; see actors/balancing.py)."""
        if not transfer.flags & BALANCING:
            return self._check_roles(transfer, roles, funds), transfer
        rules = self.balancing_rules(transfer, roles, funds)
        held = most_allowed(transfer.amount, rules)
        if held < 1:
            return decide(transfer.amount, rules)[0], transfer
        return _OK, transfer.resized(held) if held < transfer.amount else transfer

    def balancing_rules(self, transfer: Transfer, roles: int, funds: ChainFunds | None = None
                        ) -> list[Rule]:
        """This shard's sides of a balancing transfer as rules (actors/balancing.py), in the
        order of `_check_debit` and `_check_credit`."""
        rules: list[Rule] = []
        if roles & _DEBIT:
            account_id = transfer.debit_account_id
            account = self.accounts.get(account_id)
            refused = self._debit_refused(transfer, account) if account is not None else None
            rules += [rule(refused, 0)] if refused is not None else debit_rules(
                transfer, account, self.limits.get(account_id), self.velocity.get(account_id),
                funds.credits.get(account_id, 0) if funds else 0)
        if roles & _CREDIT:
            account_id = transfer.credit_account_id
            account = self.accounts.get(account_id)
            refused = _credit_refused(transfer, account) if account is not None else None
            rules += [rule(refused, 0)] if refused is not None else credit_rules(
                transfer, account, funds.debits.get(account_id, 0) if funds else 0)
        return rules

    def _check_roles(self, transfer: Transfer, roles: int, funds: ChainFunds | None = None
                     ) -> TransferResult:
        if funds is None:
            debit = self._check_debit(transfer) if roles & _DEBIT else _OK
            if roles & _CREDIT:
                return first_failure(debit, self._check_credit(transfer))
            return debit
        debit = self._check_debit(transfer, funds.credits.get(transfer.debit_account_id, 0)) \
            if roles & _DEBIT else _OK
        if roles & _CREDIT:
            return first_failure(debit, self._check_credit(
                transfer, funds.debits.get(transfer.credit_account_id, 0)))
        return debit

    def _check_debit(self, transfer: Transfer, chain_credits: int = 0) -> TransferResult:
        account = self.accounts.get(transfer.debit_account_id)
        if account is None:
            return _R.debit_account_not_found
        refused = self._debit_refused(transfer, account)
        if refused is not None:
            return refused
        if account.ledger != transfer.ledger:
            return _R.ledger_mismatch
        if account.flags & _CLOSED:
            return _R.debit_account_closed
        debits = account.debits_posted + account.debits_pending + transfer.amount
        if debits > BALANCE_MAX:
            return _R.overflows_debits
        limits = self.limits.get(account.id)
        credits = account.credits_posted + chain_credits
        if limits is None:
            if account.flags & _DEBITS_LIMITED and debits > credits:
                return _R.exceeds_credits
            return _R.ok
        if limits.transfer_max and transfer.amount > limits.transfer_max:
            return _R.exceeds_transfer_max
        if account.flags & _DEBITS_LIMITED and debits > credits + limits.overdraft:
            return _R.exceeds_credits
        if limits.velocity_max:
            horizon = transfer.timestamp - limits.velocity_window_ms * 1_000_000
            recent = self.velocity[account.id].sum_since(horizon)
            if recent + transfer.amount > limits.velocity_max:
                return _R.exceeds_velocity_limit
        return _R.ok

    def _debit_refused(self, transfer: Transfer, account: Account) -> TransferResult | None:
        """Who may debit it: a participant only its own accounts; nobody a disabled
        participant's."""
        if transfer.participant_id and account.owner != transfer.participant_id:
            return _R.forbidden
        if account.owner in self.registry.disabled:
            return _R.debit_participant_disabled
        return None

    def _check_credit(self, transfer: Transfer, chain_debits: int = 0) -> TransferResult:
        account = self.accounts.get(transfer.credit_account_id)
        if account is None:
            return _R.credit_account_not_found
        refused = _credit_refused(transfer, account)
        if refused is not None:
            return refused
        if account.ledger != transfer.ledger:
            return _R.ledger_mismatch
        if account.flags & _CLOSED:
            return _R.credit_account_closed
        credits = account.credits_posted + account.credits_pending + transfer.amount
        if credits > BALANCE_MAX:
            return _R.overflows_credits
        if account.flags & _CREDITS_LIMITED and credits > account.debits_posted + chain_debits:
            return _R.exceeds_debits
        return _R.ok


def _credit_refused(transfer: Transfer, account: Account) -> TransferResult | None:
    """A participant credits any account, but closes (closing_credit) or balances against
    (balancing_credit: its amount would tell the account's position) only its own."""
    if transfer.participant_id and transfer.flags & _CREDIT_OWNED_ONLY \
            and account.owner != transfer.participant_id:
        return _R.forbidden
    return None


def repeat_of(existing: Transfer, transfer: Transfer) -> TransferResult:
    """A transfer sent again: `exists` or its first difference. A post or void compares as
    stored, what it leaves out being the stored one's (a repeat that names another pending
    transfer answers exists_with_different_pending_id). Another participant's transfer is
    `forbidden`: its fields are not told."""
    if transfer.participant_id and existing.participant_id != transfer.participant_id:
        return _R.forbidden
    if transfer.flags & RESOLVES_PENDING:
        transfer = pending_rules.filled(transfer, existing)
    return transfer_exists(existing, transfer)

