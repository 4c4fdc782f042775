"""What the client raises: one exception per kind of HTTP answer, each with the stable `code`.

Per-item results of arrays (`exceeds_credits`, `exists`, ...) are values, never raised.
"""

from __future__ import annotations


class PayswitchError(Exception):
    """An answer that is not a result: its HTTP status, stable code and message."""

    status = 0

    def __init__(self, code: str, message: str, status: int | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        if status is not None:
            self.status = status


class BadRequest(PayswitchError):
    status = 400


class Unauthenticated(PayswitchError):
    status = 401


class Forbidden(PayswitchError):
    status = 403


class NotFound(PayswitchError):
    status = 404


class Conflict(PayswitchError):
    status = 409


class Rejected(PayswitchError):
    status = 422


class RateLimited(PayswitchError):
    status = 429


class Unavailable(PayswitchError):
    status = 503


class ServerError(PayswitchError):
    status = 500


class DeadlineExceeded(PayswitchError):
    """Retries went on until the call's deadline: the item may or may not have been applied.
    Send it again with the same id (a repeat answers `exists`)."""


class IdConflict(PayswitchError):
    """A retried item answered `exists_with_different_*`: another request used this id with
    other fields. Nothing of this call was applied under it."""


_BY_STATUS: dict[int, type[PayswitchError]] = {
    cls.status: cls for cls in (BadRequest, Unauthenticated, Forbidden, NotFound, Conflict,
                                Rejected, RateLimited, Unavailable, ServerError)}


def error_for(status: int, body: object) -> PayswitchError:
    """The exception for an error answer (its body: {"code", "message"})."""
    code, message = "http_error", f"HTTP {status}"
    if isinstance(body, dict):
        code = str(body.get("code", code))
        message = str(body.get("message", message))
    cls = _BY_STATUS.get(status) or (ServerError if status >= 500 else PayswitchError)
    return cls(code, message, status)
