"""`POST /saaslogic/v1/subscriptions/{id}/resources` answered below the framework.

The same layer as `api/hot.py`, for Saaslogic's usage report: the route's authentication,
body rules and error shape (`errors.render`), without FastAPI's mount, routing and dependency
resolution around a call that does little work of its own. Everything else passes on,
including calls with a query string; the route stays for those and for the API's description.
"""

from __future__ import annotations

import re

from starlette.requests import ClientDisconnect

from meterworks.api.context import AppContext
from meterworks.api.hot import ASGIApp, Receive, Scope, Send, body_of, header
from meterworks.api.jsonbody import check_text
from meterworks.errors import MeterworksError
from meterworks.facades.saaslogic.errors import render
from meterworks.facades.saaslogic.tokens import organization_of
from meterworks.facades.saaslogic.usage import report

# A path parameter matches one segment, as the route's `{subscription_id}` does.
PATH = re.compile(r"/saaslogic/v1/subscriptions/([^/]+)/resources")


class HotResources:
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
        subscription_id = match.group(1)
        try:
            # The checks of the route, in its order: path text, token, then the body.
            check_text(subscription_id, "subscription_id")
            organization_id = await organization_of(self.context, header(scope, b"authorization"))
            response = await report(
                self.context,
                organization_id,
                subscription_id,
                await body_of(receive),
                header(scope, b"idempotency-key", None),
            )
        except MeterworksError as exc:
            response = render(exc)
        except ClientDisconnect:
            return
        await response(scope, receive, send)
