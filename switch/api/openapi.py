"""The OpenAPI 3.1 document of every route, generated from the pydantic models in
switch/api/schemas.py and the bounds the handlers check (switch/api/params.py).

What the schema allows is what the server accepts: integers in a query string are written
as decimal digits (no sign, no fraction), cursors are the opaque strings the server returned
(base64url; any other string answers 400 cursor_invalid), moments are nanoseconds since the
epoch. A schemathesis run over every operation holds the two together
(tests/switch/test_openapi_conformance.py).
"""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from actors.ledger.model import CODE_MAX, ID_PATTERN, USER_DATA_LENGTH_MAX
from switch.api.schemas import (
    AccountCreated,
    AccountIn,
    AccountList,
    AccountOut,
    BalancePage,
    BatchResults,
    Error,
    EventPage,
    KeyCreated,
    KeyIn,
    KeyList,
    KeyResult,
    Ledgers,
    LimitsIn,
    LimitsSet,
    ParticipantIn,
    ParticipantList,
    ParticipantOut,
    ParticipantResult,
    ParticipantStatusIn,
    TransferCreated,
    TransferIn,
    TransferList,
    TransferOut,
    TransferPage,
)
from switch.api.slots_api import PinIn, SlotMoveIn
from switch.cli.settings import Settings
from switch.hub.model import PARTY_TYPES
from switch.hub.schemas import (
    FundsIn,
    NetDebitCapIn,
    PartyIn,
    PartyOut,
    PartyResult,
    PaymentIn,
    PaymentItemResult,
    PaymentOut,
    PaymentRefIn,
    PaymentResult,
    PaymentResults,
    PositionList,
    PositionOut,
    PositionResult,
    PublicKey,
    QuoteIn,
    QuoteOut,
    SettledIn,
    SettlementIn,
    SettlementOut,
    SettlementResult,
    WindowCloseIn,
    WindowReport,
    WindowResult,
)
from switch.read.events_api import EVENTS_PATH, EVENTS_PER_READ_MAX, WAIT_MS_MAX

_REF = "#/components/schemas/{model}"
MODELS: list[type[BaseModel]] = [
    AccountIn, TransferIn, LimitsIn, AccountOut, TransferOut, AccountCreated, TransferCreated,
    BatchResults, TransferPage, AccountList, TransferList, BalancePage, LimitsSet, Ledgers,
    EventPage, Error, ParticipantIn, ParticipantStatusIn, KeyIn, ParticipantOut,
    ParticipantResult, ParticipantList, KeyCreated, KeyResult, KeyList, PaymentIn, PaymentOut,
    PaymentResult, PaymentRefIn, PaymentItemResult, PaymentResults, FundsIn, NetDebitCapIn,
    PositionOut, PositionList, PositionResult, PartyIn,
    PartyOut, PartyResult, QuoteIn, QuoteOut, PublicKey, WindowCloseIn, WindowResult,
    WindowReport, SettlementIn, SettledIn, SettlementOut, SettlementResult]
CURSOR = {"type": "string", "pattern": "^[A-Za-z0-9_-]*$",
          "description": "opaque: the next_cursor of the page before, as given (empty: the "
                         "first page); any other value answers 400 cursor_invalid"}
MOMENT = {"type": "string", "pattern": "^[0-9]{1,19}$",
          "description": "nanoseconds since the epoch (an ISO 8601 time is also accepted)"}
ERRORS_OF_READS = (400, 401, 403, 404, 429, 503)
ERRORS_OF_AUTH = (401, 403, 429)  # every route but /healthz, /readyz, /openapi.json
OPEN: dict[str, list[Any]] = {"security": []}  # routes that need no key


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(_ref("Error"), "error: its code says which (docs/API.md)")
            for status in statuses}


def _param(name: str, where: str, schema: dict[str, Any], required: bool = False
           ) -> dict[str, Any]:
    return {"name": name, "in": where, "required": required, "schema": schema}


def _id(name: str) -> dict[str, Any]:
    return _param(name, "path", {"type": "string", "pattern": ID_PATTERN}, required=True)


