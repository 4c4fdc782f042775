"""The API's request and response shapes (pydantic v2), and the OpenAPI document built from them.

Requests are strict: no coercion (a float, a numeric string or a boolean is not an integer)
and no unknown fields. `100.0` is refused too, although JSON Schema counts it as the integer
100: money is integer minor units end to end, and a client that writes floats has amounts
that may not be what it meant (2^53 + 1 reads as 2^53). Amount *ranges* are the ledger's
rule (`amount_invalid`, checked per item so one bad item does not sink a batch); everything
else about a field is checked here.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictInt,
    StrictStr,
    TypeAdapter,
    model_validator,
)

from actors.ledger.codes import AccountResult, TransferResult
from actors.ledger.model import (
    AMOUNT_MAX,
    CODE_MAX,
    ID_PATTERN,
    TIMEOUT_MS_MAX,
    USER_DATA_LENGTH_MAX,
)

Id = Annotated[StrictStr, Field(pattern=ID_PATTERN, examples=["wallet:alice"])]
LedgerCode = Annotated[StrictStr, Field(pattern=r"^[A-Z][A-Z0-9]{1,11}$", examples=["USD"])]
Code = Annotated[StrictInt, Field(ge=0, le=CODE_MAX)]
UserData = Annotated[StrictStr, Field(max_length=USER_DATA_LENGTH_MAX)]


M = TypeVar("M", bound=BaseModel)


def array_adapter(item: type[M], items_max: int) -> TypeAdapter[list[M]]:
    """An array body of 1 to `items_max` items (more: 400 batch_too_large)."""
    size = Field(min_length=1, max_length=items_max)
    return TypeAdapter(Annotated[list[item], size])  # type: ignore[valid-type,arg-type]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AccountFlagsIn(_Strict):
    debits_must_not_exceed_credits: StrictBool = False
    credits_must_not_exceed_debits: StrictBool = False
    closed: StrictBool = False
    history: StrictBool = False


Limit = Annotated[StrictInt, Field(ge=0, le=AMOUNT_MAX)]


class LimitsIn(_Strict):
    """Zero: no limit. See docs/API.md, "Limits"."""

    transfer_max: Limit = 0
    overdraft: Limit = 0
    velocity_max: Limit = 0
    velocity_window_ms: Limit = 0


class AccountIn(_Strict):
    id: Id
    ledger: LedgerCode
    code: Code
    owner: Id
    flags: AccountFlagsIn = AccountFlagsIn()
    user_data: UserData = ""
    limits: LimitsIn | None = None


class TransferFlagsIn(_Strict):
    """TigerBeetle's transfer flags; see docs/API.md."""

    linked: StrictBool = False
    pending: StrictBool = False
    post_pending_transfer: StrictBool = False
    void_pending_transfer: StrictBool = False
    balancing_debit: StrictBool = False
    balancing_credit: StrictBool = False
    closing_debit: StrictBool = False
    closing_credit: StrictBool = False


def _given(*names: str) -> dict[str, Any]:
    return {"required": list(names), "properties": {name: {"not": {"type": "null"}}
                                                    for name in names}}


def _flag_set(name: str) -> dict[str, Any]:
    return {"required": ["flags"], "properties": {"flags": {
        "required": [name], "properties": {name: {"const": True}}}}}


class TransferIn(_Strict):
    """A transfer. A post or void of a pending transfer may leave out the accounts, amount,
    ledger and code: they are the pending transfer's (a post may give a smaller amount)."""

    # What the validator below checks, said in the schema too.
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, json_schema_extra={
        "anyOf": [_given("debit_account_id", "credit_account_id", "amount", "ledger", "code"),
                  _flag_set("post_pending_transfer"), _flag_set("void_pending_transfer")]})

    id: Id
    debit_account_id: Id | None = None
    credit_account_id: Id | None = None
    amount: Annotated[StrictInt | None,
                      Field(description="minor units (the ledger checks 0 < amount < 2^63)")
                      ] = None
    ledger: LedgerCode | None = None
    code: Code | None = None
    user_data: UserData = ""
    flags: TransferFlagsIn = TransferFlagsIn()
    pending_id: Id | None = None
    timeout_ms: Annotated[StrictInt, Field(ge=0, le=TIMEOUT_MS_MAX)] = 0

    @model_validator(mode="after")
    def _required_unless_resolving(self) -> TransferIn:
        if self.flags.post_pending_transfer or self.flags.void_pending_transfer:
            return self
        missing = [name for name in _REQUIRED_UNLESS_RESOLVING if getattr(self, name) is None]
        if missing:
            raise ValueError(f"required unless post_pending_transfer or "
                             f"void_pending_transfer: {', '.join(missing)}")
        return self


_REQUIRED_UNLESS_RESOLVING = ("debit_account_id", "credit_account_id", "amount", "ledger", "code")


