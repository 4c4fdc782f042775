"""API keys: how a secret is made, shown once, stored as a hash, and checked.

A key as the client holds it is `psk_<key_id>_<secret>`: the key id (16 hex digits) names
the stored key, the secret is 32 random bytes (base64url). Only HMAC-SHA-256 of the secret is
stored (in the registry shard's log: actors/ledger/registry.py). A slow password KDF would add
nothing: a 256-bit random secret cannot be guessed, however fast the hash. Checks compare in
constant time, and an unknown key id costs the same work as a wrong secret.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import secrets

KEY_PREFIX = "psk_"
KEY_ID_HEX_DIGITS = 16
SECRET_BYTES = 32
TOKEN_LENGTH_MAX = 128  # a longer header value is not a key: refused before any work
_TOKEN = re.compile(r"psk_([0-9a-f]{16})_([A-Za-z0-9_-]{43})")
_HASH_KEY = b"payswitch api key v1"  # domain separation: these hashes are for nothing else
_DECOY_HASH = bytes(32)  # checked against when the key id is unknown: the same work


def new_key() -> tuple[str, str, bytes]:
    """A fresh key: (key id, the token to show once, the secret's hash to store)."""
    key_id = secrets.token_hex(KEY_ID_HEX_DIGITS // 2)
    secret = base64.urlsafe_b64encode(secrets.token_bytes(SECRET_BYTES)).decode().rstrip("=")
    return key_id, f"{KEY_PREFIX}{key_id}_{secret}", secret_hash(key_id, secret)


def secret_hash(key_id: str, secret: str) -> bytes:
    return hmac.new(_HASH_KEY, f"{key_id}.{secret}".encode(), hashlib.sha256).digest()


def parse_token(token: str) -> tuple[str, str] | None:
    """(key id, secret) of a well-formed token; None for anything else."""
    if len(token) > TOKEN_LENGTH_MAX:
        return None
    match = _TOKEN.fullmatch(token)
    return None if match is None else (match.group(1), match.group(2))


def secret_matches(key_id: str, secret: str, stored_hash: bytes | None) -> bool:
    """Constant time, and as slow for an unknown key (stored_hash None) as for a known one."""
    given = secret_hash(key_id, secret)
    expected = _DECOY_HASH if stored_hash is None else stored_hash
    return hmac.compare_digest(given, expected) and stored_hash is not None