def _digits(name: str, low: int, high: int) -> dict[str, Any]:
    """An integer query parameter: decimal digits only (the server refuses "1.0", "+1")."""
    return _param(name, "query", {"type": "integer", "minimum": low, "maximum": high})


def _page(page_max: int) -> list[dict[str, Any]]:
    return [_digits("limit", 1, page_max), _param("cursor", "query", CURSOR)]


def _read(schema: str, parameters: list[dict[str, Any]], summary: str) -> dict[str, Any]:
    return {"summary": summary, "parameters": parameters,
            "responses": {"200": _json(_ref(schema), "found"), **_errors(*ERRORS_OF_READS)}}


def _one_or_array(one: str, batch_items_max: int) -> dict[str, Any]:
    return {"oneOf": [_ref(one), {"type": "array", "items": _ref(one), "minItems": 1,
                                  "maxItems": batch_items_max}]}


def _create(one: str, created: str, batch_items_max: int, summary: str) -> dict[str, Any]:
    body = _one_or_array(one, batch_items_max)
    return {
        "summary": summary,
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "201": _json(_ref(created), "created (one object)"),
            "200": _json({"oneOf": [_ref(created), _ref("BatchResults")]},
                         "exists (one object), or one result per item (an array)"),
            "409": _json(_ref(created), "exists with different fields"),
            "422": _json(_ref(created), "rejected by the ledger; result names the rule"),
            **_errors(400, 401, 403, 413, 415, 429, 503),
        },
    }


