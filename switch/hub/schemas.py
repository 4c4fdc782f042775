"""Request and response bodies of the switch layer's routes (switch/hub/routes.py); the
OpenAPI document is generated from them (switch/api/openapi.py)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictInt,
    StrictStr,
    TypeAdapter,
    model_validator,
)

from actors.ledger.model import AMOUNT_MAX, TIMEOUT_MS_MAX
from actors.ledger.registry import ALARM_PERCENT_MAX, ALARM_PERCENT_MIN
from switch.api.schemas import Id, LedgerCode, _given, _Strict
from switch.hub.model import PARTY_PATTERNS, anchored, party_valid
from switch.hub.quotes import QUOTE_ID_LENGTH_MAX

Amount = Annotated[StrictInt, Field(gt=0, le=AMOUNT_MAX, description="minor units")]


def _party_shapes() -> list[Any]:
    return [{"properties": {"type": {"const": party_type}, "id": {"pattern": anchored(
        pattern.pattern)}}} for party_type, pattern in PARTY_PATTERNS.items()]


class PartyRef(_Strict):
    # What the validator below checks, said in the schema too.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True,
                              json_schema_extra={"anyOf": _party_shapes()})

    type: Literal["MSISDN", "EMAIL", "IBAN", "ACCOUNT_ID"]
    id: Annotated[StrictStr, Field(min_length=1, max_length=128, examples=["+254700000001"])]

    @model_validator(mode="after")
    def _shaped(self) -> PartyRef:
        if not party_valid(self.type, self.id):
            raise ValueError(f"not a valid {self.type}")
        return self


class PartyIn(PartyRef):
    account_id: Id = Field(description="the account the alias names (its owner's)")


class PartyOut(BaseModel):
    type: str
    id: str
    participant_id: str
    account_id: str
    ledger: str


class PartyResult(BaseModel):
    result: str = Field(description="ok, exists, or party_taken")
    party: PartyOut | None = None


class QuoteIn(_Strict):
    payer_account_id: Id
    payee: PartyRef
    amount: Amount
    amount_type: Literal["SEND", "RECEIVE"] = Field(
        description="SEND: the payer pays amount, fee included; RECEIVE: the payee gets amount")
    ledger: LedgerCode


class QuoteOut(BaseModel):
    quote_id: str = Field(description="opaque, signed: pay with it until expires_at")
    payer_account_id: str
    payee_account_id: str
    payee_participant_id: str
    ledger: str
    send_amount: int = Field(description="what the payer pays, fee included")
    receive_amount: int
    fee: int
    expires_at: int = Field(description="ns since the epoch, on the switch's clock")


class PaymentIn(_Strict):
    """A payment: from a quote (`quote_id`), or with its fields in full. Idempotent by `id`,
    as transfers are. `two_phase`: prepared now (everything reserved), then fulfilled by the
    payee's participant, or aborted, or expired after `timeout_ms`."""

    # What the validator below checks, said in the schema too.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, json_schema_extra={
        "anyOf": [_given("quote_id"),
                  _given("payer_account_id", "payee_account_id", "amount", "ledger")],
        "dependentSchemas": {"timeout_ms": {
            "required": ["mode"], "properties": {"mode": {"const": "two_phase"}}}}})

    id: Id
    quote_id: Annotated[StrictStr, Field(min_length=1, max_length=QUOTE_ID_LENGTH_MAX)] | None \
        = None
    payer_account_id: Id | None = None
    payee_account_id: Id | None = None
    amount: Amount | None = Field(None, description="what the payee receives; the fee is on top")
    ledger: LedgerCode | None = None
    mode: Literal["immediate", "two_phase"] = "immediate"
    timeout_ms: Annotated[StrictInt, Field(ge=1, le=TIMEOUT_MS_MAX)] | None = Field(
        None, description="two_phase only (default: hub.prepare_timeout_ms)")

    @model_validator(mode="after")
    def _complete(self) -> PaymentIn:
        missing = [name for name in ("payer_account_id", "payee_account_id", "amount",
                                     "ledger") if getattr(self, name) is None]
        if self.quote_id is None and missing:
            raise ValueError(f"give quote_id, or every field: {', '.join(missing)} missing")
        if self.timeout_ms is not None and self.mode != "two_phase":
            raise ValueError("timeout_ms is for two_phase payments")
        return self


class PaymentRefIn(_Strict):
    """A prepared payment to fulfil or abort, in `POST /v1/payments/fulfil` and `/abort`
    (one object, or an array of them: bulk, as Mojaloop's bulk transfers)."""

    id: Id


