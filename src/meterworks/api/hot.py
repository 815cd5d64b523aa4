"""`POST /v1/events` answered below the framework, the same way as its route.

A single-event call does little work of its own; FastAPI's middleware, routing and dependency
resolution around it cost more than the call (measured: about two thirds of the event loop's
time). This ASGI layer answers the calls it recognises exactly as `api/events.py` would, with
the same authentication, body rules and error shape, and passes everything else on: other
paths and methods, and calls with a query string (the route checks those for text no database
can store). The route stays for those, and for the API's description. `header` and `body_of`
serve the facades' layers of the same kind too (`facades/*/hot.py`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any, overload

from starlette.requests import ClientDisconnect

from meterworks.api.auth import organization_for_token_async, token_of
from meterworks.api.context import AppContext
from meterworks.api.errors import error_response
from meterworks.api.events import ingest
from meterworks.errors import MeterworksError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

PATH = "/v1/events"


class HotEvents:
    def __init__(self, app: ASGIApp, context: AppContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if (
            scope["type"] != "http"
            or scope["path"] != PATH
            or scope["method"] != "POST"
            or scope.get("query_string")
        ):
            await self.app(scope, receive, send)
            return
        try:
            organization_id = await organization_for_token_async(
                self.context, token_of(header(scope, b"authorization"))
            )
            response = await ingest(self.context, organization_id, await body_of(receive))
        except MeterworksError as exc:
            response = error_response(exc)
        except ClientDisconnect:
            return
        await response(scope, receive, send)


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