class AccountOut(BaseModel):
    id: str
    ledger: str
    code: int
    owner: str
    flags: AccountFlagsIn
    user_data: str
    timestamp: int = Field(description="nanoseconds since the epoch, assigned by the switch")
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int
    limits: LimitsIn | None = None


class TransferOut(BaseModel):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    ledger: str
    code: int
    user_data: str
    flags: TransferFlagsIn
    pending_id: str | None
    timeout_ms: int
    timestamp: int
    key_id: str = Field("", description="the API key that sent it (\"\": sent before keys)")
    participant_id: str = Field("", description="the participant it was sent for (\"\": the "
                                                "operator)")
    status: str | None = Field(None, description="pending transfers: pending, posted, voided "
                                                 "or expired")
    amount_posted: int | None = Field(None, description="pending transfers: what was posted")


class AccountCreated(BaseModel):
    result: AccountResult
    account: AccountOut | None = None


class TransferCreated(BaseModel):
    result: TransferResult
    transfer: TransferOut | None = None


class ItemResult(BaseModel):
    index: int
    id: str
    result: str = Field(description="a TransferResult or AccountResult code")
    timestamp: int | None = None


class BatchResults(BaseModel):
    results: list[ItemResult]


class TransferPage(BaseModel):
    transfers: list[TransferOut]
    next_cursor: str | None


class AccountList(BaseModel):
    accounts: list[AccountOut]
    next_cursor: str | None


class TransferList(BaseModel):
    transfers: list[TransferOut]
    next_cursor: str | None


class BalancePoint(BaseModel):
    timestamp: int = Field(description="the log record's time, nanoseconds since the epoch")
    debits_posted: int
    credits_posted: int
    debits_pending: int
    credits_pending: int


class BalancePage(BaseModel):
    balances: list[BalancePoint]
    next_cursor: str | None


class LimitsSet(BaseModel):
    result: str = Field(description="ok, or exists when the limits were already these")
    account: AccountOut


class LedgerTotals(BaseModel):
    ledger: str
    scale: int
    debits_posted: int = Field(description="exact at any size (may exceed 64 bits)")
    credits_posted: int
    debits_pending: int
    credits_pending: int
    balanced: bool


class Ledgers(BaseModel):
    ledgers: list[LedgerTotals]


class DeliveredEvent(BaseModel):
    shard: int
    seq: int
    index: int
    timestamp_ns: int
    event: dict[str, Any] = Field(description="its `type` and every field (docs/API.md)")


class EventPage(BaseModel):
    events: list[DeliveredEvent]
    next: str = Field(description="the cursor to continue from (`after`)")


class Error(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


ACCOUNT = TypeAdapter(AccountIn)
LIMITS = TypeAdapter(LimitsIn)
ACCOUNTS = TypeAdapter(list[AccountIn])
TRANSFER = TypeAdapter(TransferIn)
TRANSFERS = TypeAdapter(list[TransferIn])


# ---- participants and keys (switch/api/registry_api.py) ----

class ParticipantIn(_Strict):
    id: Id
    name: Annotated[StrictStr, Field(min_length=1, max_length=128)]
    ledgers: Annotated[list[LedgerCode], Field(min_length=1, max_length=256)]


class ParticipantStatusIn(_Strict):
    status: Literal["active", "disabled"]


class KeyIn(_Strict):
    role: Literal["operator", "participant", "auditor"]
    participant_id: Id | None = Field(None, description="required for, and only for, the "
                                                        "participant role")
    requests_per_second: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="this key's rate limit (default: auth.requests_per_second)")
    burst: Annotated[StrictInt, Field(ge=1, le=1_000_000)] | None = Field(
        None, description="this key's burst (default: auth.burst)")


class ParticipantOut(BaseModel):
    id: str
    name: str
    ledgers: list[str]
    status: str = Field(description="active or disabled")
    timestamp: int


class ParticipantResult(BaseModel):
    result: str = Field(description="ok, exists, unchanged, or exists_with_different_*")
    participant: ParticipantOut | None = None


class ParticipantList(BaseModel):
    participants: list[ParticipantOut]


class KeyOut(BaseModel):
    key_id: str
    role: str
    participant_id: str | None
    timestamp: int
    revoked: bool
    requests_per_second: int | None = Field(description="None: the switch's default")
    burst: int | None


class KeyCreated(KeyOut):
    secret: str = Field(description="the key to send as `Authorization: Bearer <secret>`; "
                                    "shown this once, never stored")


class KeyResult(BaseModel):
    result: str = Field(description="ok, or unchanged when already revoked")
    key: KeyOut


class KeyList(BaseModel):
    keys: list[KeyOut]


PARTICIPANT = TypeAdapter(ParticipantIn)
PARTICIPANT_STATUS = TypeAdapter(ParticipantStatusIn)
KEY = TypeAdapter(KeyIn)
