"""`POST /gradient/api/vendor-api/service/{serviceId}/count` answered below the framework.

The same layer as `api/hot.py`, for Gradient's set unit count: the route's checks in the route's
order (the path's text, the token and its rate limit, the body) and its error shape
(`app.render`), without FastAPI's mount, routing and dependency resolution. Everything else
passes on, including calls with a query string (`no_build`); the route stays for those and for
the API's description.
"""

from __future__ import annotations

import re

from fastapi.responses import JSONResponse
from starlette.requests import ClientDisconnect

from meterworks.api.context import AppContext
from meterworks.api.hot import ASGIApp, Receive, Scope, Send, body_of, header
from meterworks.api.jsonbody import check_text
from meterworks.errors import MeterworksError
from meterworks.facades.gradient.app import LIMITER, render
from meterworks.facades.gradient.auth import caller_of
from meterworks.facades.gradient.body import parsed
from meterworks.facades.gradient.counts import set_count
from meterworks.facades.gradient.ratelimit import TokenBuckets

# A path parameter matches one segment, as the route's `{serviceId}` does.
PATH = re.compile(r"/gradient/api/vendor-api/service/([^/]+)/count")


class HotUnitCounts:
    def __init__(self, app: ASGIApp, context: AppContext) -> None:
        self.app = app
        self.context = context

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        match = (
            PATH.fullmatch(scope["path"])
            if scope["type"] == "http" and scope["method"] == "POST"
            else None
        )
        if match is None or scope.get("query_string"):
            await self.app(scope, receive, send)
            return
        service_id = match.group(1)
        limiter: TokenBuckets = self.context.extensions[LIMITER]
        response: JSONResponse
        try:
            check_text(service_id, "serviceId")
            caller = await caller_of(self.context, limiter, header(scope, b"gradient-token"))
            payload = parsed(await body_of(receive))
            answer = await set_count(self.context, caller, service_id, payload, None)
            response = JSONResponse(answer, status_code=201)
        except MeterworksError as exc:
            response = render(exc)
        except ClientDisconnect:
            return
        await response(scope, receive, send)
