"""What each command does on a shard: decide with the ledger, record the events, reply.

One handler per command type (actors/messages.py); the host runs them in order inside a
batch. Handlers stamp what they create with the host's clock and record the events the
ledger returns, so later commands in the batch see them.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from msgspec.structs import replace

from actors.ledger import queries
from actors.ledger.chains import ChainPart
from actors.ledger.codes import TRANSFER_RESULTS
from actors.ledger.events import Event
from actors.ledger.model import BALANCING
from actors.messages import (
    AccountReply,
    AccountTransfers,
    AccountView,
    Applied,
    BalanceHistory,
    BalancePage,
    ChainVerdict,
    ClaimPending,
    ClaimReply,
    ClaimsReply,
    Command,
    Commit,
    CommitChain,
    CreateAccount,
    CreateKey,
    CreateParticipant,
    Finalize,
    FinalizeClaim,
    FreezeSlot,
    GetAccount,
    GetPendingStatus,
    GetRegistry,
    GetSlotMoves,
    GetTotals,
    GetTransfer,
    ImportSlot,
    InDoubtReply,
    ListClaims,
    ListInDoubt,
    ListSettling,
    PartProbed,
    PartsReply,
    PendingStatusReply,
    ProbePart,
    RecordNdcAlarm,
    RegistryReply,
    RegistryView,
    ReleaseSlot,
    Reply,
    Reserve,
    ReserveChain,
    ReserveReply,
    Resolve,
    ResolveChain,
    RevokeKey,
    SetAlarmThreshold,
    SetLimits,
    SetParticipantStatus,
    Settle,
    SettleDone,
    SettlingReply,
    SlotMovesView,
    SlotReply,
    Stage,
    ThawSlot,
    TotalsReply,
    TransferPage,
    TransferReply,
    TransferView,
    VerdictReply,
)
from actors.shard.chain_ops import ChainOps

if TYPE_CHECKING:
    from actors.shard.host import ShardHost

Handler = Callable[[Any, list[Event]], Reply]


class CommandTable:
    def __init__(self, host: ShardHost) -> None:
        self.host = host
        self._handlers: dict[type, Handler] = {
            CreateAccount: self._create_account, SetLimits: self._set_limits,
            Commit: self._commit, Reserve: self._reserve, Stage: self._stage,
            ProbePart: self._probe_part,
            ReserveChain: self._reserve_chain, CommitChain: self._commit_chain,
            ResolveChain: self._resolve_chain, Finalize: self._finalize,
            Resolve: self._resolve, ClaimPending: self._claim,
            FinalizeClaim: self._finalize_claim, Settle: self._settle,
            GetPendingStatus: self._pending_status,
            ListClaims: self._claims, ListInDoubt: self._in_doubt,
            GetAccount: self._get_account, GetTransfer: self._get_transfer,
            AccountTransfers: self._account_transfers, BalanceHistory: self._balances,
            GetTotals: self._totals, ListSettling: self._settling, SettleDone: self._settle_done,
            CreateParticipant: self._create_participant,
            SetParticipantStatus: self._participant_status,
            CreateKey: self._create_key, RevokeKey: self._revoke_key,
            SetAlarmThreshold: self._alarm_threshold, RecordNdcAlarm: self._ndc_alarm,
            GetRegistry: self._registry,
            FreezeSlot: self._freeze_slot, ImportSlot: self._import_slot,
            ReleaseSlot: self._release_slot, ThawSlot: self._thaw_slot,
            GetSlotMoves: self._slot_moves,
        }

    def run(self, command: Command, events: list[Event]) -> Reply:
        return self._handlers[type(command)](command, events)

    @property
    def _chains(self) -> ChainOps:
        """On the current ledger (a failed batch replaces it)."""
        host = self.host
        return ChainOps(host.ledger, host.next_timestamp, host.record)

    def _since(self, min_age_ms: int) -> int:
        return self.host.last_timestamp_ns - min_age_ms * 1_000_000

    # ---- writes ----

    def _create_account(self, command: CreateAccount, events: list[Event]) -> AccountReply:
        host, ledger = self.host, self.host.ledger
        account = replace(command.account, timestamp=host.next_timestamp())
        result, new_events = ledger.create_account(account, command.limits, command.key_id,
                                                    command.participant_id, command.quota_share)
        host.record(new_events, events)
        if result == "forbidden":  # another's: not shown
            return AccountReply(result)
        return self._account_reply(result, account.id)

    def _set_limits(self, command: SetLimits, events: list[Event]) -> AccountReply:
        host = self.host
        result, new_events = host.ledger.set_limits(command.account_id, command.limits,
                                                    host.next_timestamp(), command.key_id)
        host.record(new_events, events)
        return self._account_reply(result, command.account_id)

    def _account_reply(self, result: str, account_id: str) -> AccountReply:
        view = self._view(account_id)
        return AccountReply(result, view.account, view.limits)

    def _commit(self, command: Commit, events: list[Event]) -> TransferReply:
        host = self.host
        transfer = command.transfer.stamped(host.next_timestamp())
        result, new_events, stored = host.ledger.commit_transfer(
            transfer, command.roles, TRANSFER_RESULTS[command.remote], command.attempt,
            command.remote_rules, command.pending)
        host.record(new_events, events)
        return TransferReply(result, stored)

    def _reserve(self, command: Reserve, events: list[Event]) -> ReserveReply:
        host = self.host
        if command.transfer.flags & BALANCING:  # no objection but its rules, amount held
            (part,) = self._chains.reserve_parts("", command.attempt, [
                ChainPart(command.transfer, command.roles, 0)], events)
            return ReserveReply(part.result, part.held, part.rules)
        transfer = command.transfer.stamped(host.next_timestamp())
        result, new_events, _ = host.ledger.reserve_transfer(transfer, command.roles,
                                                             command.attempt)
        host.record(new_events, events)
        return ReserveReply(result)

    def _stage(self, command: Stage, events: list[Event]) -> TransferReply:
        host = self.host
        transfer = command.transfer.stamped(host.next_timestamp())
        result, new_events, staged = host.ledger.stage_transfer(transfer, command.roles,
                                                                command.attempt)
        host.record(new_events, events)
        return TransferReply(result, staged)

    def _probe_part(self, command: ProbePart, events: list[Event]) -> PartProbed:
        """A write when it fences: the fence is durable before recovery hears "absent"."""
        present, new_events = self.host.ledger.probe_part(command.transfer_id, command.attempt)
        self.host.record(new_events, events)
        return PartProbed(present)

    def _reserve_chain(self, command: ReserveChain, events: list[Event]) -> PartsReply:
        parts = self._chains.reserve_parts(command.chain, command.attempt, command.parts, events)
        return PartsReply([part.reply() for part in parts])

    def _commit_chain(self, command: CommitChain, events: list[Event]) -> Reply:
        return self._chains.commit_chain(command, events)

    def _finalize(self, command: Finalize, events: list[Event]) -> Applied:
        host = self.host
        host.next_timestamp()
        new_events = host.ledger.finalize_reservation(
            command.transfer_id, command.attempt, command.outcome, command.timestamp,
            command.amount, command.resolving)
        host.record(new_events, events)
        return Applied(bool(new_events))

    def _claim(self, command: ClaimPending, events: list[Event]) -> ClaimReply:
        host = self.host
        resolving = command.resolving.stamped(host.next_timestamp())
        result, new_events, pending = host.ledger.claim_pending(resolving, command.attempt)
        host.record(new_events, events)
        return ClaimReply(result, pending)

    def _finalize_claim(self, command: FinalizeClaim, events: list[Event]) -> Applied:
        new_events = self.host.ledger.finalize_claim(command.pending_id, command.resolving_id,
                                                     command.attempt, command.resolution)
        self.host.record(new_events, events)
        return Applied(bool(new_events))

    def _settle(self, command: Settle, events: list[Event]) -> Applied:
        new_events = self.host.ledger.settle_held(command.pending_id, command.post,
                                                  command.amount, command.resolution)
        self.host.record(new_events, events)
        return Applied(bool(new_events))

    def _settle_done(self, command: SettleDone, events: list[Event]) -> Applied:
        new_events = self.host.ledger.settled(command.pending_ids)
        self.host.record(new_events, events)
        return Applied(bool(new_events))

    # ---- slot moves ----

    def _freeze_slot(self, command: FreezeSlot, events: list[Event]) -> SlotReply:
        self.host.next_timestamp()
        result, new_events, state, waiting = self.host.ledger.freeze_slot(
            command.slot, command.slots, command.to_shard, command.epoch, command.account)
        self.host.record(new_events, events)
        return SlotReply(result, state, waiting)

    def _import_slot(self, command: ImportSlot, events: list[Event]) -> SlotReply:
        self.host.next_timestamp()
        result, new_events = self.host.ledger.import_slot(
            command.slot, command.slots, command.from_shard, command.epoch, command.state,
            command.account, command.pinned)
        self.host.record(new_events, events)
        return SlotReply(result)

    def _release_slot(self, command: ReleaseSlot, events: list[Event]) -> SlotReply:
        self.host.next_timestamp()
        result, new_events = self.host.ledger.release_slot(
            command.slot, command.to_shard, command.epoch, command.account, command.pinned,
            command.homed_count)
        self.host.record(new_events, events)
        return SlotReply(result)

    def _thaw_slot(self, command: ThawSlot, events: list[Event]) -> SlotReply:
        self.host.next_timestamp()
        result, new_events = self.host.ledger.thaw_slot(command.slot, command.account)
        self.host.record(new_events, events)
        return SlotReply(result)

    def _slot_moves(self, command: GetSlotMoves, events: list[Event]) -> SlotMovesView:
        moves = self.host.ledger.slot_moves
        return SlotMovesView(dict(moves.frozen), dict(moves.moved), dict(moves.adopted),
                             dict(moves.frozen_accounts), dict(moves.moved_accounts),
                             dict(moves.adopted_accounts))

    # ---- the registry ----

    def _create_participant(self, command: CreateParticipant, events: list[Event]
                            ) -> RegistryReply:
        host, registry = self.host, self.host.ledger.registry
        participant = replace(command.participant, timestamp=host.next_timestamp())
        result, new_events = host.ledger.create_participant(participant, command.key_id)
        host.record(new_events, events)
        return RegistryReply(result, registry.participants.get(participant.id))

    def _participant_status(self, command: SetParticipantStatus, events: list[Event]
                            ) -> RegistryReply:
        host = self.host
        result, new_events = host.ledger.set_participant_status(
            command.participant_id, command.status, host.next_timestamp(), command.key_id,
            command.registry)
        host.record(new_events, events)
        return RegistryReply(result, host.ledger.registry.participants.get(
            command.participant_id))

    def _alarm_threshold(self, command: SetAlarmThreshold, events: list[Event]
                         ) -> RegistryReply:
        host = self.host
        result, new_events = host.ledger.set_alarm_threshold(
            command.participant_id, command.ledger, command.percent, host.next_timestamp(),
            command.key_id)
        host.record(new_events, events)
        return RegistryReply(result, host.ledger.registry.participants.get(
            command.participant_id))

    def _ndc_alarm(self, command: RecordNdcAlarm, events: list[Event]) -> RegistryReply:
        host = self.host
        alarm = replace(command.alarm, timestamp=host.next_timestamp())
        result, new_events = host.ledger.record_ndc_alarm(alarm)
        host.record(new_events, events)
        return RegistryReply(result)

    def _create_key(self, command: CreateKey, events: list[Event]) -> RegistryReply:
        host = self.host
        key = replace(command.key, timestamp=host.next_timestamp())
        result, new_events = host.ledger.create_key(key, command.key_id)
        host.record(new_events, events)
        return RegistryReply(result, key=host.ledger.registry.keys.get(key.key_id))

    def _revoke_key(self, command: RevokeKey, events: list[Event]) -> RegistryReply:
        host = self.host
        result, new_events = host.ledger.revoke_key(command.revoked_key_id,
                                                    host.next_timestamp(), command.key_id)
        host.record(new_events, events)
        return RegistryReply(result, key=host.ledger.registry.keys.get(command.revoked_key_id))

    # ---- reads (they record nothing; a resolve records a fence) ----

    def _registry(self, command: GetRegistry, events: list[Event]) -> RegistryView:
        registry = self.host.ledger.registry
        if registry.version == command.known_version:
            return RegistryView(registry.version, None, None)
        return RegistryView(registry.version, list(registry.participants.values()),
                            list(registry.keys.values()))

    def _resolve(self, command: Resolve, events: list[Event]) -> VerdictReply:
        """A write when it fences: the fence is durable before redrive hears "void"."""
        verdict, new_events = self.host.ledger.resolve(command.transfer_id, command.attempt)
        self.host.record(new_events, events)
        return VerdictReply(verdict)

    def _resolve_chain(self, command: ResolveChain, events: list[Event]) -> ChainVerdict:
        decision, new_events = self.host.ledger.resolve_chain(command.chain, command.attempt)
        self.host.record(new_events, events)
        return ChainVerdict(decision)

    def _pending_status(self, command: GetPendingStatus, events: list[Event]
                        ) -> PendingStatusReply:
        return PendingStatusReply(self.host.ledger.pending_status(command.pending_id))

    def _claims(self, command: ListClaims, events: list[Event]) -> ClaimsReply:
        return ClaimsReply(queries.claims_in_doubt(self.host.ledger))

    def _in_doubt(self, command: ListInDoubt, events: list[Event]) -> InDoubtReply:
        return InDoubtReply(queries.in_doubt(self.host.ledger, self._since(command.min_age_ms)))

    def _get_account(self, command: GetAccount, events: list[Event]) -> AccountView:
        return self._view(command.account_id)

    def _view(self, account_id: str) -> AccountView:
        ledger = self.host.ledger
        account = ledger.accounts.get(account_id)
        if account is None:
            return AccountView(None)
        return AccountView(account, ledger.limits.get(account_id))

    def _get_transfer(self, command: GetTransfer, events: list[Event]) -> TransferView:
        ledger = self.host.ledger
        transfer = ledger.stored(command.transfer_id)
        if transfer is None:
            return TransferView(None)
        return TransferView(transfer, ledger.pending_status(command.transfer_id))

    def _account_transfers(self, command: AccountTransfers, events: list[Event]
                           ) -> TransferPage:
        limit = max(1, min(command.limit, self.host.config.history_page_max))
        account = self.host.ledger.accounts.get(command.account_id)
        head = account.history_head if account is not None else 0
        page, following = self.host.ledger.store.history(command.account_id, head, limit,
                                                         command.before)
        return TransferPage(page, following)

    def _balances(self, command: BalanceHistory, events: list[Event]) -> BalancePage:
        ledger = self.host.ledger
        account = ledger.accounts.get(command.account_id)
        if account is None:
            return BalancePage(None, [], None)
        limit = max(1, min(command.limit, self.host.config.history_page_max))
        points, following = ledger.store.balance_history(command.account_id, command.since_ns,
                                                         command.until_ns, limit)
        return BalancePage(account, points, following)

    def _settling(self, command: ListSettling, events: list[Event]) -> SettlingReply:
        return SettlingReply(queries.settling(self.host.ledger, self._since(command.min_age_ms)))

    def _totals(self, command: GetTotals, events: list[Event]) -> TotalsReply:
        return TotalsReply(queries.totals(self.host.ledger))
