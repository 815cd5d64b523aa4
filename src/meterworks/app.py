"""The ASGI application: native API, facades and the in-process jobs, over one database."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Awaitable, Callable, MutableMapping
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse
from sqlalchemy import text

from meterworks import __version__
from meterworks.api import billing, catalog, customers, events, subscriptions, tenancy
from meterworks.api.context import AppContext
from meterworks.api.errors import install_error_handlers
from meterworks.api.hot import NATIVE_EVENTS, PREVIEW_READ, USAGE_READ, HotCalls, run_read
from meterworks.api.routes import add_routes
from meterworks.api.spread import Spread, SpreadLargeCalls, shared_path
from meterworks.billing.service import BillingService
from meterworks.config import Settings
from meterworks.db.engine import Database
from meterworks.db.migrate import upgrade
from meterworks.errors import PayloadTooLarge
from meterworks.facades import mount_facades
from meterworks.facades.gradient.hot import SET_COUNT
from meterworks.facades.saaslogic.hot import REPORT
from meterworks.facades.salesbricks.hot import USAGE
from meterworks.kit import collector
from meterworks.kit.clock import Clock, SystemClock
from meterworks.tenancy.service import Authenticator
from meterworks.usage.service import UsageService
from meterworks.usage.writer import LedgerWriter

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]


class BodyLimit:
    """Refuse bodies over the limit (413) before they are buffered, whatever the framing."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app = app
        self.limit = limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = None
        for name, value in scope.get("headers") or ():
            if name == b"content-length":
                declared = value  # the last one, as a dict of the headers would keep
        too_big = declared is not None and declared.isdigit() and int(declared) > self.limit
        seen = 0
        limit = self.limit

        async def limited_receive() -> Message:
            nonlocal seen
            if too_big:
                raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise PayloadTooLarge(f"the request body exceeds {limit} bytes")
            return message

        await self.app(scope, limited_receive, send)


class Served(FastAPI):
    """FastAPI, with layers of our own in front of the whole of it.

    An HTTP request meets them first, before FastAPI's own entry (which checks, on every
    request, whether OpenTelemetry has been configured: about 5 µs) and its middleware stack;
    what they pass on enters FastAPI as usual, and the calls they answer are not seen by
    FastAPI's own telemetry. The lifespan goes straight to FastAPI.
    """

    def __init__(self, in_front: Callable[[ASGIApp], ASGIApp], **options: Any) -> None:
        super().__init__(**options)
        self._front = in_front(super().__call__)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            await self._front(scope, receive, send)
        else:
            await super().__call__(scope, receive, send)


def write_path(
    db: Database, clock: Clock, settings: Settings
) -> tuple[LedgerWriter, UsageService, BillingService]:
    """The ledger writer and usage service with billing's hooks installed.

    Every process that writes usage (the server, the CLI) builds them here, so no writer can
    miss the hooks that notice late usage and schedule billing-view rebuilds.
    """
    writer = LedgerWriter(
        db,
        clock,
        gather_ms=settings.group_commit_wait_ms,
        max_events=settings.group_commit_max_events,
    )
    usage = UsageService(db, writer, clock, settings)
    billing_service = BillingService(db, clock, settings)
    billing_service.install(writer, usage)
    return writer, usage, billing_service


def build_context(settings: Settings, clock: Clock) -> AppContext:
    db = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    writer, usage, billing_service = write_path(db, clock, settings)
    return AppContext(
        settings=settings,
        clock=clock,
        db=db,
        writer=writer,
        usage=usage,
        authenticator=Authenticator(settings.auth_cache_seconds),
        extensions={"billing": billing_service},
    )


def create_app(settings: Settings, *, clock: Clock | None = None) -> FastAPI:
    context = build_context(settings, clock or SystemClock())

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        upgrade(context.db.engine)
        context.writer.start()
        billing_service: BillingService = context.extensions["billing"]
        billing_service.start()
        collector.settle()
        try:
            yield
        finally:
            billing_service.stop()
            context.writer.stop()
            context.db.dispose()

    def in_front(stack: ASGIApp) -> ASGIApp:
        # The single-usage calls and the two polled reads are answered in front of FastAPI and
        # its middleware (api/hot.py), inside the body limit, which they rely on.
        hot = HotCalls(
            stack,
            context=context,
            calls=(NATIVE_EVENTS, REPORT, SET_COUNT, USAGE, USAGE_READ, PREVIEW_READ),
        )
        limited = BodyLimit(hot, limit=settings.max_body_bytes)
        if settings.workers > 1:  # one of `serve --workers N`'s processes
            return SpreadLargeCalls(limited, Spread(shared_path(os.getppid()), settings.workers))
        return limited

    app = Served(
        in_front,
        title="meterworks",
        version=__version__,
        description="Usage metering and usage-based billing: an exact ledger, running totals, "
        "invoices in arrears.",
        lifespan=lifespan,
    )
    app.state.context = context
    install_error_handlers(app)

    def ping_database() -> None:
        with context.db.read() as conn:
            conn.execute(text("SELECT 1"))

    @app.get("/healthz", tags=["operations"])
    async def healthz() -> JSONResponse:
        await run_read(context, ping_database)
        return JSONResponse({"status": "ok", "database": context.db.dialect})

    # Routes are matched in order, one at a time: the single-usage calls come first (the
    # facades' mounts, then the events router), so the hottest requests skip scanning every
    # other route. No two of these share a path, so the order changes no answer.
    mount_facades(app, context)
    for module in (events, catalog, customers, subscriptions, tenancy, billing):
        add_routes(app, module.router)
    return app
