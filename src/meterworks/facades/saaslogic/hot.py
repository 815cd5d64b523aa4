"""`POST /saaslogic/v1/subscriptions/{id}/resources` answered below the framework.

A call of `api/hot.py`'s layer: the route's checks in its order (the path's text, the token,
then the body) and its error shape (`errors.render`), without FastAPI's mount, routing and
dependency resolution around a call that does little work of its own.
"""

from __future__ import annotations

import re

from starlette.responses import Response

from meterworks.api.context import AppContext
from meterworks.api.hot import HotCall, Receive, Scope, body_of, header
from meterworks.api.jsonbody import check_text
from meterworks.facades.saaslogic.errors import render
from meterworks.facades.saaslogic.tokens import organization_of
from meterworks.facades.saaslogic.usage import report


async def _report(
    context: AppContext, scope: Scope, receive: Receive, match: re.Match[str]
) -> Response:
    subscription_id = match.group(1)
    check_text(subscription_id, "subscription_id")
    organization_id = await organization_of(context, header(scope, b"authorization"))
    return await report(
        context,
        organization_id,
        subscription_id,
        await body_of(receive),
        header(scope, b"idempotency-key", None),
    )


REPORT = HotCall(re.compile(r"/saaslogic/v1/subscriptions/([^/]+)/resources"), _report, render)
