"""Request and response bodies of the switch layer's routes (switch/hub/routes.py); the
OpenAPI document is generated from them (switch/api/openapi.py)."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, Field, StrictInt, TypeAdapter

from actors.ledger.model import AMOUNT_MAX
from switch.api.schemas import Id, LedgerCode, _Strict

Amount = Annotated[StrictInt, Field(gt=0, le=AMOUNT_MAX, description="minor units")]


class PaymentIn(_Strict):
    """An immediate payment from a wallet of the payer participant to a wallet of another
    (or the same) participant. Idempotent by `id`, as transfers are."""

    id: Id
    payer_account_id: Id
    payee_account_id: Id
    amount: Amount
    ledger: LedgerCode


class FundsIn(_Strict):
    id: Id = Field(description="idempotency: the same id again moves nothing")
    ledger: LedgerCode
    direction: Literal["in", "out"]
    amount: Amount


class NetDebitCapIn(_Strict):
    net_debit_cap: Annotated[StrictInt, Field(ge=0, le=AMOUNT_MAX,
                                              description="minor units; at most the "
                                                          "settlement balance")]


class PositionOut(BaseModel):
    ledger: str
    position: int = Field(description="net obligation in the open window; positive: owes")
    net_debit_cap: int
    headroom: int = Field(description="what it may still send: cap - position")
    settlement_balance: int


class PositionList(BaseModel):
    participant_id: str
    positions: list[PositionOut]


class PositionResult(BaseModel):
    result: str = Field(description="ok, exists, unchanged, or exists_with_different_*")
    position: PositionOut


class PaymentOut(BaseModel):
    id: str
    payer_account_id: str
    payee_account_id: str
    amount: int
    ledger: str
    payer_participant_id: str
    payee_participant_id: str
    state: Literal["committed"]
    timestamp: int | None = Field(description="when it committed (ns since the epoch)")


class PaymentResult(BaseModel):
    result: str = Field(description="ok, exists, exists_with_different_*, or the rule that "
                                    "refused it (exceeds_net_debit_cap, exceeds_credits, ...)")
    payment: PaymentOut | None = None


PAYMENT = TypeAdapter(PaymentIn)
FUNDS = TypeAdapter(FundsIn)
NET_DEBIT_CAP = TypeAdapter(NetDebitCapIn)
