"""Single-usage calls answered below the framework, the same way as their routes.

A single-event call does little work of its own; FastAPI's middleware, routing and dependency
resolution around it cost more than the call (measured: about two thirds of the event loop's
time). `HotCalls` is one ASGI layer, in front of FastAPI and its middleware (app.py), that
answers the calls it is given, each exactly as its route would: the same checks in the same
order, and the API's own error shape; an unexpected error as the stack's last handler would (a
logged 500, then raised to the server). It answers only calls without a query string (routes
check query text for what no database can store, and flags and filters live there), and passes
everything else on. The routes stay for those, and for the API's description.

The native `POST /v1/events` is `NATIVE_EVENTS`; the two reads a dashboard polls, a
subscription's usage and its invoice preview, are `USAGE_READ` and `PREVIEW_READ`; the facades'
calls are in `facades/*/hot.py`.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, overload

from pydantic import BaseModel
from starlette.requests import ClientDisconnect
from starlette.responses import Response

from meterworks.api.auth import organization_for_token_async, token_of
from meterworks.api.billing import PreviewOut, billing
from meterworks.api.context import AppContext
from meterworks.api.errors import error_response, unexpected_error
from meterworks.api.events import ingest
from meterworks.api.jsonbody import check_text
from meterworks.api.subscriptions import usage_of
from meterworks.errors import MeterworksError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]
_T = TypeVar("_T")

# A call's answer: (context, scope, receive, the path's match) -> its response; refusals are
# raised as MeterworksError, and answered by the call's `render`.
Answer = Callable[[AppContext, Scope, Receive, re.Match[str]], Awaitable[Response]]


@dataclass(frozen=True, slots=True)
class HotCall:
    path: re.Pattern[str]  # matched whole; a group per path parameter, one segment each
    answer: Answer
    render: Callable[[MeterworksError], Response]
    method: str = "POST"


class HotCalls:
    def __init__(self, app: ASGIApp, context: AppContext, calls: Sequence[HotCall]) -> None:
        self.app = app
        self.context = context
        self.calls = tuple(calls)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and not scope.get("query_string"):
            method = scope["method"]
            for call in self.calls:
                match = call.path.fullmatch(scope["path"]) if call.method == method else None
                if match is not None:
                    try:
                        response = await call.answer(self.context, scope, receive, match)
                    except MeterworksError as exc:
                        response = call.render(exc)
                    except ClientDisconnect:
                        return
                    except Exception as exc:
                        await unexpected_error(exc)(scope, receive, send)
                        raise
                    await response(scope, receive, send)
                    return
        await self.app(scope, receive, send)


async def _organization(context: AppContext, scope: Scope) -> str:
    """The caller's organization, by the native API key in `Authorization: Bearer`."""
    return await organization_for_token_async(context, token_of(header(scope, b"authorization")))


async def _native_events(
    context: AppContext, scope: Scope, receive: Receive, _: re.Match[str]
) -> Response:
    organization_id = await _organization(context, scope)
    return await ingest(context, organization_id, await body_of(receive))


NATIVE_EVENTS = HotCall(re.compile(r"/v1/events"), _native_events, error_response)


async def run_read(context: AppContext, read: Callable[[], _T]) -> _T:
    """A read's result. On SQLite a read takes no lock (WAL) and is done in place: the hop to a
    worker thread and back would cost more than the read. PostgreSQL's go to a worker thread."""
    if context.db.dialect == "sqlite":
        return read()
    return await asyncio.to_thread(read)


def _json(model: BaseModel) -> Response:
    return Response(model.model_dump_json(), media_type="application/json")


async def _reader(context: AppContext, scope: Scope, match: re.Match[str]) -> tuple[str, str]:
    """(organization, subscription id) of a subscription's read, checked in its route's order:
    the id's text, then the key."""
    subscription_id = match.group(1)
    check_text(subscription_id, "subscription_id")
    return await _organization(context, scope), subscription_id


async def _usage(
    context: AppContext, scope: Scope, receive: Receive, match: re.Match[str]
) -> Response:
    organization_id, subscription_id = await _reader(context, scope, match)
    return _json(
        await run_read(context, lambda: usage_of(context, organization_id, subscription_id, None))
    )


async def _preview(
    context: AppContext, scope: Scope, receive: Receive, match: re.Match[str]
) -> Response:
    organization_id, subscription_id = await _reader(context, scope, match)
    service = billing(context)
    document = await run_read(
        context, lambda: service.stored_preview(organization_id, subscription_id)
    )
    if document is None:
        # The view must be rebuilt first: a write, which may wait its turn; never on the loop.
        document = await asyncio.to_thread(service.preview, organization_id, subscription_id)
    return _json(PreviewOut.model_validate(document))


_READ_PATH = r"/v1/subscriptions/([^/]+)/"
USAGE_READ = HotCall(re.compile(_READ_PATH + "usage"), _usage, error_response, method="GET")
PREVIEW_READ = HotCall(
    re.compile(_READ_PATH + "invoice-preview"), _preview, error_response, method="GET"
)


@overload
def header(scope: Scope, name: bytes) -> str: ...
@overload
def header(scope: Scope, name: bytes, default: None) -> str | None: ...
def header(scope: Scope, name: bytes, default: str | None = "") -> str | None:
    """The first value of a header (`name` in lower case, as servers pass it), as text."""
    for key, value in scope["headers"]:
        if key == name:
            return str(value.decode("latin-1"))
    return default


async def body_of(receive: Receive) -> bytes:
    """The whole request body; ClientDisconnect if the client went away first."""
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientDisconnect()
        chunks.append(message.get("body", b""))
        if not message.get("more_body", False):
            return b"".join(chunks)
