"""What a request body may hold before it reaches the domain: text both databases can store.

PostgreSQL refuses NUL in text and JSON, and neither database takes a lone surrogate; such a
string would fail deep in a write as a 500, so it is refused up front as a client error.
"""

from __future__ import annotations

import json
from typing import Any

from meterworks.api.jsonbody import loads
from meterworks.errors import InvalidInput

MAX_DEPTH = 32


def text_problem(value: str) -> str | None:
    if "\x00" in value:
        return "strings must not contain NUL characters"
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return "strings must be valid Unicode (no lone surrogates)"
    return None


def check_strings(value: Any, depth: int = 0) -> None:
    if depth > MAX_DEPTH:
        raise InvalidInput(f"the body nests deeper than {MAX_DEPTH} levels", code="invalid_body")
    texts: list[Any] = []
    if isinstance(value, str):
        texts = [value]
    elif isinstance(value, dict):
        texts = list(value)
        for item in value.values():
            check_strings(item, depth + 1)
    elif isinstance(value, list):
        for item in value:
            check_strings(item, depth + 1)
    for text in texts:
        problem = text_problem(str(text))
        if problem is not None:
            raise InvalidInput(problem, code="invalid_text")


def parse_json(raw: bytes, *, exact: bool) -> Any:
    """JSON a database can store; numbers as Decimal when `exact` (REST quantities)."""
    try:
        value = loads(raw) if exact else json.loads(raw)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise InvalidInput("the request body is not valid JSON", code="invalid_json") from exc
    check_strings(value)
    return value
