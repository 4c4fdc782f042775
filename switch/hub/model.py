"""The switch layer's model (pure): which ledger accounts a participant has on each of its
ledgers, and how a payment, a funds movement or a net debit cap becomes ledger transfers.

Everything here is made of the ledger's own accounts and transfers, so a payment inherits
the ledger's guarantees: a payment is one linked chain (all or nothing across shards, also
across a crash), idempotent by its id, durable before it is answered. docs/SWITCH.md
explains the model with a worked example.

Per participant P and ledger L (ids under the reserved prefix `hub:`, owner `hub:switch`):
- `hub:position:L:P:0`: the headroom under P's net debit cap. Credits: the cap given and
  what P's payees received; debits: what P's payers sent. Flag debits_must_not_exceed_credits,
  so a payment that would take P's position above its cap fails on this account, at its
  shard, exactly. Position = cap - headroom. The `:0` is the slice: one today; hot payers
  get one slice per shard later, each with a share of the headroom (docs/SWITCH.md).
- `hub:cap:L:P`: where the cap comes from. Its net debit is P's net debit cap.
- `hub:settlement:L:P`: the liquidity P prefunded (funds in and out, settlement).
Per ledger: `hub:reconciliation:L` (the other side of funds in and out),
`hub:multilateral:L` (the other side of settlements) and `hub:fees:L` (fees collected).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from msgspec.structs import replace

from actors.ledger.model import (
    CLOSED,
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    HISTORY,
    ID_RE,
    LINKED,
    PENDING,
    POST_PENDING,
    VOID_PENDING,
    Account,
    Transfer,
)
from actors.ledger.pending import UNSPECIFIED_CODE

RESERVED_PREFIX = "hub:"  # ids the switch layer makes; the public API refuses them
HUB_OWNER = "hub:switch"

# Account codes (TigerBeetle's `code`: what kind of account it is).
POSITION_CODE, CAP_CODE, SETTLEMENT_CODE = 9001, 9002, 9003
RECONCILIATION_CODE, MULTILATERAL_CODE, FEES_CODE, RESETS_CODE = 9011, 9012, 9013, 9014
# Transfer codes: what kind of movement it is.
PAYMENT_CODE, POSITION_MOVE_CODE, FUNDS_IN_CODE, FUNDS_OUT_CODE, CAP_CHANGE_CODE = (
    9101, 9102, 9103, 9104, 9105)
FEE_CODE = 9106
GROSS_SETTLEMENT_CODE = 9109  # a gross ledger's payment: settlement account to settlement account


def reserved(identifier: str) -> bool:
    """Is this id the switch layer's own (never created or moved through the public API)?"""
    return identifier.startswith(RESERVED_PREFIX)


def position_id(ledger: str, participant_id: str) -> str:
    return f"hub:position:{ledger}:{participant_id}:0"


def cap_id(ledger: str, participant_id: str) -> str:
    return f"hub:cap:{ledger}:{participant_id}"


def settlement_id(ledger: str, participant_id: str) -> str:
    return f"hub:settlement:{ledger}:{participant_id}"


def reconciliation_id(ledger: str) -> str:
    return f"hub:reconciliation:{ledger}"


def multilateral_id(ledger: str) -> str:
    return f"hub:multilateral:{ledger}"


def fees_id(ledger: str) -> str:
    return f"hub:fees:{ledger}"


def resets_id(ledger: str) -> str:
    """The other side of settlements' position resets (bookkeeping, no money)."""
    return f"hub:position-resets:{ledger}"


def hub_accounts(ledger: str) -> list[Account]:
    return [Account(reconciliation_id(ledger), ledger, RECONCILIATION_CODE, HUB_OWNER, 0, ""),
            # It pays creditors only what debtors paid in: it cannot go below zero.
            Account(multilateral_id(ledger), ledger, MULTILATERAL_CODE, HUB_OWNER,
                    DEBITS_MUST_NOT_EXCEED_CREDITS | HISTORY, ""),
            Account(fees_id(ledger), ledger, FEES_CODE, HUB_OWNER, HISTORY, ""),
            Account(resets_id(ledger), ledger, RESETS_CODE, HUB_OWNER, 0, "")]


def participant_accounts(participant_id: str, ledger: str) -> list[Account]:
    """What enabling a participant on a ledger creates (idempotent: the ids are fixed)."""
    guarded = DEBITS_MUST_NOT_EXCEED_CREDITS | HISTORY
    return [
        Account(position_id(ledger, participant_id), ledger, POSITION_CODE, HUB_OWNER, guarded,
                participant_id),
        Account(cap_id(ledger, participant_id), ledger, CAP_CODE, HUB_OWNER, HISTORY,
                participant_id),
        Account(settlement_id(ledger, participant_id), ledger, SETTLEMENT_CODE, HUB_OWNER,
                guarded, participant_id),
    ]


