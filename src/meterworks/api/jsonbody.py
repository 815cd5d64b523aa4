"""Exact JSON request bodies: numbers become Decimal (never float) before anything reads them."""

from __future__ import annotations

import json
from collections.abc import Callable, Coroutine
from decimal import Decimal
from typing import Any

from fastapi import Request, Response
from fastapi.routing import APIRoute

from meterworks.errors import InvalidInput


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a valid JSON number")


def loads(body: bytes) -> Any:
    """JSON with exact numbers: `0.1` is Decimal('0.1'); NaN and Infinity are refused."""
    return json.loads(body, parse_float=Decimal, parse_constant=_reject_constant)


def parse_body(body: bytes) -> Any:
    try:
        return loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise InvalidInput(
            "the request body is not valid JSON", code="invalid_json", details=str(exc)
        ) from exc


class DecimalJSONRequest(Request):
    async def json(self) -> Any:
        if not hasattr(self, "_json"):
            self._json = loads(await self.body())
        return self._json


class DecimalRoute(APIRoute):
    """A route whose body is JSON, parsed with exact decimals.

    Every body of this API is JSON, so it is read as JSON whatever `Content-Type` says: a plain
    `curl -d '{...}'` (sent as form data) works as users expect.
    """

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()

        async def exact_handler(request: Request) -> Response:
            scope = request.scope
            headers = [(k, v) for k, v in scope["headers"] if k != b"content-type"]
            headers.append((b"content-type", b"application/json"))
            scope = {**scope, "headers": headers}
            return await handler(DecimalJSONRequest(scope, request.receive))

        return exact_handler