class FundsIn(_Strict):
    id: Id = Field(description="idempotency: the same id again moves nothing")
    ledger: LedgerCode
    direction: Literal["in", "out"]
    amount: Amount


class NetDebitCapIn(_Strict):
    net_debit_cap: Annotated[StrictInt, Field(ge=0, le=AMOUNT_MAX,
                                              description="minor units; at most the "
                                                          "settlement balance")]
    alarm_percent: Annotated[StrictInt | None, Field(
        ge=ALARM_PERCENT_MIN, le=ALARM_PERCENT_MAX,
        description="the share of the cap at which its position raises the NDC alarm (an "
                    "ndc_alarm event); omitted: unchanged (hub.alarm_percent until set)")] = None


class PositionOut(BaseModel):
    ledger: str
    position: int = Field(description="net obligation in the open window; positive: owes")
    net_debit_cap: int
    headroom: int = Field(description="what it may still send: cap - position")
    settlement_balance: int
    alarm_percent: int = Field(description="its NDC alarm threshold, percent of the cap")


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
    amount: int = Field(description="what the payee receives")
    fee: int = Field(description="what the payer paid on top, to the hub")
    ledger: str
    payer_participant_id: str
    payee_participant_id: str
    state: Literal["prepared", "committed", "aborted", "expired"]
    timestamp: int = Field(description="when it was made or prepared (ns since the epoch)")


class PaymentResult(BaseModel):
    result: str = Field(description="ok, exists, exists_with_different_*, or the rule that "
                                    "refused it (exceeds_net_debit_cap, exceeds_credits, ...)")
    payment: PaymentOut | None = None


class PaymentItemResult(BaseModel):
    """One item of an array of payments (or of fulfils, or aborts), in the array's order."""

    index: int
    id: str
    result: str = Field(description="as for one payment: ok, exists, exists_with_different_*, "
                                    "or the rule that refused it")
    state: Literal["prepared", "committed", "aborted", "expired"] | None = Field(
        None, description="ok and exists: the payment's state now")
    timestamp: int | None = Field(None, description="ok and exists: when it was made or "
                                                    "prepared (ns since the epoch)")


class PaymentResults(BaseModel):
    results: list[PaymentItemResult]


class WindowCloseIn(_Strict):
    ledger: LedgerCode
    id: Annotated[StrictStr, Field(max_length=32, description="the window to close (default: "
                                                              "the open one), e.g. USD.3")] \
        | None = None


class WindowResult(BaseModel):
    result: str = Field(description="ok, or unchanged when it was closed already")
    closed: str = Field(description="the window closed")
    open: str = Field(description="the window open now")


class WindowRow(BaseModel):
    participant_id: str
    sent: int
    received: int
    fees: int
    net: int = Field(description="sent - received; positive: it owes. The nets sum to zero")


class WindowReport(BaseModel):
    id: str
    ledger: str
    state: Literal["open", "closed"]
    opened_at: int
    closed_at: int | None
    participants: list[WindowRow] = Field(description="a participant sees its own row")
    payments: int
    merkle_root: str | None = Field(description="closed windows: SHA-256 Merkle root over "
                                                "the window's payments (docs/SWITCH.md)")
    signature: str | None = Field(description="Ed25519, hex, by GET /v1/hub/public-key")


class SettlementIn(_Strict):
    id: Id
    ledger: LedgerCode
    window_ids: Annotated[list[Annotated[StrictStr, Field(max_length=32)]],
                          Field(min_length=1, max_length=64)]


class SettledIn(_Strict):
    state: Literal["settled"]


class SettlementRow(BaseModel):
    participant_id: str
    net: int = Field(description="positive: it pays this much; negative: it receives")
    state: Literal["pending", "settled"]


class SettlementOut(BaseModel):
    id: str
    ledger: str
    window_ids: list[str]
    state: Literal["pending", "settled"]
    participants: list[SettlementRow] = Field(description="a participant sees its own row")


class SettlementResult(BaseModel):
    result: str = Field(description="ok, or exists")
    settlement: SettlementOut


class PublicKey(BaseModel):
    algorithm: Literal["Ed25519"]
    public_key: str = Field(description="32 bytes, hex")


WINDOW_CLOSE = TypeAdapter(WindowCloseIn)
SETTLEMENT = TypeAdapter(SettlementIn)
SETTLED = TypeAdapter(SettledIn)
PARTY = TypeAdapter(PartyIn)
QUOTE = TypeAdapter(QuoteIn)
PAYMENT = TypeAdapter(PaymentIn)
PAYMENT_REF = TypeAdapter(PaymentRefIn)
FUNDS = TypeAdapter(FundsIn)
NET_DEBIT_CAP = TypeAdapter(NetDebitCapIn)