def _write(body: str | dict[str, Any] | None, answers: dict[str, Any], errors: tuple[int, ...],
           summary: str, parameters: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """`body`: a model's name, or a schema."""
    operation: dict[str, Any] = {"summary": summary, "parameters": parameters or [],
                                 "responses": {**answers, **_errors(*ERRORS_OF_AUTH, *errors)}}
    if body is not None:
        operation["requestBody"] = {"required": True, "content": {
            "application/json": {"schema": _ref(body) if isinstance(body, str) else body}}}
    return operation


def _registry_paths() -> dict[str, Any]:
    participant = _id("participant_id")
    return {
        "/v1/participants": {
            "post": _write("ParticipantIn", {
                "201": _json(_ref("ParticipantResult"), "created"),
                "200": _json(_ref("ParticipantResult"), "exists with the same fields"),
                "409": _json(_ref("ParticipantResult"), "exists with different fields")},
                (400, 413, 415, 422, 503), "Register a participant (operator)"),
            "get": _read("ParticipantList", [], "Participants (a participant: itself)")},
        "/v1/participants/{participant_id}": {
            "get": _read("ParticipantOut", [participant], "One participant"),
            "put": _write("ParticipantStatusIn", {
                "200": _json(_ref("ParticipantResult"), "set (or unchanged)")},
                (400, 404, 413, 415, 503), "Enable or disable a participant (operator)",
                [participant])},
        "/v1/keys": {
            "post": _write("KeyIn", {"201": _json(_ref("KeyCreated"), "made: the secret is "
                                                                      "shown this once")},
                           (400, 404, 413, 415, 422, 503), "Make an API key (operator)"),
            "get": _read("KeyList", [], "Every key, without secrets (operator, auditor)")},
        "/v1/keys/{key_id}": {
            "delete": _write(None, {"200": _json(_ref("KeyResult"), "revoked (or already)")},
                             (400, 404, 503), "Revoke a key (operator)", [_id("key_id")])},
    }


def _hub_paths(batch_items_max: int) -> dict[str, Any]:
    """The switch layer (switch/hub/routes.py, docs/SWITCH.md)."""
    participant = _id("participant_id")
    one_or_results = {"oneOf": [_ref("PaymentResult"), _ref("PaymentResults")]}
    return {
        "/v1/payments": {"post": _write(_one_or_array("PaymentIn", batch_items_max), {
            "201": _json(_ref("PaymentResult"), "made (or prepared, two-phase)"),
            "200": _json(one_or_results, "exists with the same fields; or, for an array, "
                                         "one result per item"),
            "409": _json(_ref("PaymentResult"), "exists with different fields"),
            "422": _json(_ref("Error"), "refused: code names the rule (exceeds_net_debit_cap, "
                                        "exceeds_credits, quote_expired, ...)")},
            (400, 413, 415, 503), "Make a payment between participants' wallets")},
        "/v1/payments/{payment_id}": {
            "get": _read("PaymentOut", [_id("payment_id")], "One payment (its payer's or "
                                                            "payee's participant)")},
        **{f"/v1/payments/{{payment_id}}/{how}": {"post": _write(None, {
            "200": _json(_ref("PaymentResult"), f"{how}ed (or already)"),
            "422": _json(_ref("Error"), "refused: code names why (expired, already posted "
                                        "or voided, ...)")},
            (400, 404, 503), f"{how.capitalize()} a prepared payment (its payee's participant)",
            [_id("payment_id")])} for how in ("fulfil", "abort")},
        **{f"/v1/payments/{how}": {"post": _write(_one_or_array(
            "PaymentRefIn", batch_items_max), {
            "200": _json(one_or_results, f"{how}ed (or already); or, for an array, one "
                                         "result per item"),
            "422": _json(_ref("Error"), "one object refused: code names why")},
            (400, 404, 413, 415, 503), f"{how.capitalize()} prepared payments, one or an "
                                       "array (their payees' participant)")}
           for how in ("fulfil", "abort")},
        "/v1/parties": {"post": _write("PartyIn", {
            "201": _json(_ref("PartyResult"), "registered"),
            "200": _json(_ref("PartyResult"), "exists with the same account"),
            "409": _json(_ref("PartyResult"), "party_taken: it names another account"),
            "422": _json(_ref("Error"), "account_not_found, owner_not_enabled")},
            (400, 413, 415, 503), "Register an alias for one of the caller's accounts")},
        "/v1/parties/{party_type}/{party_id}": {"get": _read("PartyOut", [
            _param("party_type", "path", {"enum": list(PARTY_TYPES)}, True),
            _param("party_id", "path", {"type": "string", "minLength": 1, "maxLength": 128},
                   True)], "Whose an alias is: participant, account and ledger")},
        "/v1/quotes": {"post": _write("QuoteIn", {
            "201": _json(_ref("QuoteOut"), "the terms, signed, binding until expires_at")},
            (400, 404, 413, 415, 422, 503), "Price a payment to an alias")},
        "/v1/hub/public-key": {"get": _read("PublicKey", [], "The switch's Ed25519 public "
                                                              "key (it signs quotes)")},
        "/v1/settlements": {"post": _write("SettlementIn", {
            "201": _json(_ref("SettlementResult"), "made: each participant's net, pending"),
            "200": _json(_ref("SettlementResult"), "exists with the same windows")},
            (400, 404, 409, 413, 415, 422, 503),
            "Settle closed windows between the participants (operator)")},
        "/v1/settlements/{settlement_id}": {"get": _read("SettlementOut", [
            _id("settlement_id")], "A settlement: each participant's net and state")},
        "/v1/settlements/{settlement_id}/participants/{participant_id}": {"put": _write(
            "SettledIn", {"200": _json(_ref("SettlementResult"), "settled (or already)")},
            (400, 404, 413, 415, 422, 503),
            "Settle one participant's net: its settlement account and position (operator)",
            [_id("settlement_id"), _id("participant_id")])},
        "/v1/settlement-windows/close": {"post": _write("WindowCloseIn", {
            "200": _json(_ref("WindowResult"), "closed (or already), the next one open")},
            (400, 404, 413, 415, 503), "Close a ledger's settlement window (operator)")},
        "/v1/settlement-windows/{window_id}/report": {"get": _read("WindowReport", [
            _param("window_id", "path", {"type": "string", "maxLength": 32}, True)],
            "A window's report: gross, fees and net per participant; root and signature "
            "once closed")},
        "/v1/participants/{participant_id}/positions": {
            "get": _read("PositionList", [participant], "A participant's position, net debit "
                                                        "cap and settlement balance per ledger")},
        "/v1/participants/{participant_id}/ledgers/{ledger}/net-debit-cap": {
            "put": _write("NetDebitCapIn", {"200": _json(_ref("PositionResult"),
                                                         "set (or unchanged)")},
                          (400, 404, 413, 415, 422, 503),
                          "Set a participant's net debit cap on a ledger (operator)",
                          [participant, _id("ledger")])},
        "/v1/participants/{participant_id}/funds": {
            "post": _write("FundsIn", {
                "201": _json(_ref("PositionResult"), "moved"),
                "200": _json(_ref("PositionResult"), "exists with the same fields"),
                "409": _json(_ref("PositionResult"), "exists with different fields")},
                (400, 404, 413, 415, 422, 503),
                "Move funds in or out of a participant's settlement account (operator)",
                [participant])},
    }


def _text(description: str, media: str) -> dict[str, Any]:
    return {"description": description, "content": {media: {"schema": {"type": "string"}}}}


def _paths(batch_items_max: int, page_max: int) -> dict[str, Any]:
    filters = [_param("code", "query", {"type": "integer", "minimum": 0, "maximum": CODE_MAX}),
               _param("user_data", "query", {"type": "string",
                                             "maxLength": USER_DATA_LENGTH_MAX}),
               _param("ledger", "query", {"type": "string"})]
    window = [_param("from", "query", MOMENT), _param("to", "query", MOMENT)]
    return {
        "/v1/accounts": {
            "post": _create("AccountIn", "AccountCreated", batch_items_max,
                            "Open one account, or an array of them"),
            "get": _read("AccountList", [*_page(page_max), _param(
                "owner", "query", {"type": "string", "pattern": ID_PATTERN}), *filters],
                "Accounts, newest first, filtered (the read replica)")},
        "/v1/accounts/{account_id}": {
            "get": _read("AccountOut", [_id("account_id")], "One account and its limits")},
        "/v1/accounts/{account_id}/transfers": {
            "get": _read("TransferPage", [_id("account_id"), _digits("limit", 1, page_max),
                                          _param("cursor", "query", {
                                              "type": "string", "pattern": "^[0-9]{0,18}$",
                                              "description": "the next_cursor of the page "
                                                             "before (empty: the newest)"})],
                         "An account's posted transfers, newest first")},
        "/v1/accounts/{account_id}/balances": {
            "get": _read("BalancePage", [_id("account_id"), *_page(page_max), *window],
                         "An account's balances after each change (flags.history)")},
        "/v1/accounts/{account_id}/limits": {"put": {
            "summary": "Set an account's limits (the same ones again change nothing)",
            "parameters": [_id("account_id")],
            "requestBody": {"required": True,
                            "content": {"application/json": {"schema": _ref("LimitsIn")}}},
            "responses": {"200": _json(_ref("LimitsSet"), "set"),
                          "422": _json(_ref("Error"), "limits_invalid"),
                          **_errors(400, 401, 403, 404, 413, 415, 429, 503)}}},
        "/v1/transfers": {
            "post": _create("TransferIn", "TransferCreated", batch_items_max,
                            "Make one transfer, or an array of them (linked chains)"),
            "get": _read("TransferList", [*_page(page_max), _param(
                "account_id", "query", {"type": "string", "pattern": ID_PATTERN}), *filters,
                _param("pending_status", "query", {
                    "enum": ["pending", "posted", "voided", "expired"]}), *window],
                "Transfers, newest first, filtered (the read replica)")},
        "/v1/transfers/{transfer_id}": {
            "get": _read("TransferOut", [_id("transfer_id")], "One transfer")},
        "/v1/ledgers": {"get": _read("Ledgers", [], "Per-ledger totals over every shard")},
        EVENTS_PATH: {"get": _read("EventPage", [
            _param("after", "query", {**CURSOR, "description": "0 or empty: from the start; "
                                      "latest: from now; else a `next` given before"}),
            _digits("limit", 1, EVENTS_PER_READ_MAX), _digits("wait_ms", 0, WAIT_MS_MAX),
            _param("Last-Event-ID", "header", CURSOR)],
            "Committed events in order, per shard; waits up to wait_ms when none")},
        EVENTS_PATH + "/stream": {"get": {
            "summary": "The same events as server-sent events, for ever",
            "parameters": [_param("after", "query", CURSOR),
                           _param("Last-Event-ID", "header", CURSOR)],
            "responses": {"200": _text("an event stream", "text/event-stream"),
                          **_errors(400, *ERRORS_OF_AUTH)}}},
        "/healthz": {"get": {"summary": "The process is up", **OPEN,
                             "responses": {"200": _json({"type": "object"}, "up")}}},
        "/readyz": {"get": {"summary": "Every shard answers", **OPEN,
                            "responses": {"200": _json({"type": "object"}, "ready"),
                                          **_errors(503)}}},
        "/metrics": {"get": {"summary": "Prometheus metrics (operator, auditor)",
                             "responses": {"200": _text("metrics", "text/plain"),
                                           **_errors(*ERRORS_OF_AUTH)}}},
        "/dashboard": {"get": {"summary": "The live cluster dashboard (HTML; operator, "
                                          "auditor: a browser asks for the key)",
                               "responses": {"200": _text("the page", "text/html"),
                                             **_errors(*ERRORS_OF_AUTH)}}},
        "/v1/cluster": {"get": {"summary": "Nodes and shards, now (operator, auditor)",
                                "responses": {"200": _json({"type": "object"}, "the cluster"),
                                              **_errors(*ERRORS_OF_AUTH)}}},
        "/v1/cluster/slot-moves": {"post": {
            "summary": "Move a slot to another shard, online (operator; docs/CLUSTER.md)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": SlotMoveIn.model_json_schema()}}},
            "responses": {"200": _json({"type": "object"}, "moved"),
                          **_errors(400, 409, 413, 415, 422, 503, *ERRORS_OF_AUTH)}}},
        "/v1/cluster/pins": {"post": {
            "summary": "Place a hot account on a shard of its own choosing, online (operator)",
            "requestBody": {"required": True, "content": {"application/json": {
                "schema": PinIn.model_json_schema()}}},
            "responses": {"200": _json({"type": "object"}, "moved"),
                          **_errors(400, 404, 409, 413, 415, 422, 503, *ERRORS_OF_AUTH)}}},
        "/dashboard/data": {"get": {"summary": "What the dashboard shows, as JSON",
                                    "responses": {"200": _json({"type": "object"}, "now"),
                                                  **_errors(*ERRORS_OF_AUTH)}}},
        "/dashboard/static/{file}": {"get": {
            "summary": "The dashboard's scripts and styles",
            "parameters": [_param("file", "path", {"type": "string",
                                                   "pattern": "^[a-z0-9_.-]+$"}, True)],
            "responses": {"200": {"description": "the file"},
                          **_errors(404, *ERRORS_OF_AUTH)}}},
        "/openapi.json": {"get": {"summary": "This document", **OPEN,
                                  "responses": {"200": _json({"type": "object"}, "it")}}},
        **_registry_paths(),
        **_hub_paths(batch_items_max),
    }


@cache
def _document(batch_items_max: int, history_page_max: int) -> dict[str, Any]:
    inputs: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (m, "validation") for m in MODELS]
    _, schemas = models_json_schema(inputs, ref_template=_REF)
    return {
        "openapi": "3.1.0",
        "info": {"title": "payswitch", "version": "1",
                 "description": "Double-entry transfers between accounts; amounts are integer "
                                "minor units. See docs/API.md."},
        "paths": _paths(batch_items_max, history_page_max),
        "security": [{"apiKey": []}],
        "components": {"schemas": schemas["$defs"], "securitySchemes": {"apiKey": {
            "type": "http", "scheme": "bearer",
            "description": "An API key (docs/SECURITY.md); Basic with the key as password "
                           "is accepted too (a browser, for the dashboard)"}}},
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    return _document(settings.api.batch_items_max, settings.api.history_page_max)
