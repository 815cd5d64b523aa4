"""Adding a router's routes to an app as the app's own.

`FastAPI.include_router` keeps an included router as one nested entry that is searched, with its
inherited settings worked out again, on every request; with a few dozen routes that search cost
more CPU than a whole single-event request's own work. Our routers carry everything at
declaration (their prefix, tags, route class and responses are applied to each route as it is
declared), so their routes can be put straight on the app, where a request is matched by one
regular expression per route.
"""

from __future__ import annotations

from fastapi import APIRouter, FastAPI


def add_routes(app: FastAPI, router: APIRouter) -> None:
    """Put `router`'s routes on `app`, in their order, after the app's routes so far."""
    app.router.routes.extend(router.routes)
