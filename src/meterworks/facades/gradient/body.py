"""Request bodies read here rather than by FastAPI's body parsing.

FastAPI turns any error while reading a body into a generic 400, which would hide the body-size
limit's 413; reading the body in a dependency lets that error reach the facade's handler. The
shared parser keeps numbers exact and refuses text no database can store (400).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from meterworks.api.jsonbody import parse_body


async def json_body(request: Request) -> Any:
    """The body as exact JSON; None when it is empty."""
    return parsed(await request.body())


def parsed(raw: bytes) -> Any:
    """A body as exact JSON; None when it is empty."""
    if not raw.strip():
        return None
    return parse_body(raw)


Payload = Annotated[Any, Depends(json_body)]
