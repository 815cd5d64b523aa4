"""The Salesbricks facade, mounted at `/salesbricks`.

- `/api/v1/usage`: the GraphQL Usage API (`incrementCounter`, `setGauge`), GraphQL-shaped errors.
- `/api/v2/...`: the REST successor (usage entries and usage reads), `{"detail", "code"}` errors.
"""

from __future__ import annotations

from fastapi import FastAPI

from meterworks.api.context import AppContext
from meterworks.api.routes import add_routes
from meterworks.facades.salesbricks import rest_reads, rest_usage
from meterworks.facades.salesbricks.graphql_api import create_graphql_app
from meterworks.facades.salesbricks.rest_errors import install_rest_error_handlers


def create_rest_app(context: AppContext) -> FastAPI:
    app = FastAPI(
        title="meterworks — Salesbricks REST API (v2)",
        description="Salesbricks-compatible usage entries and usage reads. Authenticate with "
        "`X-SALESBRICKS-KEY: <meterworks API token>`.",
        redoc_url=None,
    )
    app.state.context = context
    install_rest_error_handlers(app)
    add_routes(app, rest_usage.router)
    add_routes(app, rest_reads.router)
    return app


def create_app(context: AppContext) -> FastAPI:
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    app.state.context = context
    # Anything outside the two APIs (a wrong path) is answered in the REST shape.
    install_rest_error_handlers(app)
    app.mount("/api/v1", create_graphql_app(context))
    app.mount("/api/v2", create_rest_app(context))
    return app
