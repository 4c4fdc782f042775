"""Who is asking: API keys checked on every request but /healthz, /readyz and /openapi.json.

`KeyRing` keeps this ingress's copy of the keys and participants, read from the registry's
shard at start and every `auth.refresh_interval_ms` (a revocation reaches every ingress
process within that; the process that made a change reads it at once). `Authenticate` (pure
ASGI, outside the in-flight limit) answers 401 for a missing, malformed, unknown or revoked
key, 403 for a disabled participant's key, 429 beyond a key's rate, and otherwise puts the
`Principal` in the request's scope. What each role may do is checked by the routes
(`require`, and the object checks in switch/api/access.py).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
import random
import time
from dataclasses import dataclass
from typing import Protocol

from prometheus_client import Counter
from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from actors.ledger.registry import DISABLED, OPERATOR, PARTICIPANT, ApiKey, Participant
from switch.api.errors import ApiError, error_response
from switch.api.keys import parse_token, secret_matches
from switch.routing.registry import RegistryClient

log = logging.getLogger("payswitch.auth")
OPEN_PATHS = frozenset({"/healthz", "/readyz", "/openapi.json"})
BROWSER_PATHS = ("/dashboard",)  # a browser asks for a key (Basic) and sends it along
STAFF_PATHS = ("/metrics", "/dashboard", "/v1/cluster")  # the operator's and auditor's only
VERIFIED_MAX = 10_000  # tokens checked once, remembered until the keys change
# A request beyond its key's rate is answered 429 (Retry-After: 1) about one second late: a
# client flooding on many connections then sends one request a second on each, and costs the
# switch little; a client that waits Retry-After loses nothing. The delay is jittered (0.5 to
# 1.5 s), else a flood's connections come back all at once, as one burst a second (measured:
# the others' p99 rose 1.37x). At most THROTTLED_WAITING_MAX answers wait.
THROTTLE_DELAY_S = 1.0
THROTTLED_WAITING_MAX = 1024


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: str
    role: str
    participant_id: str  # "" unless the role is participant
    requests_per_second: float = 0.0  # its own rate (0: the switch's)
    burst: int = 0

    @property
    def is_participant(self) -> bool:
        return self.role == PARTICIPANT


class KeyRing:
    def __init__(self, registry: RegistryClient, refresh_interval_ms: int) -> None:
        self.registry = registry
        self.refresh_interval_s = refresh_interval_ms / 1000
        self.version = -1  # none read yet
        self.keys: dict[str, ApiKey] = {}
        self.participants: dict[str, Participant] = {}
        self._verified: dict[str, Principal] = {}  # token -> principal, while keys unchanged
        self._refreshing = asyncio.Lock()

    async def refresh(self) -> None:
        """Read the registry again if it changed. One read at a time, and never back to an
        older version (a slow read must not bring back a revoked key)."""
        async with self._refreshing:
            view = await self.registry.read(self.version)
            if view.version <= self.version or view.keys is None or view.participants is None:
                return
            self.keys = {key.key_id: key for key in view.keys}
            self.participants = {p.id: p for p in view.participants}
            self._verified = {}
            self.version = view.version

    async def refresh_forever(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_interval_s)
            try:
                await self.refresh()
            except Exception as error:  # the registry's shard is down: keep what we know
                log.warning("keys not refreshed: %r; the last ones read stay in force", error)

    def principal(self, token: str) -> Principal | None:
        """The key's principal; None for anything but a known, unrevoked key's token. A
        token checked once is remembered until the keys change (a revocation clears it)."""
        known = self._verified.get(token)
        if known is not None:
            return known
        parsed = parse_token(token)
        if parsed is None:
            return None
        key_id, secret = parsed
        key = self.keys.get(key_id)
        if not secret_matches(key_id, secret, None if key is None else key.secret_hash):
            return None
        if key is None or key.revoked:  # (secret_matches is False for an unknown key)
            return None
        if len(self._verified) >= VERIFIED_MAX:
            self._verified.clear()
        principal = self._verified[token] = Principal(
            key.key_id, key.role, key.participant_id, key.requests_per_second, key.burst)
        return principal

    def allows(self, principal: Principal) -> bool:
        """Whether this principal's key is still in force (a long stream checks it again)."""
        key = self.keys.get(principal.key_id)
        return key is not None and not key.revoked and not self.is_disabled(principal)

    def is_disabled(self, principal: Principal) -> bool:
        if not principal.participant_id:
            return False
        participant = self.participants.get(principal.participant_id)
        return participant is None or participant.status == DISABLED


