"""POST/GET/PUT /v1/participants and POST/GET/DELETE /v1/keys.

Changes go to the registry's shard (switch/routing/registry.py) and are recorded there with
the acting key; this ingress then reads the registry again at once, so its next request sees
the change (other ingress processes within `auth.refresh_interval_ms`). Reads answer from
that copy. A key's secret is made here, shown once in the 201, and never stored.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Route

from actors.ledger.registry import (
    AUDITOR,
    OPERATOR,
    PARTICIPANT,
    SYSTEM,
    ApiKey,
    Participant,
)
from switch.api.auth import KeyRing, principal_of, require
from switch.api.errors import ApiError, error_response, json_response
from switch.api.keys import new_key
from switch.api.params import path_id
from switch.api.schemas import KEY, PARTICIPANT_STATUS
from switch.api.schemas import PARTICIPANT as PARTICIPANT_BODY
from switch.hub.model import reserved
from switch.routing.registry import RegistryClient

Parse = Callable[[Request, TypeAdapter[Any]], Awaitable[Any]]
# One object or an array: (whether an array, the items).
ParseMany = Callable[[Request, TypeAdapter[Any], TypeAdapter[Any]],
                     Awaitable[tuple[bool, list[Any]]]]
_STATUS_OF = {"ok": 201, "exists": 200, "unchanged": 200, "ledger_unknown": 422,
              "participant_not_found": 404, "key_not_found": 404}


def participant_json(participant: Participant) -> dict[str, Any]:
    return {"id": participant.id, "name": participant.name, "ledgers": participant.ledgers,
            "status": participant.status, "timestamp": participant.timestamp}


def key_json(key: ApiKey) -> dict[str, Any]:
    return {"key_id": key.key_id, "role": key.role, "participant_id": key.participant_id or None,
            "timestamp": key.timestamp, "revoked": key.revoked,
            "requests_per_second": key.requests_per_second or None, "burst": key.burst or None}


def _status(result: str) -> int:
    return 409 if result.startswith("exists_with_different_") else _STATUS_OF.get(result, 422)


def registry_routes(registry: RegistryClient, keyring: KeyRing, parse: Parse,
                    on_participant: Callable[[Participant, str], Awaitable[None]]
                    ) -> list[BaseRoute]:
    """`on_participant`: called with a participant created (or sent again) and the key that
    asked: the switch layer makes its accounts there."""
    async def create_participant(request: Request) -> Response:
        principal = require(request, OPERATOR)
        body = await parse(request, PARTICIPANT_BODY)
        if reserved(body.id):
            raise ApiError(422, "id_reserved")
        reply = await registry.create_participant(
            Participant(body.id, body.name, list(body.ledgers)), principal.key_id)
        await keyring.refresh()
        if reply.result in ("ok", "exists") and reply.participant is not None:
            await on_participant(reply.participant, principal.key_id)
        status = _status(reply.result)
        if status >= 400 and status != 409:
            return error_response(status, reply.result)
        shown = None if reply.participant is None else participant_json(reply.participant)
        return json_response({"result": reply.result, "participant": shown}, status)

    async def list_participants(request: Request) -> Response:
        principal = principal_of(request)
        await keyring.refresh()
        shown = [participant_json(p) for p in keyring.participants.values()
                 if not principal.is_participant or p.id == principal.participant_id]
        return json_response({"participants": shown})

    async def get_participant(request: Request) -> Response:
        principal = principal_of(request)
        participant_id = path_id(request, "participant_id")
        await keyring.refresh()
        participant = keyring.participants.get(participant_id)
        if participant is None or (principal.is_participant
                                   and participant_id != principal.participant_id):
            raise ApiError(404, "participant_not_found")
        return json_response(participant_json(participant))

    async def set_status(request: Request) -> Response:
        principal = require(request, OPERATOR)
        participant_id = path_id(request, "participant_id")
        body = await parse(request, PARTICIPANT_STATUS)
        reply = await registry.set_status(participant_id, body.status, principal.key_id)
        await keyring.refresh()
        if reply.participant is None:
            raise ApiError(404, "participant_not_found")
        return json_response({"result": reply.result,
                              "participant": participant_json(reply.participant)})

    async def create_key(request: Request) -> Response:
        principal = require(request, OPERATOR)
        body = await parse(request, KEY)
        if (body.role == PARTICIPANT) != (body.participant_id is not None):
            raise ApiError(422, "role_invalid")
        key_id, token, secret_hash = new_key()
        reply = await registry.create_key(
            ApiKey(key_id, body.role, body.participant_id or "", secret_hash,
                   requests_per_second=body.requests_per_second or 0, burst=body.burst or 0),
            principal.key_id)
        if reply.result != "ok" or reply.key is None:
            raise ApiError(_status(reply.result), reply.result)
        await keyring.refresh()
        return json_response({**key_json(reply.key), "secret": token}, 201)

    async def list_keys(request: Request) -> Response:
        require(request, OPERATOR, AUDITOR)
        await keyring.refresh()
        return json_response({"keys": [key_json(key) for key in keyring.keys.values()]})

    async def revoke_key(request: Request) -> Response:
        principal = require(request, OPERATOR)
        key_id = path_id(request, "key_id")
        reply = await registry.revoke_key(key_id, principal.key_id)
        if reply.key is None:
            raise ApiError(404, "key_not_found")
        await keyring.refresh()
        return json_response({"result": reply.result, "key": key_json(reply.key)})

    return [
        Route("/v1/participants", create_participant, methods=["POST"]),
        Route("/v1/participants", list_participants, methods=["GET"]),
        Route("/v1/participants/{participant_id}", get_participant, methods=["GET"]),
        Route("/v1/participants/{participant_id}", set_status, methods=["PUT"]),
        Route("/v1/keys", create_key, methods=["POST"]),
        Route("/v1/keys", list_keys, methods=["GET"]),
        Route("/v1/keys/{key_id}", revoke_key, methods=["DELETE"]),
    ]


OPERATOR_KEY_FILE = "operator.key"


def write_secret(path: Path, token: str, replace: bool = True) -> None:
    """A new file of mode 0600 from its first byte (never a symlink followed, never an older
    file's mode), fsynced, then renamed over any older one (`replace`; else linked only if
    there is none: FileExistsError), and the directory synced."""
    staging = path.with_name(f".{path.name}.{os.getpid()}")
    staging.unlink(missing_ok=True)
    descriptor = os.open(staging, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(descriptor, "w") as file:
        file.write(token + "\n")
        file.flush()
        os.fsync(file.fileno())
    if replace:
        os.replace(staging, path)
    else:
        try:
            os.link(staging, path)
        finally:
            staging.unlink()
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)
    finally:
        os.close(directory)


async def bootstrap_operator_key(registry: RegistryClient, keyring: KeyRing, data_dir: Path
                                 ) -> Path | None:
    """On a data directory with no key at all (its first start, or one made before keys
    existed): make the operator's key, write it to `<data-dir>/operator.key` (mode 0600)
    before it is recorded, and return the file's path. None when keys exist."""
    await keyring.refresh()
    if keyring.keys:
        return None
    key_id, token, secret_hash = new_key()
    path = data_dir / OPERATOR_KEY_FILE
    write_secret(path, token)
    reply = await registry.create_key(ApiKey(key_id, OPERATOR, "", secret_hash), SYSTEM)
    if reply.result != "ok":
        raise RuntimeError(f"the operator key was not recorded: {reply.result}")
    await keyring.refresh()
    return path
