"""The Saaslogic facade's sub-application, mounted at `/saaslogic/v1`."""

from __future__ import annotations

from fastapi import FastAPI

from meterworks import __version__
from meterworks.api.context import AppContext
from meterworks.api.routes import add_routes
from meterworks.facades.saaslogic import customers, invoices, plans, subscriptions, tokens, usage
from meterworks.facades.saaslogic.errors import install_error_handlers


def create_app(context: AppContext) -> FastAPI:
    sub_app = FastAPI(
        title="meterworks — Saaslogic API",
        version=__version__,
        description="Saaslogic's billing API over meterworks: exchange an access key and secret "
        "key for a bearer token at `POST /token`, then report and read usage, manage customers "
        "and list plans with Saaslogic's paths and fields.",
    )
    sub_app.state.context = context
    context.extensions[tokens.EXTENSION] = tokens.TokenService(context)
    install_error_handlers(sub_app)
    for module in (tokens, usage, subscriptions, customers, plans, invoices):
        add_routes(sub_app, module.router)
    return sub_app
