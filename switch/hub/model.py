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
Per ledger: `hub:reconciliation:L` (the other side of funds in and out) and
`hub:multilateral:L` (the other side of settlements).
"""

from __future__ import annotations

from dataclasses import dataclass

from msgspec.structs import replace

from actors.ledger.model import (
    DEBITS_MUST_NOT_EXCEED_CREDITS,
    HISTORY,
    LINKED,
    Account,
    Transfer,
)

RESERVED_PREFIX = "hub:"  # ids the switch layer makes; the public API refuses them
HUB_OWNER = "hub:switch"

# Account codes (TigerBeetle's `code`: what kind of account it is).
POSITION_CODE, CAP_CODE, SETTLEMENT_CODE = 9001, 9002, 9003
RECONCILIATION_CODE, MULTILATERAL_CODE = 9011, 9012
# Transfer codes: what kind of movement it is.
PAYMENT_CODE, POSITION_MOVE_CODE, FUNDS_IN_CODE, FUNDS_OUT_CODE, CAP_CHANGE_CODE = (
    9101, 9102, 9103, 9104, 9105)


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


def hub_accounts(ledger: str) -> list[Account]:
    return [Account(reconciliation_id(ledger), ledger, RECONCILIATION_CODE, HUB_OWNER, 0, ""),
            Account(multilateral_id(ledger), ledger, MULTILATERAL_CODE, HUB_OWNER, 0, "")]


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


@dataclass(frozen=True)
class Payment:
    """A payment as asked: `payer_participant` and `payee_participant` own the wallets."""

    id: str
    payer_account_id: str
    payee_account_id: str
    amount: int
    ledger: str
    payer_participant: str
    payee_participant: str


def payment_leg_id(payment_id: str, leg: str) -> str:
    return f"hub:payment:{payment_id}:{leg}"


WALLET_LEG, POSITION_LEG = "wallet", "position"


def payment_legs(payment: Payment, key_id: str) -> list[Transfer]:
    """The linked chain of a payment: the wallets, and (between two participants) the
    positions. The wallet leg carries the payer participant, so its shard checks that the
    payer owns the wallet it debits; the position leg is the switch's own move."""
    wallet = Transfer(payment_leg_id(payment.id, WALLET_LEG), payment.payer_account_id,
                      payment.payee_account_id, payment.amount, payment.ledger, PAYMENT_CODE,
                      "", 0, "", 0, 0, key_id, payment.payer_participant)
    if payment.payer_participant == payment.payee_participant:
        return [wallet]
    position = Transfer(payment_leg_id(payment.id, POSITION_LEG),
                        position_id(payment.ledger, payment.payer_participant),
                        position_id(payment.ledger, payment.payee_participant),
                        payment.amount, payment.ledger, POSITION_MOVE_CODE, payment.id, 0, "",
                        0, 0, key_id, "")
    return [replace(wallet, flags=wallet.flags | LINKED), position]


def payment_result(results: list[str]) -> str:
    """One answer for a payment from its legs' results: the leg that failed names why (the
    others answer linked_event_failed); a refusal on the position account is the cap's."""
    for index, result in enumerate(results):
        if result in ("ok", "exists", "linked_event_failed"):
            continue
        if index == 1 and result == "exceeds_credits":
            return "exceeds_net_debit_cap"
        return result
    return "exists" if results and all(r == "exists" for r in results) else "ok"


@dataclass(frozen=True)
class Position:
    """A participant's standing on one ledger, from its three accounts' balances."""

    ledger: str
    net_debit_cap: int
    headroom: int  # what it may still send: cap - position, reservations taken off
    settlement_balance: int

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
