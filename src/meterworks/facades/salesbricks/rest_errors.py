"""REST v2 errors: `{"detail": "...", "code": "...", "errors"?: [{field, code, message}]}`.

400 for a request that is not valid (including an unknown subscription or brick named in a
body), 401 without a valid key, 404 for an unknown transaction or an unknown subscription or
brick in a path, 409 for a transaction_id reused with another payload, 413, 429, 503.
"""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.responses import Response

from meterworks.errors import Conflict, InvalidInput, MeterworksError, NotFound, Unauthorized
from meterworks.facades.salesbricks.rendering import rest_error
from meterworks.facades.salesbricks.translate import first_problem, rest_field, vendor_code

log = logging.getLogger("meterworks.facades.salesbricks")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    404: "not_found",
    405: "method_not_allowed",
    413: "payload_too_large",
    415: "unsupported_media_type",
}


def _status(exc: MeterworksError) -> int:
    if isinstance(exc, InvalidInput):
        return 400
    if isinstance(exc, Conflict) and exc.code == "event_voided":
        return 404  # a deleted entry is gone, as far as the client can see
    return exc.status


def _field_errors(exc: MeterworksError) -> list[dict[str, Any]]:
    if not isinstance(exc.details, list):
        return []
    items = []
    for item in exc.details:
        if not isinstance(item, dict):
            continue
        code = vendor_code(str(item.get("code") or exc.code))
        field = item.get("field")
        items.append(
            {
                "field": (rest_field(str(field)) or field) if field else None,
                "code": code,
                "message": item.get("message") or exc.message,
            }
        )
    return items


def domain_error_response(exc: MeterworksError) -> Response:
    code, _, message = first_problem(exc.code, exc.details)
    headers = {"WWW-Authenticate": "X-SALESBRICKS-KEY"} if isinstance(exc, Unauthorized) else None
    errors = _field_errors(exc) if isinstance(exc, InvalidInput | NotFound) else []
    return rest_error(
        _status(exc),
        vendor_code(code),
        message or exc.message,
        errors or None,
        headers,
    )


def install_rest_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MeterworksError)
    async def domain_error(_: Request, exc: MeterworksError) -> Response:
        return domain_error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> Response:
        errors = [
            {
                "field": ".".join(str(p) for p in e.get("loc", ()) if p not in ("body", "query")),
                "code": "invalid",
                "message": str(e.get("msg", "")),
            }
            for e in exc.errors()
        ]
        return rest_error(400, "invalid_request", "the request is not valid", errors)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "error")
        return rest_error(exc.status_code, code, str(exc.detail), headers=exc.headers)

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> Response:
        log.exception("unexpected error in the Salesbricks REST API", exc_info=exc)
        return rest_error(500, "internal_error", "an unexpected error occurred")
