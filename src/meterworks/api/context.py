"""What every transport needs at hand: settings, clock, database, writer and services."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Annotated, Any

from fastapi import Depends, Request

from meterworks.config import Settings
from meterworks.db.engine import Database
from meterworks.kit.clock import Clock
from meterworks.tenancy.service import Authenticator
from meterworks.usage.service import UsageService
from meterworks.usage.writer import LedgerWriter


@dataclass
class AppContext:
    settings: Settings
    clock: Clock
    db: Database
    writer: LedgerWriter
    usage: UsageService
    authenticator: Authenticator
    # Services added by later layers (billing, facades) register here by name.
    extensions: dict[str, Any] = field(default_factory=dict)


async def get_context(request: Request) -> AppContext:
    # Async, so FastAPI calls it in place: a plain function would be sent to a worker thread
    # and back on every request.
    context: AppContext = request.app.state.context
    return context


Context = Annotated[AppContext, Depends(get_context)]
