"""Bearer tokens: an access key and a secret key exchanged for a signed, expiring JWT.

The access key is a meterworks API key's id and the secret key its secret, checked through the
one auth store every transport uses. The JWT (HS256) names the organization and the key; its
times come from the injected clock, so tests can move past expiry.
"""

from __future__ import annotations

import asyncio
import threading
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Annotated, Any

import jwt
from fastapi import APIRouter, Depends, Request
from fastapi.responses import PlainTextResponse
from pydantic import Field
from sqlalchemy import select

from meterworks.api.auth import organization_for_token
from meterworks.api.context import AppContext, Context, get_context
from meterworks.api.jsonbody import DecimalRoute
from meterworks.db import tables as t
from meterworks.db.dialect import insert_ignore
from meterworks.errors import Unauthorized
from meterworks.facades.saaslogic.formats import SaaslogicModel, saaslogic_date
from meterworks.kit.ids import random_secret

ALGORITHM = "HS256"
ISSUER = "meterworks"
# The audience keeps these tokens from being accepted anywhere else the key might sign.
AUDIENCE = "saaslogic"
SIGNING_KEY_NAME = "token_signing_key"
EXTENSION = "saaslogic.tokens"
# Verified tokens kept per process; past this many the cache starts again empty.
MAX_VERIFIED = 10_000


@dataclass(frozen=True, slots=True)
class IssuedToken:
    token: str
    expires_in: int
    expires_at: datetime


def stored_signing_key(context: AppContext) -> str:
    """The database's signing key, created by the first process that needs it."""
    with context.db.transaction() as conn:
        # Two processes racing both insert; the primary key keeps one and both read it back.
        conn.execute(
            insert_ignore(conn, t.server_secrets).values(
                name=SIGNING_KEY_NAME, value=random_secret(32), created_at=context.clock.now()
            )
        )
        value = conn.execute(
            select(t.server_secrets.c.value).where(t.server_secrets.c.name == SIGNING_KEY_NAME)
        ).scalar_one()
    return str(value)


class TokenService:
    def __init__(self, context: AppContext) -> None:
        self._context = context
        self._key: str | None = context.settings.token_signing_secret or None
        self._lock = threading.Lock()
        # Tokens whose signature and claims were verified: (organization id, expiry). Checking a
        # signature again would give the same answer; the expiry is checked on every call.
        self._verified: dict[str, tuple[str, int]] = {}

    @property
    def key_loaded(self) -> bool:
        return self._key is not None

    def load_key(self) -> None:
        self._signing_key()

    def _signing_key(self) -> str:
        # Read lazily: the schema is migrated when the server starts, after the app is built.
        if self._key is None:
            with self._lock:
                if self._key is None:
                    self._key = stored_signing_key(self._context)
        return self._key

    def issue(self, access_key: str, secret_key: str) -> IssuedToken:
        if not access_key.strip() or not secret_key.strip() or "." in access_key:
            raise Unauthorized("the access key or secret key is not valid")
        organization_id = organization_for_token(
            self._context, f"{access_key.strip()}.{secret_key.strip()}"
        )
        now = self._context.clock.now()
        lifetime = self._context.settings.saaslogic_token_seconds
        issued_at = int(now.timestamp())
        claims = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": access_key.strip(),
            "org": organization_id,
            "iat": issued_at,
            "exp": issued_at + lifetime,
        }
        token = jwt.encode(claims, self._signing_key(), algorithm=ALGORITHM)
        return IssuedToken(token, lifetime, datetime.fromtimestamp(issued_at + lifetime, tz=UTC))

    def organization_for(self, token: str) -> str:
        """The organization a valid, unexpired token was issued to, or Unauthorized."""
        verified = self._verified.get(token)
        if verified is None:
            verified = self._verify(token)
            if len(self._verified) >= MAX_VERIFIED:
                self._verified.clear()
            self._verified[token] = verified
        organization_id, expires = verified
        if self._context.clock.now().timestamp() >= expires:
            raise Unauthorized("the bearer token has expired; request a new one")
        return organization_id

    def _verify(self, token: str) -> tuple[str, int]:
        """(organization id, expiry) of a token signed by us, or Unauthorized."""
        try:
            claims: dict[str, Any] = jwt.decode(
                token,
                self._signing_key(),
                algorithms=[ALGORITHM],
                audience=AUDIENCE,
                issuer=ISSUER,
                # Expiry is checked below against the injected clock, not the system's.
                options={
                    "require": ["exp", "iat", "sub", "org"],
                    "verify_exp": False,
                    "verify_iat": False,
                    "verify_nbf": False,
                },
            )
        except jwt.PyJWTError as exc:
            raise Unauthorized("the bearer token is not valid") from exc
        expires = claims["exp"]
        organization_id = claims["org"]
        if not isinstance(expires, int) or not isinstance(organization_id, str):
            raise Unauthorized("the bearer token is not valid")
        return organization_id, expires


def token_service(context: AppContext) -> TokenService:
    service: TokenService = context.extensions[EXTENSION]
    return service


async def current_organization(
    request: Request, context: Annotated[AppContext, Depends(get_context)]
) -> str:
    return await organization_of(context, request.headers.get("authorization", ""))


async def organization_of(context: AppContext, authorization: str) -> str:
    """The organization of an `Authorization` header's bearer token, or Unauthorized."""
    scheme, _, token = authorization.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise Unauthorized("send `Authorization: Bearer <token>` (see POST /token)")
    service = token_service(context)
    if not service.key_loaded:
        # Only the first call of a process reads (or creates) the signing key in the database.
        await asyncio.to_thread(service.load_key)
    # Checking the signature and claims is CPU only: done in place, without a thread hop.
    return service.organization_for(token.strip())


OrganizationId = Annotated[str, Depends(current_organization)]


router = APIRouter(route_class=DecimalRoute, tags=["authentication"])


class TokenIn(SaaslogicModel):
    access_key: str = Field(description="the API key's id (the part of the key before the dot)")
    secret_key: str = Field(description="the API key's secret (the part after the dot)")


class TokenOut(SaaslogicModel):
    access_token: str = Field(description="send as `Authorization: Bearer <accessToken>`")
    token_type: str = "Bearer"
    expires_in: int = Field(description="seconds the token stays valid")
    expires_at: str = Field(description="UTC, without a zone, e.g. 2025-03-18T01:00:00")


@router.post("/token", response_model=TokenOut)
def create_token(body: TokenIn, context: Context) -> TokenOut:
    issued = token_service(context).issue(body.access_key, body.secret_key)
    return TokenOut(
        access_token=issued.token,
        expires_in=issued.expires_in,
        expires_at=saaslogic_date(issued.expires_at),
    )


@router.get(
    "/accesskey/{access_key}/secretkey/{secret_key}/token",
    response_class=PlainTextResponse,
    responses={200: {"content": {"text/plain": {}}, "description": "the bearer token (a JWT)"}},
)
def legacy_token(access_key: str, secret_key: str, context: Context) -> PlainTextResponse:
    """Saaslogic's older token call: the JWT alone, as plain text."""
    return PlainTextResponse(token_service(context).issue(access_key, secret_key).token)
