"""Native error shape: `{"error": {"code", "message", "details"}}`, mapped once, here."""

from __future__ import annotations

import logging
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from meterworks.errors import MeterworksError, Unauthorized

log = logging.getLogger("meterworks.api")

_HTTP_CODES = {
    400: "bad_request",
    401: "unauthorized",
    403: "forbidden",
    404: "not_found",
    405: "method_not_allowed",
    409: "conflict",
    413: "payload_too_large",
    415: "unsupported_media_type",
    422: "invalid_request",
    429: "rate_limited",
}


def error_body(code: str, message: str, details: Any = None) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "details": details}}


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_jsonable(v) for v in value]
    if value is None or isinstance(value, bool | int | str):
        return value
    return str(value)


def validation_details(exc: RequestValidationError) -> tuple[str, str, list[dict[str, str]]]:
    """(code, message, details) for a request that did not match its declared shape."""
    details = []
    code = "invalid_request"
    for error in exc.errors():
        location = [str(part) for part in error.get("loc", ()) if part != "body"]
        if error.get("type") == "json_invalid":
            code = "invalid_json"
        details.append({"field": ".".join(location), "message": str(error.get("msg", ""))})
    message = (
        "the request body is not valid JSON"
        if code == "invalid_json"
        else "the request does not match the expected shape"
    )
    return code, message, details


def error_response(exc: MeterworksError) -> JSONResponse:
    """A domain error in the native shape, with its status."""
    headers = {"WWW-Authenticate": "Bearer"} if isinstance(exc, Unauthorized) else None
    return JSONResponse(
        error_body(exc.code, exc.message, _jsonable(exc.details)),
        status_code=exc.status,
        headers=headers,
    )


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(MeterworksError)
    async def domain_error(_: Request, exc: MeterworksError) -> JSONResponse:
        return error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        code, message, details = validation_details(exc)
        status = 400 if code == "invalid_json" else 422
        return JSONResponse(error_body(code, message, details), status_code=status)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if isinstance(exc.__cause__, MeterworksError):
            # FastAPI answers any error met while reading a body with a generic 400; the domain
            # error underneath (the body size limit's 413, unstorable text) is the real answer.
            return await domain_error(request, exc.__cause__)
        code = _HTTP_CODES.get(exc.status_code, "error")
        return JSONResponse(
            error_body(code, str(exc.detail)), status_code=exc.status_code, headers=exc.headers
        )

    @app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        return unexpected_error(exc)


def unexpected_error(exc: Exception) -> JSONResponse:
    """The answer to an error nothing else handled: logged, and a 500 that tells nothing more."""
    log.exception("unexpected error", exc_info=exc)
    return JSONResponse(
        error_body("internal_error", "an unexpected error occurred"), status_code=500
    )
