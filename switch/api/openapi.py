"""The OpenAPI 3.1 document, generated from the pydantic models in switch/schemas.py."""

from __future__ import annotations

from functools import cache
from typing import Any, Literal

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from actors.ledger.model import ID_PATTERN
from switch.api.schemas import (
    AccountCreated,
    AccountIn,
    AccountOut,
    BatchResults,
    Error,
    TransferCreated,
    TransferIn,
    TransferOut,
    TransferPage,
)
from switch.cli.settings import Settings

_REF = "#/components/schemas/{model}"


def _ref(name: str) -> dict[str, str]:
    return {"$ref": _REF.format(model=name)}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _errors(*statuses: int) -> dict[str, Any]:
    return {str(status): _json(_ref("Error"), "error") for status in statuses}


def _create(one: str, created: str, batch_items_max: int) -> dict[str, Any]:
    body = {"oneOf": [_ref(one), {"type": "array", "items": _ref(one), "minItems": 1,
                                  "maxItems": batch_items_max}]}
    return {
        "requestBody": {"required": True, "content": {"application/json": {"schema": body}}},
        "responses": {
            "201": _json(_ref(created), "created (one object)"),
            "200": _json({"oneOf": [_ref(created), _ref("BatchResults")]},
                         "exists (one object), or one result per item (an array)"),
            "409": _json(_ref(created), "exists with different fields"),
            "422": _json(_ref(created), "rejected by the ledger; result names the rule"),
            **_errors(400, 413, 415, 429, 503),
        },
    }


def _get(schema: str, parameters: list[dict[str, Any]]) -> dict[str, Any]:
    return {"parameters": parameters,
            "responses": {"200": _json(_ref(schema), "found"), **_errors(400, 404, 503)}}


def _path_param(name: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True,
            "schema": {"type": "string", "pattern": ID_PATTERN}}


@cache
def _document(batch_items_max: int, history_page_max: int) -> dict[str, Any]:
    models: list[type[BaseModel]] = [AccountIn, TransferIn, AccountOut, TransferOut,
                                      AccountCreated, TransferCreated, BatchResults,
                                      TransferPage, Error]
    inputs: list[tuple[type[BaseModel], Literal["validation"]]] = [
        (m, "validation") for m in models]
    _, schemas = models_json_schema(inputs, ref_template=_REF)
    query = [
        {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1,
                                                    "maximum": history_page_max}},
        {"name": "cursor", "in": "query", "schema": {"type": "string"}},
    ]
    return {
        "openapi": "3.1.0",
        "info": {"title": "payswitch", "version": "1",
                 "description": "Double-entry transfers between accounts; amounts are integer "
                                "minor units. See docs/API.md."},
        "paths": {
            "/v1/accounts": {"post": _create("AccountIn", "AccountCreated", batch_items_max)},
            "/v1/accounts/{account_id}": {"get": _get("AccountOut", [_path_param("account_id")])},
            "/v1/accounts/{account_id}/transfers": {
                "get": _get("TransferPage", [_path_param("account_id"), *query])},
            "/v1/transfers": {"post": _create("TransferIn", "TransferCreated", batch_items_max)},
            "/v1/transfers/{transfer_id}": {
                "get": _get("TransferOut", [_path_param("transfer_id")])},
            "/healthz": {"get": {"responses": {"200": {"description": "process up"}}}},
            "/readyz": {"get": {"responses": {"200": {"description": "every shard answers"},
                                              "503": {"description": "a shard does not"}}}},
        },
        "components": {"schemas": schemas["$defs"]},
    }


def openapi_document(settings: Settings) -> dict[str, Any]:
    return _document(settings.api.batch_items_max, settings.api.history_page_max)
