"""JSON answers in Salesbricks' shapes, with quantities as exact JSON numbers.

Salesbricks answers quantities as numbers (`"used": 30`); a Decimal is written out digit for
digit (`113`, `0.5`), never through a float.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

from starlette.responses import Response

from meterworks.kit.decimals import format_decimal


def exact_json(value: Any) -> str:
    if isinstance(value, Decimal):
        return format_decimal(value)
    if isinstance(value, Mapping):
        items = (f"{json.dumps(str(k))}:{exact_json(v)}" for k, v in value.items())
        return "{" + ",".join(items) + "}"
    if isinstance(value, list | tuple):
        return "[" + ",".join(exact_json(v) for v in value) + "]"
    return json.dumps(value, default=str)


class ExactJSONResponse(Response):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return exact_json(content).encode()


def rest_error(
    status_code: int,
    code: str,
    detail: str,
    errors: list[dict[str, Any]] | None = None,
    headers: Mapping[str, str] | None = None,
) -> ExactJSONResponse:
    """REST v2 errors: `{"detail", "code"}`, plus `errors` per field when there are several."""
    body: dict[str, Any] = {"detail": detail, "code": code}
    if errors:
        body["errors"] = errors
    return ExactJSONResponse(body, status_code=status_code, headers=headers)


def graphql_error_body(message: str, code: str) -> dict[str, Any]:
    """A request-level GraphQL error, for what fails before any field runs."""
    return {"errors": [{"message": message, "extensions": {"code": code}}]}