class TokenBuckets:
    """A token bucket per key: `rate_per_s` tokens a second, at most `burst` saved (a key's
    own rate and burst, when it has them, instead), in this process. With several ingress
    processes they share theirs (switch/api/shared_buckets.py); this one, holding `1/workers`
    of every rate and burst, serves only a key the shared table has no room for."""

    def __init__(self, rate_per_s: float, burst: int, workers: int = 1) -> None:
        self.rate_per_s = rate_per_s
        self.burst = burst
        self.workers = workers
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, when)

    def wait_s(self, principal: Principal, now: float) -> float:
        """0 and one token taken, or how long until one is there (nothing taken)."""
        rate = (principal.requests_per_second or self.rate_per_s) / self.workers
        burst = max(1.0, (principal.burst or self.burst) / self.workers)
        tokens, when = self._buckets.get(principal.key_id, (burst, now))
        tokens = min(burst, tokens + (now - when) * rate)
        if tokens >= 1:
            self._buckets[principal.key_id] = (tokens - 1, now)
            return 0.0
        self._buckets[principal.key_id] = (tokens, now)
        return (1 - tokens) / rate


def token_of(header: str) -> str | None:
    """The key in an Authorization header: `Bearer <key>`, or Basic with the key as password
    (what a browser sends for the dashboard)."""
    scheme, _, value = header.partition(" ")
    scheme = scheme.lower()
    if scheme == "bearer":
        return value.strip()
    if scheme == "basic":
        try:
            decoded = base64.b64decode(value.strip(), validate=True).decode()
        except (binascii.Error, UnicodeDecodeError):
            return None
        return decoded.partition(":")[2]
    return None


class Buckets(Protocol):
    def wait_s(self, principal: Principal, now: float) -> float: ...


class Authenticate:
    def __init__(self, app: ASGIApp, keyring: KeyRing, buckets: Buckets,
                 failures: Counter) -> None:
        self.app = app
        self.keyring = keyring
        self.buckets = buckets
        self.failures = failures
        self._throttled_waiting = 0

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        header = _header(scope, b"authorization")
        token = None if header is None else token_of(header)
        principal = None if token is None else self.keyring.principal(token)
        if scope["path"] in OPEN_PATHS:  # served to anyone; a valid key may show more
            if principal is not None and self.keyring.allows(principal):
                scope["principal"] = principal
            await self.app(scope, receive, send)
            return
        if principal is None:
            self.failures.labels("unauthenticated").inc()
            browser = scope["path"].startswith(BROWSER_PATHS)
            response = error_response(401, "unauthenticated")
            response.headers["WWW-Authenticate"] = (
                'Basic realm="payswitch", charset="UTF-8"' if browser
                else 'Bearer realm="payswitch"')
            await response(scope, receive, send)
            return
        if self.keyring.is_disabled(principal):
            self.failures.labels("participant_disabled").inc()
            await error_response(403, "forbidden", "This key's participant is disabled.")(
                scope, receive, send)
            return
        if principal.role != OPERATOR and self.buckets.wait_s(principal, time.monotonic()):
            await self._throttle(scope, receive, send)
            return
        if principal.role == PARTICIPANT and scope["path"].startswith(STAFF_PATHS):
            await error_response(403, "forbidden")(scope, receive, send)
            return
        scope["principal"] = principal
        await self.app(scope, receive, send)


    async def _throttle(self, scope: Scope, receive: Receive, send: Send) -> None:
        """429 rate_limited, THROTTLE_DELAY_S late."""
        self.failures.labels("rate_limited").inc()
        if self._throttled_waiting < THROTTLED_WAITING_MAX:
            self._throttled_waiting += 1
            try:
                await asyncio.sleep(THROTTLE_DELAY_S * random.uniform(0.5, 1.5))
            finally:
                self._throttled_waiting -= 1
        await error_response(429, "rate_limited", retry_after_seconds=1)(scope, receive, send)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return None


def optional_principal(request: Request) -> Principal | None:
    """On an open path: the principal if a valid key was sent, else None."""
    principal = request.scope.get("principal")
    return principal if isinstance(principal, Principal) else None


def principal_of(request: Request) -> Principal:
    principal = request.scope.get("principal")
    if not isinstance(principal, Principal):  # a route reached without the middleware: a bug
        raise RuntimeError("no principal: the Authenticate middleware is not installed")
    return principal


def require(request: Request, *roles: str) -> Principal:
    """The principal, if its role is one of these; else 403 forbidden."""
    principal = principal_of(request)
    if principal.role not in roles:
        raise ApiError(403, "forbidden")
    return principal
