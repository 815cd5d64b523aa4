"""Drop-in facades of vendor usage APIs. They translate, then call the domain; no rule lives here.

Each facade is a FastAPI sub-application mounted under its prefix, with its own error shape.
A facade module `meterworks.facades.<name>.app` exposes `create_app(context) -> FastAPI`.
"""

from __future__ import annotations

import importlib

from fastapi import FastAPI

from meterworks.api.context import AppContext

# (module, mount prefix): past the prefix, paths and shapes are the vendor's own.
FACADES: tuple[tuple[str, str], ...] = (
    ("gradient", "/gradient/api/vendor-api"),
    ("saaslogic", "/saaslogic/v1"),
    ("salesbricks", "/salesbricks"),
)


def mount_facades(app: FastAPI, context: AppContext) -> None:
    for name, prefix in FACADES:
        module = importlib.import_module(f"meterworks.facades.{name}.app")
        app.mount(prefix, module.create_app(context))
