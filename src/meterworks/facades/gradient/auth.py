"""GRADIENT-TOKEN: base64 of `<meterworks API token>:<partner key>`, checked on every call.

The API token goes through the one auth store every transport shares; the partner key must be
one the same organization created (`POST /v1/partners`). The per-token rate limit is applied
before either is verified, so a burst is refused without touching the database.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Request

from meterworks.api.auth import organization_for_token
from meterworks.api.context import AppContext, Context
from meterworks.errors import RateLimited, Unauthorized
from meterworks.facades.gradient.ratelimit import TokenBuckets

HEADER = "gradient-token"  # Starlette headers are case-insensitive: `Gradient-Token` matches


@dataclass(frozen=True, slots=True)
class Caller:
    organization_id: str
    partner_id: str


# The characters below U+0020 (C0 controls), which no token or partner key holds.
_CONTROL = re.compile(r"[\x00-\x1f]")


def decode_token(value: str) -> tuple[str, str]:
    """(API token, partner key) from a GRADIENT-TOKEN value, or Unauthorized."""
    try:
        decoded = base64.b64decode(value.strip(), validate=True).decode("utf-8")
    except (binascii.Error, ValueError) as exc:
        raise Unauthorized(
            "the GRADIENT-TOKEN header is not standard base64 of UTF-8 text", code="invalid_token"
        ) from exc
    if _CONTROL.search(decoded):
        raise Unauthorized(
            "the GRADIENT-TOKEN header encodes control characters", code="invalid_token"
        )
    # Neither an API token (`<id>.<secret>`) nor a partner key contains `:`.
    api_token, colon, partner_key = decoded.partition(":")
    if not colon or not api_token.strip() or not partner_key.strip():
        raise Unauthorized(
            "the GRADIENT-TOKEN header must encode `<api token>:<partner key>`",
            code="invalid_token",
        )
    return api_token.strip(), partner_key.strip()


def _verify(context: AppContext, api_token: str, partner_key: str) -> Caller:
    organization_id = organization_for_token(context, api_token)
    partner_id = context.authenticator.partner_for(context.db.read, organization_id, partner_key)
    return Caller(organization_id=organization_id, partner_id=partner_id)


async def current_caller(request: Request, context: Context) -> Caller:
    limiter: TokenBuckets = request.app.state.gradient_limiter
    return await caller_of(context, limiter, request.headers.get(HEADER, ""))


async def caller_of(context: AppContext, limiter: TokenBuckets, header: str) -> Caller:
    """The caller a GRADIENT-TOKEN header names, within its rate limit, or why not."""
    value = header.strip()
    if not value:
        raise Unauthorized("send the GRADIENT-TOKEN header", code="missing_token")
    wait = limiter.take(value)
    if wait is not None:
        raise RateLimited(
            f"Too Many Requests: at most {limiter.rate:g} requests per second per token",
            details={"retry_after": wait},
        )
    api_token, partner_key = decode_token(value)
    # Credentials verified moments ago are answered from the auth store's cache on the event
    # loop; anything else is checked in the database, on a worker thread.
    authenticator = context.authenticator
    organization_id = authenticator.cached(api_token)
    if organization_id is not None:
        partner_id = authenticator.cached_partner(organization_id, partner_key)
        if partner_id is not None:
            return Caller(organization_id=organization_id, partner_id=partner_id)
    return await asyncio.to_thread(_verify, context, api_token, partner_key)


GradientCaller = Annotated[Caller, Depends(current_caller)]
