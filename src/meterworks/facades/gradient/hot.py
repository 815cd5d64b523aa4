"""`POST /gradient/api/vendor-api/service/{serviceId}/count` answered below the framework.

A call of `api/hot.py`'s layer: the route's checks in its order (the path's text, the token and
its rate limit, the body) and its error shape (`app.render`), without FastAPI's mount, routing
and dependency resolution. A call with `no_build` has a query string, so the route answers it.
"""

from __future__ import annotations

import re

from fastapi.responses import JSONResponse
from starlette.responses import Response

from meterworks.api.context import AppContext
from meterworks.api.hot import HotCall, Receive, Scope, body_of, header
from meterworks.api.jsonbody import check_text
from meterworks.facades.gradient.app import LIMITER, render
from meterworks.facades.gradient.auth import caller_of
from meterworks.facades.gradient.body import parsed
from meterworks.facades.gradient.counts import set_count
from meterworks.facades.gradient.ratelimit import TokenBuckets


async def _set_count(
    context: AppContext, scope: Scope, receive: Receive, match: re.Match[str]
) -> Response:
    service_id = match.group(1)
    check_text(service_id, "serviceId")
    limiter: TokenBuckets = context.extensions[LIMITER]
    caller = await caller_of(context, limiter, header(scope, b"gradient-token"))
    payload = parsed(await body_of(receive))
    answer = await set_count(context, caller, service_id, payload, None)
    return JSONResponse(answer, status_code=201)


SET_COUNT = HotCall(
    re.compile(r"/gradient/api/vendor-api/service/([^/]+)/count"), _set_count, render
)
