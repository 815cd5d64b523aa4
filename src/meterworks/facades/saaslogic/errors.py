"""Saaslogic's error shape, `{"message": "<UPPER_SNAKE_CODE>"}`, mapped once, here.

Beside `message` the body carries `details` (a sentence for humans) and, for refused usage
details or fields, `errors`: `[{field, code, message}]`. Domain codes keep their names, upper-cased,
except where Saaslogic's own vocabulary differs (a meter is a resource, a quantity a value).
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from meterworks.api.errors import validation_details
from meterworks.errors import (
    Conflict,
    Forbidden,
    InvalidInput,
    MeterworksError,
    NotFound,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)

log = logging.getLogger("meterworks.facades.saaslogic")

UN_AUTHORIZED = "UN_AUTHORIZED"

# Saaslogic answers a malformed request 400, where the native API says 422.
_STATUS: tuple[tuple[type[MeterworksError], int], ...] = (
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (RateLimited, 429),
    (Unavailable, 503),
)

_VOCABULARY = {
    "invalid_input": "invalid_request",
    "meter_not_found": "resource_not_found",
    "meter_not_in_plan": "resource_not_in_plan",
    "invalid_quantity": "invalid_value",
    "negative_quantity": "negative_value",
    "unavailable": "service_unavailable",
}

_HTTP_CODES = {
    400: "BAD_REQUEST",
    401: UN_AUTHORIZED,
    403: "FORBIDDEN",
    404: "NOT_FOUND",
    405: "METHOD_NOT_ALLOWED",
    409: "CONFLICT",
    413: "PAYLOAD_TOO_LARGE",
    415: "UNSUPPORTED_MEDIA_TYPE",
    429: "RATE_LIMITED",
}


def saaslogic_code(code: str) -> str:
    """A domain code in Saaslogic's words: `meter_not_found` -> `RESOURCE_NOT_FOUND`."""
    return _VOCABULARY.get(code, code).upper()


def error_body(
    code: str, details: str, errors: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    body: dict[str, Any] = {"message": code, "details": details}
    if errors:
        body["errors"] = errors
    return body


def _status(exc: MeterworksError) -> int:
    for kind, status in _STATUS:
        if isinstance(exc, kind):
            return status
    return 400


def _items(details: Any) -> list[dict[str, Any]]:
    """Per-field problems of a domain error, codes translated; [] when it has none."""
    if not isinstance(details, list):
        return []
    items = []
    for item in details:
        if not isinstance(item, dict):
            continue
        entry = {
            str(k): v if v is None or isinstance(v, int | str) else str(v) for k, v in item.items()
        }
        if "code" in entry:
            entry["code"] = saaslogic_code(str(entry["code"]))
        items.append(entry)
    return items


def render(exc: MeterworksError) -> JSONResponse:
    if isinstance(exc, Unauthorized):
        # Saaslogic has one answer for every authentication failure.
        return JSONResponse(
            error_body(UN_AUTHORIZED, exc.message),
            status_code=401,
            headers={"WWW-Authenticate": "Bearer"},
        )
    items = _items(exc.details)
    status = _status(exc)
    code = saaslogic_code(exc.code)
    coded = [item for item in items if "code" in item]
    if exc.code == "invalid_batch" and coded:
        # The first refused item names the call's failure; `errors` lists every one.
        code = str(coded[0]["code"])
        if code == "SUBSCRIPTION_NOT_FOUND":
            status = 404
    return JSONResponse(error_body(code, exc.message, items), status_code=status)


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MeterworksError)
    async def domain_error(_: Request, exc: MeterworksError) -> JSONResponse:
        return render(exc)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, details = validation_details(exc)
        return JSONResponse(
            error_body(code.upper(), message, [{**d, "code": code.upper()} for d in details]),
            status_code=400,
        )

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> JSONResponse:
        code = _HTTP_CODES.get(exc.status_code, "ERROR")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return JSONResponse(
            error_body("INTERNAL_SERVER_ERROR", "an unexpected error occurred"), status_code=500
        )
