"""The Gradient (Synthesize) vendor API, mounted at `/gradient/api/vendor-api`.

Success bodies are `{"status": <int>, "message": "...", ...}` (lists and the integration
settings are answered bare, as the vendor does); every error is
`{"statusCode": <int>, "message": "..."}`, mapped here once from the domain errors.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException

from meterworks import __version__
from meterworks.api.context import AppContext
from meterworks.api.routes import add_routes
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
from meterworks.facades.gradient import counts, integration, organization, services
from meterworks.facades.gradient.ratelimit import TokenBuckets

log = logging.getLogger("meterworks.facades.gradient")
# The facade's rate limiter, in the context's extensions (for facades/gradient/hot.py).
LIMITER = "gradient.limiter"

# The vendor has no 422: a request it cannot take is a 400.
STATUS_OF: tuple[tuple[type[MeterworksError], int], ...] = (
    (InvalidInput, 400),
    (Unauthorized, 401),
    (Forbidden, 403),
    (NotFound, 404),
    (Conflict, 409),
    (PayloadTooLarge, 413),
    (RateLimited, 429),
    (Unavailable, 503),
)


def error_response(
    status: int, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"statusCode": status, "message": message}, status, headers=headers)


def status_of(exc: MeterworksError) -> int:
    for kind, status in STATUS_OF:
        if isinstance(exc, kind):
            return status
    return exc.status


def message_of(exc: MeterworksError) -> str:
    """The domain message, with per-field reasons folded in (Gradient has one message string)."""
    message = exc.message
    if isinstance(exc, Unauthorized):
        return f"Unauthorized: {message}"
    if isinstance(exc.details, list):
        reasons = [
            f"{item['field']} {item['message']}" if item.get("field") else str(item["message"])
            for item in exc.details
            if isinstance(item, dict) and "message" in item
        ]
        if reasons:
            message = f"{message}: {'; '.join(reasons)}"
    return message


def render(exc: MeterworksError) -> JSONResponse:
    """A domain error in the vendor's shape, with its status (and `Retry-After` when limited)."""
    headers: dict[str, str] | None = None
    if isinstance(exc, RateLimited) and isinstance(exc.details, dict):
        headers = {"Retry-After": str(exc.details.get("retry_after", 1))}
    return error_response(status_of(exc), message_of(exc), headers)


def install_error_handlers(sub_app: FastAPI) -> None:
    @sub_app.exception_handler(MeterworksError)
    async def domain_error(_: Request, exc: MeterworksError) -> JSONResponse:
        return render(exc)

    @sub_app.exception_handler(RequestValidationError)
    async def request_invalid(_: Request, exc: RequestValidationError) -> JSONResponse:
        kinds = {str(error.get("type")) for error in exc.errors()}
        if "json_invalid" in kinds:
            return error_response(400, "the request body is not valid JSON")
        return error_response(400, "the request does not match the expected shape")

    @sub_app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException) -> JSONResponse:
        if exc.status_code == 404:
            message = f"Cannot {request.method} {request.url.path}"
        elif exc.status_code == 400:
            message = "the request body is not valid JSON"
        else:
            message = str(exc.detail)
        return error_response(exc.status_code, message, exc.headers)

    @sub_app.exception_handler(Exception)
    async def unexpected(_: Request, exc: Exception) -> JSONResponse:
        log.exception("unexpected error", exc_info=exc)
        return error_response(500, "Internal server error")


def create_app(context: AppContext) -> FastAPI:
    sub_app = FastAPI(
        title="meterworks — Gradient (Synthesize) vendor API",
        version=__version__,
        description="Drop-in Gradient vendor API: services are meters, accounts are customers "
        "by external id, a unit count sets the account's level on the service's meter. "
        "Authenticate with `GRADIENT-TOKEN: base64(<api token>:<partner key>)`.",
    )
    sub_app.state.context = context
    limiter = TokenBuckets(context.settings.gradient_rate_limit_per_second)
    sub_app.state.gradient_limiter = context.extensions[LIMITER] = limiter
    context.extensions[counts.SYNC_MARKS] = integration.SyncMarks()
    if integration.refuse_while_suspended not in context.usage.guards:
        context.usage.guards.append(integration.refuse_while_suspended)
    install_error_handlers(sub_app)
    for module in (services, counts, organization):
        add_routes(sub_app, module.router)
    return sub_app
