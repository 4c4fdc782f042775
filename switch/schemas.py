"""The API's request and response shapes (pydantic v2), and the OpenAPI document built from them.

Requests are strict: no coercion (a float, a numeric string or a boolean is not an integer)
and no unknown fields. Amount *ranges* are the ledger's rule (`amount_invalid`, checked per
item so one bad item does not sink a batch); everything else about a field is checked here.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictInt, StrictStr, TypeAdapter

from actors.codes import AccountResult, TransferResult
from actors.model import CODE_MAX, ID_PATTERN, USER_DATA_LENGTH_MAX

Id = Annotated[StrictStr, Field(pattern=ID_PATTERN, examples=["wallet:alice"])]
LedgerCode = Annotated[StrictStr, Field(pattern=r"^[A-Z][A-Z0-9]{1,11}$", examples=["USD"])]
Code = Annotated[StrictInt, Field(ge=0, le=CODE_MAX)]
UserData = Annotated[StrictStr, Field(max_length=USER_DATA_LENGTH_MAX)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class AccountFlagsIn(_Strict):
    debits_must_not_exceed_credits: StrictBool = False
    credits_must_not_exceed_debits: StrictBool = False
    closed: StrictBool = False


class AccountIn(_Strict):
    id: Id
    ledger: LedgerCode
    code: Code
    owner: Id
    flags: AccountFlagsIn = AccountFlagsIn()
    user_data: UserData = ""


class TransferIn(_Strict):
    id: Id
    debit_account_id: Id
    credit_account_id: Id
    amount: Annotated[StrictInt, Field(description="minor units, 0 < amount < 2^63")]
    ledger: LedgerCode
    code: Code
    user_data: UserData = ""


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


class TransferOut(BaseModel):
    id: str
    debit_account_id: str
    credit_account_id: str
    amount: int
    ledger: str
    code: int
    user_data: str
    timestamp: int


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


class Error(BaseModel):
    code: str
    message: str
    details: list[dict[str, Any]] | None = None


ACCOUNT = TypeAdapter(AccountIn)
ACCOUNTS = TypeAdapter(list[AccountIn])
TRANSFER = TypeAdapter(TransferIn)
TRANSFERS = TypeAdapter(list[TransferIn])