class FeeRule(Protocol):  # switch/cli/settings.py declares it (hub.fees)
    @property
    def fixed(self) -> int: ...
    @property
    def basis_points(self) -> int: ...
    @property
    def min(self) -> int: ...
    @property
    def max(self) -> int: ...
    @property
    def payer(self) -> str: ...
    @property
    def payee(self) -> str: ...


def fee_of(rules: Sequence[FeeRule], amount: int, payer: str, payee: str) -> int:
    """The fee on `amount` (minor units) under a ledger's rules: the payer and payee pair's
    rule if there is one, else the ledger's own, else none. Basis points round down."""
    rule = next((r for r in rules if (r.payer, r.payee) == (payer, payee)), None) or \
        next((r for r in rules if not r.payer), None)
    if rule is None:
        return 0
    fee = max(rule.fixed + amount * rule.basis_points // 10_000, rule.min)
    return min(fee, rule.max) if rule.max else fee


@dataclass(frozen=True)
class Payment:
    """A payment as agreed: the payee receives `amount`; the payer's wallet pays `amount +
    fee`. `payer_participant` and `payee_participant` own the wallets."""

    id: str
    payer_account_id: str
    payee_account_id: str
    amount: int
    fee: int
    ledger: str
    payer_participant: str
    payee_participant: str


WALLET_LEG, FEE_LEG, POSITION_LEG = "wallet", "fee", "position"
POST, VOID = "post", "void"


def payment_leg_id(payment_id: str, leg: str) -> str:
    return f"hub:payment:{payment_id}:{leg}"


def payment_legs(payment: Payment, key_id: str, timeout_ms: int = 0, gross: bool = False
                 ) -> list[Transfer]:
    """The linked chain of a payment: the wallets, the fee (when there is one), and (between
    two participants) the positions. With `timeout_ms`, every leg is pending (a two-phase
    payment's prepare) and expires with it. The wallet and fee legs carry the payer
    participant, so their shard checks that the payer owns the wallet they debit; the
    position leg is the switch's own move. The fee is recorded in the wallet leg's
    user_data, the payment's id in the position leg's (a window's report reads them). On a
    gross ledger the payment settles at once: the payer participant's settlement account
    pays the payee's, in place of the positions."""
    flags = PENDING if timeout_ms else 0
    legs = [Transfer(payment_leg_id(payment.id, WALLET_LEG), payment.payer_account_id,
                     payment.payee_account_id, payment.amount, payment.ledger, PAYMENT_CODE,
                     str(payment.fee), flags, "", timeout_ms, 0, key_id,
                     payment.payer_participant)]
    if payment.fee:
        legs.append(Transfer(payment_leg_id(payment.id, FEE_LEG), payment.payer_account_id,
                             fees_id(payment.ledger), payment.fee, payment.ledger, FEE_CODE,
                             payment.id, flags, "", timeout_ms, 0, key_id,
                             payment.payer_participant))
    if payment.payer_participant != payment.payee_participant:
        account_of, code = (settlement_id, GROSS_SETTLEMENT_CODE) if gross else (
            position_id, POSITION_MOVE_CODE)
        legs.append(Transfer(payment_leg_id(payment.id, POSITION_LEG),
                             account_of(payment.ledger, payment.payer_participant),
                             account_of(payment.ledger, payment.payee_participant),
                             payment.amount, payment.ledger, code, payment.id, flags, "",
                             timeout_ms, 0, key_id, ""))
    return chained(legs)


def resolution_legs(payment_id: str, legs: list[str], how: str, key_id: str) -> list[Transfer]:
    """Post (fulfil) or void (abort) each pending leg of a two-phase payment, as one chain."""
    flag = POST_PENDING if how == POST else VOID_PENDING
    return chained([Transfer(f"{payment_leg_id(payment_id, leg)}:{how}", "", "", 0, "",
                              UNSPECIFIED_CODE, "", flag, payment_leg_id(payment_id, leg), 0,
                              0, key_id, "") for leg in legs])


def chained(legs: list[Transfer]) -> list[Transfer]:
    """Legs as one linked chain: every one but the last carries the flag `linked`."""
    return [replace(leg, flags=leg.flags | LINKED) for leg in legs[:-1]] + legs[-1:]


def payment_result(legs: list[Transfer], results: list[str]) -> str:
    """One answer for a payment from its legs' results (a chain: all applied, all there
    before, or none). The leg that failed names why, and the others answer
    linked_event_failed; a refusal on the position account is the cap's. A chain that
    failed on a leg already there was made before with other legs: other terms."""
    if all(result == "exists" for result in results):
        return "exists"
    for leg, result in zip(legs, results, strict=True):
        if result in ("ok", "linked_event_failed"):
            continue
        if result == "exists":
            return "exists_with_different_terms"
        if leg.code == POSITION_MOVE_CODE and result == "exceeds_credits":
            return "exceeds_net_debit_cap"
        if leg.code == GROSS_SETTLEMENT_CODE and result == "exceeds_credits":
            return "exceeds_settlement_balance"
        return result
    return "ok"


@dataclass(frozen=True)
class Position:
    """A participant's standing on one ledger, from its three accounts' balances."""

    ledger: str
    net_debit_cap: int
    headroom: int  # what it may still send: cap - position, reservations taken off
    settlement_balance: int
    alarm_percent: int = 0  # its NDC alarm threshold, percent of the cap (0: not read)

    @property
    def position(self) -> int:
        """Its net obligation in the open window (positive: it owes)."""
        return self.net_debit_cap - self.headroom


def position_of(ledger: str, position: Account, cap: Account, settlement: Account
                ) -> Position:
    return Position(
        ledger,
        net_debit_cap=cap.debits_posted - cap.credits_posted,
        headroom=position.credits_posted - position.debits_posted - position.debits_pending,
        settlement_balance=(settlement.credits_posted - settlement.debits_posted
                            - settlement.debits_pending))


def cap_change(ledger: str, participant_id: str, transfer_id: str, current: int, wanted: int,
               key_id: str) -> Transfer | None:
    """The transfer that moves a net debit cap from `current` to `wanted` (None: no change).
    Lowering it takes headroom back: the position account refuses if the position is above."""
    if wanted == current:
        return None
    cap, position = cap_id(ledger, participant_id), position_id(ledger, participant_id)
    debit, credit = (cap, position) if wanted > current else (position, cap)
    return Transfer(transfer_id, debit, credit, abs(wanted - current), ledger,
                    CAP_CHANGE_CODE, "", 0, "", 0, 0, key_id, "")


def funds_move(ledger: str, participant_id: str, transfer_id: str, direction: str,
               amount: int, key_id: str) -> Transfer:
    """Funds in credit the participant's settlement account from the hub's reconciliation
    account; funds out go back (the settlement account cannot go below zero)."""
    settlement, reconciliation = settlement_id(ledger, participant_id), reconciliation_id(ledger)
    if direction == "in":
        return Transfer(transfer_id, reconciliation, settlement, amount, ledger, FUNDS_IN_CODE,
                        "", 0, "", 0, 0, key_id, "")
    return Transfer(transfer_id, settlement, reconciliation, amount, ledger, FUNDS_OUT_CODE,
                    "", 0, "", 0, 0, key_id, "")


# ---- parties: an alias (a phone number, an e-mail, an IBAN) for a participant's account ----

PARTY_CODE = 9021
# What each type of alias looks like (as given; normalized() makes one spelling of it).
PARTY_PATTERNS = {
    "MSISDN": re.compile(r"\+?[0-9]{5,15}"),
    "EMAIL": re.compile(r"[A-Za-z0-9._%+-]{1,64}@[A-Za-z0-9.-]{1,63}\.[A-Za-z]{2,24}"),
    "IBAN": re.compile(r"[A-Z]{2}[0-9]{2}[A-Z0-9]{10,30}"),
    "ACCOUNT_ID": ID_RE,
}
PARTY_TYPES = tuple(PARTY_PATTERNS)


def anchored(pattern: str) -> str:
    """A pattern as JSON Schema writes a whole-string match (the OpenAPI document)."""
    return pattern if pattern.startswith("^") else f"^{pattern}$"


def party_valid(party_type: str, value: str) -> bool:
    pattern = PARTY_PATTERNS.get(party_type)
    return pattern is not None and pattern.fullmatch(value) is not None


def party_id(party_type: str, value: str) -> str:
    return f"hub:party:{party_type}:{normalized(party_type, value)}"


def normalized(party_type: str, value: str) -> str:
    """One spelling per alias: e-mails in lower case, phone numbers without their '+'."""
    if party_type == "EMAIL":
        return value.lower()
    if party_type == "MSISDN":
        return value.removeprefix("+")
    return value


def party_account(party_type: str, value: str, account: Account) -> Account:
    """An alias is kept as a closed account (no money can ever move through it) on the
    target's ledger, owned by the target's owner, naming the target in user_data: durable,
    sharded and idempotent like any account, and an alias taken for another account
    answers exists_with_different_user_data."""
    return Account(party_id(party_type, value), account.ledger, PARTY_CODE, account.owner,
                   CLOSED, account.id)
