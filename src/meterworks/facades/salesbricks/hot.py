"""`POST /salesbricks/api/v1/usage` answered below the framework.

A call of `api/hot.py`'s layer: the route's checks in its order (the key, then the body) and
its error shapes (`graphql_api.error_response`), without FastAPI's two mounts, routing and
dependency resolution. GraphQL itself runs as through the route.
"""

from __future__ import annotations

import re
from functools import partial

from starlette.requests import ClientDisconnect
from starlette.responses import Response

from meterworks.api.context import AppContext
from meterworks.api.hot import HotCall, Receive, Scope, body_of, header
from meterworks.facades.salesbricks.graphql_api import (
    IDEMPOTENCY_HEADER,
    UsageRequest,
    answer_usage,
    error_response,
)

_IDEMPOTENCY_HEADER = IDEMPOTENCY_HEADER.encode()


async def _usage(context: AppContext, scope: Scope, receive: Receive, _: re.Match[str]) -> Response:
    request = UsageRequest(
        api_key=header(scope, b"x-salesbricks-key", None),
        content_type=header(scope, b"content-type"),
        idempotency_key=header(scope, _IDEMPOTENCY_HEADER, None),
        body=partial(body_of, receive),
    )
    try:
        return await answer_usage(context, request)
    except ClientDisconnect:
        raise
    except Exception as exc:  # in the route's shapes; what it did not expect is logged, a 500
        return error_response(exc)


USAGE = HotCall(re.compile(r"/salesbricks/api/v1/usage/?"), _usage, error_response)
