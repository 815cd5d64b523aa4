"""Exact JSON request bodies: numbers become Decimal (never float) before anything reads them."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from meterworks.errors import InvalidInput


class MalformedJSON(InvalidInput):
    """The body is not JSON at all (400), where JSON of the wrong shape is invalid input (422)."""

    code = "invalid_json"
    status = 400


class UnstorableText(InvalidInput):
    """Text no database can store: NUL characters (PostgreSQL) or lone surrogates (UTF-8)."""

    code = "invalid_text"
    status = 400


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


_EXACT = json.JSONDecoder(parse_float=Decimal, parse_constant=_reject_constant)


def loads(body: bytes) -> Any:
    """JSON with exact numbers: `0.1` is Decimal('0.1'); NaN and Infinity are refused.

    As `json.loads(body, parse_float=Decimal, parse_constant=...)` reads it, with one decoder
    made once: `json.loads` makes a decoder of its own for every call given options (half of a
    small body's cost)."""
    return _EXACT.decode(body.decode(json.detect_encoding(body), "surrogatepass"))


def check_text(value: str, where: str) -> None:
    if "\x00" in value:
        raise UnstorableText(f"{where} must not contain NUL characters", details=[{"field": where}])
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise UnstorableText(
            f"{where} must be valid Unicode (no lone surrogates)", details=[{"field": where}]
        ) from exc


def check_strings(value: Any) -> None:
    """Refuse a parsed body holding a string (or key) that cannot be stored."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            check_text(item, "body")
        elif isinstance(item, dict):
            for key, inner in item.items():
                check_text(key, "body")
                pending.append(inner)
        elif isinstance(item, list):
            pending.extend(item)


def _may_hold_unstorable_text(body: bytes) -> bool:
    # Raw NUL bytes and raw surrogates are not valid JSON text: only a \u escape can produce them,
    # so bodies without one (nearly all) skip the walk.
    return b"\\u" in body


def parse_body(body: bytes) -> Any:
    try:
        value = loads(body)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        detail = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc)
        raise MalformedJSON("the request body is not valid JSON", details=detail) from exc
    if _may_hold_unstorable_text(body):
        check_strings(value)
    return value


class DecimalJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            body = await self.body()
            value = loads(body)
            if _may_hold_unstorable_text(body):
                check_strings(value)
            self._json = value
        return self._json


class DecimalRoute(APIRoute):
    """A route whose body is JSON, parsed with exact decimals.

    Every body of this API is JSON, so it is read as JSON whatever `Content-Type` says: a plain
    `curl -d '{...}'` (sent as form data) works as users expect.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_handler(request: Request) -> Response:
            # Ids and filters reach SQL: a NUL in one would fail there, on PostgreSQL, as a 500.
            for name, value in request.path_params.items():
                if isinstance(value, str):
                    check_text(value, name)
            for name, value in request.query_params.multi_items():
                check_text(value, name)
            scope = request.scope
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = {**scope, "headers": headers}
            return await handler(DecimalJSONRequest(scope, request.receive))

        return exact_handler
