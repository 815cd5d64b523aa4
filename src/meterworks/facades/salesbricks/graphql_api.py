"""The Usage API over HTTP: `POST /salesbricks/api/v1/usage`, GraphQL with the vendor's schema.

HTTP status: 200 when the operation ran (a refused mutation is a GraphQL error with
`extensions.code` beside `"data": null`); 400 when the request could not run at all (not JSON,
a syntax error, an unknown field, a variable of the wrong type); 401 without a valid key; 400
and 409 for idempotency-key misuse; 503 when the database is not available.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from graphql import GraphQLError, GraphQLSyntaxError
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.responses import Response
from strawberry.exceptions import MissingQueryError
from strawberry.schema.exceptions import CannotGetOperationTypeError, InvalidOperationTypeError
from strawberry.types import ExecutionResult
from strawberry.types.execution import PreExecutionError

from meterworks.api.auth import organization_for_token_async
from meterworks.api.context import AppContext
from meterworks.errors import (
    Forbidden,
    InvalidInput,
    MeterworksError,
    PayloadTooLarge,
    RateLimited,
    Unauthorized,
    Unavailable,
)
from meterworks.facades.salesbricks import direct
from meterworks.facades.salesbricks.auth import KEY_HEADER, api_token
from meterworks.facades.salesbricks.bodies import check_strings, parse_json
from meterworks.facades.salesbricks.idempotency import (
    Claimed,
    IdempotencyStore,
    InFlight,
    Mismatch,
    Replay,
    request_hash,
)
from meterworks.facades.salesbricks.rendering import graphql_error_body
from meterworks.facades.salesbricks.schema import UNAVAILABLE, UsageContext, schema
from meterworks.facades.salesbricks.translate import MAX_IDEMPOTENCY_KEY

log = logging.getLogger("meterworks.facades.salesbricks")

IDEMPOTENCY_HEADER = "x-salesbricks-idempotent-operation-key"
IDEMPOTENCY_SCOPE = "salesbricks:v1"
INTERNAL = "INTERNAL_SERVER_ERROR"

# Domain errors that stop a request before GraphQL runs, with their request-level codes.
_REQUEST_ERRORS: tuple[tuple[type[MeterworksError], str], ...] = (
    (Unauthorized, "UNAUTHENTICATED"),
    (Forbidden, "FORBIDDEN"),
    (PayloadTooLarge, "PAYLOAD_TOO_LARGE"),
    (RateLimited, "RATE_LIMITED"),
    (Unavailable, UNAVAILABLE),
)
_HTTP_CODES = {404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED", 415: "UNSUPPORTED_MEDIA_TYPE"}


class BadRequest(Exception):
    def __init__(self, message: str, code: str = "BAD_REQUEST", status_code: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.status_code = status_code


def _json(status_code: int, body: Any, headers: Mapping[str, str] | None = None) -> Response:
    return Response(
        json.dumps(body, separators=(",", ":")),
        status_code=status_code,
        media_type="application/json",
        headers=headers,
    )


def _graphql_request(raw: bytes, content_type: str) -> dict[str, Any]:
    """`{query, variables?, operationName?}` from a JSON body (or a bare application/graphql)."""
    try:
        if content_type.startswith("application/graphql"):
            payload: Any = {"query": raw.decode("utf-8")}
            check_strings(payload)
        else:
            payload = parse_json(raw, exact=False)
    except UnicodeDecodeError as exc:
        raise BadRequest("the body must be UTF-8") from exc
    except InvalidInput as exc:
        raise BadRequest(
            f"the body must be JSON {{query, variables, operationName}}: {exc}"
        ) from exc
    if not isinstance(payload, dict) or not isinstance(payload.get("query"), str):
        raise BadRequest("the body must be an object with a `query` string")
    if not isinstance(payload.get("variables") or {}, dict):
        raise BadRequest("`variables` must be an object")
    if not isinstance(payload.get("operationName") or "", str):
        raise BadRequest("`operationName` must be a string")
    return payload


def _client_key(header: str | None) -> str | None:
    if header is None:
        return None
    key = header.strip()
    if not key or len(key) > MAX_IDEMPOTENCY_KEY:
        raise BadRequest(
            f"`X-SALESBRICKS-IDEMPOTENT-OPERATION-KEY` must be 1 to {MAX_IDEMPOTENCY_KEY} "
            "characters",
            code="INVALID_IDEMPOTENCY_KEY",
        )
    return key


def _formatted(error: GraphQLError, executed: bool) -> dict[str, Any]:
    item = error.formatted
    extensions = dict(item.get("extensions") or {})
    if "code" not in extensions:
        original = error.original_error
        if isinstance(error, GraphQLSyntaxError):
            extensions["code"] = "GRAPHQL_PARSE_FAILED"
        elif original is not None and not isinstance(original, GraphQLError):
            log.error("unexpected error in a Salesbricks mutation", exc_info=original)
            extensions["code"] = INTERNAL
            item["message"] = "an unexpected error occurred"
        elif executed and error.path is None:
            extensions["code"] = "BAD_USER_INPUT"  # a variable that does not fit its type
        else:
            extensions["code"] = "GRAPHQL_VALIDATION_FAILED"
    item["extensions"] = extensions
    return dict(item)


def _operation_problem(exc: Exception) -> str:
    if isinstance(exc, CannotGetOperationTypeError):
        return exc.as_http_error_reason()
    return "the document has no operation to run"


def render_result(result: ExecutionResult) -> tuple[int, dict[str, Any]]:
    executed = not isinstance(result, PreExecutionError)
    errors = [_formatted(e, executed) for e in result.errors or []]
    codes = {e["extensions"]["code"] for e in errors}
    ran = executed and (result.data is not None or any("path" in e for e in errors))
    body: dict[str, Any] = {"data": result.data} if ran else {}
    if errors:
        body["errors"] = errors
    if UNAVAILABLE in codes:
        return 503, body
    if INTERNAL in codes:
        return 500, body
    return (200 if ran else 400), body


@dataclass(frozen=True, slots=True)
class UsageRequest:
    """What a Usage API call is answered from; its body is read only once the key is good."""

    api_key: str | None  # X-SALESBRICKS-KEY
    content_type: str
    idempotency_key: str | None  # X-SALESBRICKS-IDEMPOTENT-OPERATION-KEY, as sent
    body: Callable[[], Awaitable[bytes]]


async def usage_endpoint(request: Request) -> Response:
    return await answer_usage(
        request.app.state.context,
        UsageRequest(
            api_key=request.headers.get(KEY_HEADER),
            content_type=request.headers.get("content-type", ""),
            idempotency_key=request.headers.get(IDEMPOTENCY_HEADER),
            body=request.body,
        ),
    )


async def answer_usage(context: AppContext, request: UsageRequest) -> Response:
    """The answer to one call, through the route or below the framework (`hot.py`).

    Raises BadRequest and MeterworksError for what stops the call before GraphQL runs;
    `error_response` answers them."""
    organization_id = await organization_for_token_async(context, api_token(request.api_key))
    payload = _graphql_request(await request.body(), request.content_type)
    client_key = _client_key(request.idempotency_key)
    store = IdempotencyStore(context.db, IDEMPOTENCY_SCOPE)
    if client_key is not None:
        claim = await run_in_threadpool(
            store.claim, organization_id, client_key, request_hash(payload), context.clock.now()
        )
        if isinstance(claim, Replay):
            return Response(
                claim.body,
                status_code=claim.status_code,
                media_type="application/json",
                headers={"Idempotent-Replayed": "true"},
            )
        if isinstance(claim, Mismatch):
            raise BadRequest(
                "this idempotency key was already used with a different request",
                code="IDEMPOTENCY_KEY_REUSED",
            )
        if isinstance(claim, InFlight):
            raise BadRequest(
                "a request with this idempotency key is still in progress; retry later",
                code="IDEMPOTENCY_KEY_IN_USE",
                status_code=409,
            )
        assert isinstance(claim, Claimed)
    try:
        usage = UsageContext(context, organization_id, client_key)
        try:
            # The usual documents run without the executor; it answers the rest.
            result = await direct.execute(payload, usage)
            if result is None:
                result = await schema.execute(
                    payload["query"],
                    variable_values=payload.get("variables"),
                    context_value=usage,
                    operation_name=payload.get("operationName"),
                )
        except (CannotGetOperationTypeError, InvalidOperationTypeError, MissingQueryError) as exc:
            # No operation to run (none named so, or several and no operationName).
            result = PreExecutionError(
                data=None, errors=[GraphQLError(_operation_problem(exc))], extensions=None
            )
        status_code, body = render_result(result)
        text = json.dumps(body, separators=(",", ":"))
    except BaseException:
        if client_key is not None:
            await run_in_threadpool(store.release, organization_id, client_key)
        raise
    if client_key is not None:
        # A failure on our side is not an answer to keep: the retry must run again (and the
        # ledger, keyed from the same client key, still dedupes whatever did land).
        if status_code >= 500:
            await run_in_threadpool(store.release, organization_id, client_key)
        else:
            await run_in_threadpool(store.complete, organization_id, client_key, status_code, text)
    return Response(text, status_code=status_code, media_type="application/json")


def error_response(exc: Exception) -> Response:
    """What answers a call that stopped before GraphQL ran, in the API's shape."""
    if isinstance(exc, BadRequest):
        return _json(exc.status_code, graphql_error_body(exc.message, exc.code))
    if isinstance(exc, MeterworksError):
        for kind, code in _REQUEST_ERRORS:
            if isinstance(exc, kind):
                return _json(exc.status, graphql_error_body(exc.message, code))
        return _json(400, graphql_error_body(exc.message, exc.code.upper()))
    if isinstance(exc, RequestValidationError):
        return _json(400, graphql_error_body("the request is not valid", "BAD_REQUEST"))
    log.exception("unexpected error in the Salesbricks Usage API", exc_info=exc)
    return _json(500, graphql_error_body("an unexpected error occurred", INTERNAL))


def create_graphql_app(context: AppContext) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context = context
    for path in ("/usage", "/usage/"):
        app.add_api_route(path, usage_endpoint, methods=["POST"], include_in_schema=False)

    async def handled(_: Request, exc: Exception) -> Response:
        return error_response(exc)

    for kind in (BadRequest, MeterworksError, RequestValidationError, Exception):
        app.add_exception_handler(kind, handled)

    @app.exception_handler(HTTPException)
    async def http_error(_: Request, exc: HTTPException) -> Response:
        code = _HTTP_CODES.get(exc.status_code, "BAD_REQUEST")
        return _json(exc.status_code, graphql_error_body(str(exc.detail), code), exc.headers)

    return app
