"""Payments between participants at the ingress: parties (aliases), quotes, immediate and
two-phase payments, and what a payment's state is (docs/SWITCH.md).

Who may do what is checked here, before anything moves: the payer's wallet is the caller's
(a participant) or any (the operator); a two-phase payment is fulfilled or aborted by its
payee's participant (or the operator). What the ledger checks itself (funds, the cap, an id
used twice) comes back as the legs' result codes.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from actors.ledger.model import PENDING, Account, Transfer
from actors.messages import AccountView, GetAccount, GetTransfer, TransferView, expect
from switch.api.errors import ApiError
from switch.cli.settings import HubSettings
from switch.hub.model import (
    FEE_LEG,
    POSITION_LEG,
    POST,
    WALLET_LEG,
    Payment,
    fee_of,
    party_account,
    party_id,
    payment_leg_id,
    payment_legs,
    payment_result,
    resolution_legs,
)
from switch.hub.model import chained as _chained
from switch.hub.quotes import Quote, new_nonce, seal, unseal
from switch.hub.service import Hub, result_of
from switch.hub.window_model import WINDOW_CODE, window_leg
from switch.hub.windows import Windows
from switch.routing.coalesce import TransferCoalescer

WINDOW_TRIES = 4
WINDOW_CLOSED = ("debit_account_closed", "credit_account_closed")
WINDOW_MISSING = ("debit_account_not_found", "credit_account_not_found")
STATES = {"pending": "prepared", "posted": "committed", "voided": "aborted",
          "expired": "expired"}


@dataclass(frozen=True)
class PaymentView:
    payment: Payment
    state: str  # prepared, committed, aborted or expired
    timestamp: int


@dataclass(frozen=True)
class PaymentTerms:
    """A payment as asked: its fields in full, or a quote (then the fields, when given, must
    be the quote's)."""

    id: str
    quote_id: str | None
    payer_account_id: str | None
    payee_account_id: str | None
    amount: int | None
    ledger: str | None
    two_phase: bool
    timeout_ms: int | None


class Payments:
    def __init__(self, hub: Hub, windows: Windows, settings: HubSettings,
                 key: Ed25519PrivateKey, coalescer: TransferCoalescer | None = None) -> None:
        """`coalescer`: the payments of one loop turn go to the router as one batch (as
        single transfers do: switch/routing/coalesce.py); without one, each alone."""
        self.hub = hub
        self.windows = windows
        self.settings = settings
        self.key = key
        self.coalescer = coalescer
        # Payments prepared here (oldest first): a fulfil or abort of one starts from what
        # was prepared instead of reading its wallet leg back (a shard round trip). Their
        # terms never change; their state is the ledger's to answer.
        self._prepared: OrderedDict[str, PaymentView] = OrderedDict()

    # ---- parties ----

    async def register_party(self, party_type: str, value: str, account_id: str,
                             caller_participant: str, key_id: str) -> str:
        if party_type == "ACCOUNT_ID" and value != account_id:
            raise ApiError(422, "alias_not_account_id")  # it would divert another's payments
        account = await self._account(account_id)
        if account is None or (caller_participant and account.owner != caller_participant):
            raise ApiError(422, "account_not_found")
        if not self.hub.enabled(account.owner, account.ledger):
            raise ApiError(422, "owner_not_enabled")
        (outcome,) = await self.hub.router.create_accounts(  # as the caller: its quota binds
            [party_account(party_type, value, account)], key_id=key_id,
            participant_id=caller_participant)
        result = result_of(outcome)
        taken = result == "forbidden" or result.startswith("exists_with_different_")
        return "party_taken" if taken else result  # (another's alias: nothing of it told)

    async def party(self, party_type: str, value: str) -> Account | None:
        """The account an alias names (None: no such alias)."""
        alias = await self._account(party_id(party_type, value))
        return None if alias is None else await self._account(alias.user_data)

    async def _account(self, account_id: str) -> Account | None:
        view = await self.hub.router.ask(self.hub.router.shard_of(account_id),
                                         GetAccount(account_id))
        return expect(view, AccountView).account

    # ---- quotes ----

    async def quote(self, payer_account_id: str, party_type: str, value: str, amount: int,
                    amount_type: str, ledger: str, caller_participant: str) -> tuple[str, Quote]:
        payee = await self.party(party_type, value)
        if payee is None:
            raise ApiError(404, "party_not_found")
        payer, payee_participant = await self._parties(payer_account_id, payee.id, ledger,
                                                       caller_participant)
        fee = fee_of(self.settings.fees.get(ledger, []), amount, payer, payee_participant)
        received = amount - fee if amount_type == "SEND" else amount
        if received <= 0:
            raise ApiError(422, "amount_below_fee")
        quote = Quote(new_nonce(), payer_account_id, payee.id, payer, payee_participant, ledger,
                      received, fee, time.time_ns() + self.settings.quote_expiry_ms * 1_000_000)
        return seal(quote, self.key), quote

    # ---- payments ----

    async def pay(self, terms: PaymentTerms, caller_participant: str, key_id: str
                  ) -> tuple[str, PaymentView | None]:
        """Make a payment (or prepare it, two-phase): its result code, and when it was made
        now (ok), the payment as made (no need to read it back)."""
        if terms.quote_id is not None:
            payment = await self._quoted(terms, caller_participant)
        else:
            assert terms.payer_account_id and terms.payee_account_id and terms.ledger
            assert terms.amount is not None
            payer, payee = await self._parties(terms.payer_account_id, terms.payee_account_id,
                                               terms.ledger, caller_participant)
            fee = fee_of(self.settings.fees.get(terms.ledger, []), terms.amount, payer, payee)
            payment = Payment(terms.id, terms.payer_account_id, terms.payee_account_id,
                              terms.amount, fee, terms.ledger, payer, payee)
        gross = payment.ledger in self.settings.gross_ledgers
        if terms.two_phase:  # its window leg comes with its fulfil: the window it commits in
            timeout_ms = terms.timeout_ms or self.settings.prepare_timeout_ms
            result, made = await self._send(payment, lambda _: payment_legs(
                payment, key_id, timeout_ms, gross))
        else:
            result, made = await self._send(payment, lambda number: payment_legs(
                payment, key_id, gross=gross) + self._window_leg(payment, number, key_id))
        if result != "ok" or made is None:
            return result, None
        made_view = PaymentView(payment, "prepared" if terms.two_phase else "committed",
                                made.timestamp)
        if terms.two_phase:
            self._keep_prepared(made_view)
        return result, made_view

    def _keep_prepared(self, view: PaymentView) -> None:
        kept = self._prepared
        if self.settings.prepared_kept_max == 0:
            return
        while len(kept) >= self.settings.prepared_kept_max:
            kept.popitem(last=False)  # (a dict's first key is slow to find after many dels)
        kept[view.payment.id] = view

    def _window_leg(self, payment: Payment, number: int, key_id: str) -> list[Transfer]:
        if payment.payer_participant == payment.payee_participant or \
                payment.ledger in self.settings.gross_ledgers:
            return []  # no position moves: nothing to settle between participants later
        return [window_leg(payment.id, payment.ledger, number, payment.payer_participant,
                           payment.payee_participant, payment.amount, payment.fee, key_id)]

    async def _send(self, payment: Payment, build: Callable[[int], list[Transfer]]
                    ) -> tuple[str, Transfer | None]:
        """Send a payment's chain, built for the open window. A window that closed meanwhile
        (its accounts refuse) or that has no account for a participant yet, or a repeat of a
        payment made in an earlier window: built again for the right one, and sent again.
        Answers the payment's result and its first leg as stored (None if not stored)."""
        number = await self.windows.open_window(payment.ledger)
        for _ in range(WINDOW_TRIES):
            legs = _chained(build(number))
            outcomes = (await self.coalescer.create_chain(legs) if self.coalescer is not None
                        else await self.hub.router.create_transfers(legs))
            results = [result_of(outcome) for outcome in outcomes]
            window = next((r for leg, r in zip(legs, results, strict=True)
                           if leg.code == WINDOW_CODE), None)
            if window in WINDOW_CLOSED:
                number = await self.windows.moved_on(payment.ledger, number)
            elif window in WINDOW_MISSING:
                number = await self.windows.accounts_in_open_window(payment.ledger, [
                    payment.payer_participant, payment.payee_participant])
            elif "exists" in results and any(r != "exists" for r in results) and \
                    (stored := await self._stored_window(payment.id)) not in (None, number):
                number = stored  # a repeat: the payment's window is the one it committed in
            else:
                break
        else:
            if window in WINDOW_CLOSED or window in WINDOW_MISSING:  # windows moving fast
                raise ApiError(503, "window_draining", retry_after_seconds=1)
        first = outcomes[0]
        stored = first[1] if not isinstance(first, BaseException) else None
        return payment_result(legs, results), stored if isinstance(stored, Transfer) else None

    async def _stored_window(self, payment_id: str) -> int | None:
        leg_id = payment_leg_id(payment_id, "window")
        view = expect(await self.hub.router.ask(self.hub.router.shard_of(leg_id),
                                                GetTransfer(leg_id)), TransferView)
        if view.transfer is None:
            return None
        return int(view.transfer.debit_account_id.split(":")[3])

    async def _quoted(self, terms: PaymentTerms, caller_participant: str) -> Payment:
        assert terms.quote_id is not None
        quote = unseal(terms.quote_id, self.key)
        if quote is None:
            raise ApiError(422, "quote_invalid")
        if caller_participant and quote.payer_participant != caller_participant:
            raise ApiError(422, "quote_invalid")  # another's quote tells nothing
        asked = (terms.payer_account_id, terms.payee_account_id, terms.amount, terms.ledger)
        quoted = (quote.payer_account_id, quote.payee_account_id, quote.amount, quote.ledger)
        if any(given is not None and given != agreed for given, agreed in zip(asked, quoted,
                                                                             strict=True)):
            raise ApiError(422, "quote_mismatch")
        if time.time_ns() > quote.expires_at and \
                not await self.hub.exists(payment_leg_id(terms.id, WALLET_LEG)):
            raise ApiError(422, "quote_expired")  # (a payment made in time answers exists)
        return Payment(terms.id, quote.payer_account_id, quote.payee_account_id, quote.amount,
                       quote.fee, quote.ledger, quote.payer_participant,
                       quote.payee_participant)

    async def _parties(self, payer_account_id: str, payee_account_id: str, ledger: str,
                       caller_participant: str) -> tuple[str, str]:
        """The participants owning the two wallets, checked: the caller's payer, both
        enabled on the ledger."""
        owners = await self.hub.visibility.owners([payer_account_id, payee_account_id])
        payer, payee = owners.get(payer_account_id), owners.get(payee_account_id)
        if payer is None or (caller_participant and payer != caller_participant):
            raise ApiError(422, "payer_account_not_found")
        if payee is None:
            raise ApiError(422, "payee_account_not_found")
        if not self.hub.enabled(payer, ledger):
            raise ApiError(422, "payer_not_enabled")
        if not self.hub.enabled(payee, ledger):
            raise ApiError(422, "payee_not_enabled")
        return payer, payee

    async def resolve(self, payment_id: str, how: str, caller_participant: str, key_id: str
                      ) -> tuple[str, PaymentView]:
        """Fulfil ("post") or abort ("void") a prepared payment, all its legs as one chain.
        Only its payee's participant (or the operator) may; to anyone else it does not
        exist."""
        view = self._prepared.get(payment_id) or await self.view(payment_id)
        if view is None or (caller_participant
                            and caller_participant != view.payment.payee_participant):
            raise ApiError(404, "payment_not_found")
        legs = [WALLET_LEG] + ([FEE_LEG] if view.payment.fee else []) + (
            [POSITION_LEG] if view.payment.payer_participant != view.payment.payee_participant
            else [])
        resolutions = resolution_legs(payment_id, legs, how, key_id)
        if how == POST:
            result, _ = await self._send(view.payment, lambda number: resolutions + (
                self._window_leg(view.payment, number, key_id)))
        else:
            outcomes = await self.hub.router.create_transfers(resolutions)
            result = payment_result(resolutions, [result_of(o) for o in outcomes])
        self._prepared.pop(payment_id, None)  # resolved, or refused: read it if asked again
        if result in ("ok", "exists"):  # as resolved: no need to read it back
            return result, PaymentView(view.payment, "committed" if how == POST else "aborted",
                                       view.timestamp)
        after = await self.view(payment_id)
        assert after is not None
        return result, after

    async def view(self, payment_id: str) -> PaymentView | None:
        leg_id = payment_leg_id(payment_id, WALLET_LEG)
        found = expect(await self.hub.router.ask(self.hub.router.shard_of(leg_id),
                                                 GetTransfer(leg_id)), TransferView)
        wallet = found.transfer
        if wallet is None:
            return None
        owners = await self.hub.visibility.owners([wallet.credit_account_id])
        state = "committed"
        if wallet.flags & PENDING:
            state = STATES[found.status.status] if found.status is not None else "prepared"
        payment = Payment(payment_id, wallet.debit_account_id, wallet.credit_account_id,
                          wallet.amount, int(wallet.user_data or 0), wallet.ledger,
                          wallet.participant_id, owners.get(wallet.credit_account_id) or "")
        return PaymentView(payment, state, wallet.timestamp)
