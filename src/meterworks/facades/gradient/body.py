"""Request bodies read here rather than by FastAPI's body parsing.

FastAPI turns any error while reading a body into a generic 400, which would hide the body-size
limit's 413; reading the body in a dependency lets that error reach the facade's handler. The
JSON is parsed with exact numbers, and strings that no database can store (NUL, lone
surrogates) are refused here as 400 instead of failing later as a 500.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import Depends, Request

from meterworks.api.jsonbody import parse_body
from meterworks.errors import InvalidInput

MAX_DEPTH = 32


def _check_text(value: str) -> None:
    if "\x00" in value:
        raise InvalidInput("strings must not contain NUL characters", code="invalid_text")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise InvalidInput(
            "strings must be valid Unicode (no lone surrogates)", code="invalid_text"
        ) from exc


def check_strings(value: Any, depth: int = 0) -> None:
    """Refuse any string (or object key) PostgreSQL and SQLite cannot both store."""
    if depth > MAX_DEPTH:
        raise InvalidInput(f"the body nests deeper than {MAX_DEPTH} levels", code="invalid_body")
    if isinstance(value, str):
        _check_text(value)
    elif isinstance(value, dict):
        for key, item in value.items():
            _check_text(key)
            check_strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_strings(item, depth + 1)


async def json_body(request: Request) -> Any:
    """The body as exact JSON; None when it is empty."""
    raw = await request.body()
    if not raw.strip():
        return None
    try:
        payload = parse_body(raw)
    except RecursionError as exc:
        raise InvalidInput("the body nests too deeply", code="invalid_body") from exc
    check_strings(payload)
    return payload


Payload = Annotated[Any, Depends(json_body)]
