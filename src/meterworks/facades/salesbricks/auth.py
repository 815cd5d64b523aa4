"""`X-SALESBRICKS-KEY: <meterworks API token>`, checked against the one auth store."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends
from starlette.requests import Request

from meterworks.api.auth import organization_for_token_async
from meterworks.api.context import AppContext
from meterworks.errors import Unauthorized

KEY_HEADER = "x-salesbricks-key"


def api_token(header: str | None) -> str:
    """The token a `X-SALESBRICKS-KEY` value carries (None when the header is absent)."""
    token = (header or "").strip()
    if not token:
        raise Unauthorized(
            "send your API token in the `X-SALESBRICKS-KEY` header", code="missing_api_key"
        )
    return token


async def organization_for_request_async(request: Request, context: AppContext) -> str:
    """The same on the event loop: a cached token costs no hop to a worker thread."""
    return await organization_for_token_async(context, api_token(request.headers.get(KEY_HEADER)))


async def _request_organization(request: Request) -> str:
    context: AppContext = request.app.state.context
    return await organization_for_request_async(request, context)


Organization = Annotated[str, Depends(_request_organization)]
