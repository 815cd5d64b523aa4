"""Domain errors: a stable code, a message and details; no knowledge of any transport.

Each transport (native REST, the facades, the CLI) maps these once to its own shape.
"""

from __future__ import annotations

from typing import Any, ClassVar


class MeterworksError(Exception):
    code: ClassVar[str] = "error"
    # The native API's status for this kind of error; facades choose their own.
    status: ClassVar[int] = 400

    def __init__(self, message: str, *, details: Any = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details
        if code is not None:
            self.code = code  # type: ignore[misc]


class InvalidInput(MeterworksError):
    code = "invalid_input"
    status = 422


class NotFound(MeterworksError):
    code = "not_found"
    status = 404


class Conflict(MeterworksError):
    code = "conflict"
    status = 409


class Unauthorized(MeterworksError):
    code = "unauthorized"
    status = 401


class Forbidden(MeterworksError):
    code = "forbidden"
    status = 403


class PayloadTooLarge(MeterworksError):
    code = "payload_too_large"
    status = 413


class RateLimited(MeterworksError):
    code = "rate_limited"
    status = 429


class Unavailable(MeterworksError):
    """The service cannot answer now (e.g. the database is down); safe to retry."""

    code = "unavailable"
    status = 503
