"""Native authentication: `Authorization: Bearer <key id>.<secret>`."""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import Depends, Request

from meterworks.api.context import AppContext, get_context
from meterworks.errors import Unauthorized


def bearer_token(request: Request) -> str:
    return token_of(request.headers.get("authorization", ""))


def token_of(header: str) -> str:
    """The key in an `Authorization` header's value."""
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send `Authorization: Bearer <api key>`", code="missing_api_key")
    return token.strip()


def organization_for_token(context: AppContext, token: str) -> str:
    """The one auth store behind every transport."""
    return context.authenticator.organization_for(context.db.read, token)


async def organization_for_token_async(context: AppContext, token: str) -> str:
    """The same, for the event loop: a recently verified token is answered from the cache in
    place; only a lookup in the database goes to a worker thread."""
    cached = context.authenticator.cached(token)
    if cached is not None:
        return cached
    return await asyncio.to_thread(organization_for_token, context, token)


async def current_organization(
    request: Request, context: Annotated[AppContext, Depends(get_context)]
) -> str:
    return await organization_for_token_async(context, bearer_token(request))


OrganizationId = Annotated[str, Depends(current_organization)]
