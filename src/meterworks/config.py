"""The one settings object. Nothing else in the code reads the environment."""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field, replace

DEFAULT_SQLITE_URL = "sqlite:///./meterworks.db"


@dataclass(frozen=True)
class Settings:
    database_url: str = DEFAULT_SQLITE_URL
    host: str = "127.0.0.1"
    port: int = 8080
    # Server processes `meterworks serve` runs (each with its own group-committing writer over
    # the same database); one per core uses the machine. See README "Running on more cores".
    workers: int = 1
    # One log line per request (uvicorn's access log). Off by default: it cost a quarter of the
    # cheapest request's throughput (/healthz); errors and start-up are logged either way.
    access_log: bool = False
    # Largest request body accepted, in bytes (10,000 events fit comfortably).
    max_body_bytes: int = 8 * 1024 * 1024
    max_events_per_batch: int = 10_000
    # Group commit: how long the writer waits to gather concurrent requests into one commit.
    group_commit_wait_ms: float = 1.5
    group_commit_max_events: int = 50_000
    # Events may be dated at most this far in the future.
    future_tolerance_seconds: int = 300
    # SQLite `synchronous`: FULL survives power loss, NORMAL survives a process crash.
    sqlite_synchronous: str = "FULL"
    auth_cache_seconds: float = 30.0
    billing_grace_seconds: int = 3600
    # Processes `meterworks billing run` bills pages with side by side; 0: one per core. (The
    # scheduler inside the server bills in its own process.)
    billing_workers: int = 0
    scheduler_enabled: bool = True
    scheduler_interval_seconds: float = 30.0
    # Invoices fall due this many days after they are issued (net 30).
    invoice_net_days: int = 30
    # A billing view is rebuilt this long after the last usage write of a burst.
    view_debounce_seconds: float = 2.0
    # The in-process loop that rebuilds billing views whose debounce has passed (runs whether or
    # not the billing scheduler does; a read of a due view rebuilds it too).
    views_enabled: bool = True
    view_poll_seconds: float = 0.5
    # Lifetime of the bearer tokens the Saaslogic facade issues for an access/secret key pair.
    saaslogic_token_seconds: int = 3600
    # HMAC key for issued tokens; unset, one is generated once and kept in the database, so
    # tokens survive restarts and are accepted by every process over the same database.
    token_signing_secret: str | None = None
    # Gradient facade: requests per second per GRADIENT-TOKEN, as the vendor limits; 0 turns it off.
    gradient_rate_limit_per_second: float = 100.0
    # Outgoing e-mail (invoices sent with their payment link); unset host: links only, no e-mail.
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str = "billing@localhost"
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    # The address customers reach this server at, for signed invoice links; unset, the
    # address the sending request came in on.
    public_base_url: str | None = None
    # Lifetime of a signed invoice link (default 7 days).
    invoice_link_seconds: int = 7 * 24 * 3600
    extra: dict[str, str] = field(default_factory=dict)

    def with_overrides(self, **changes: object) -> Settings:
        clean = {key: value for key, value in changes.items() if value is not None}
        return replace(self, **clean)  # type: ignore[arg-type]


def _bool(text: str) -> bool:
    return text.strip().lower() in {"1", "true", "yes", "on"}


def load_settings(environ: dict[str, str] | None = None) -> Settings:
    """Settings from `METERWORKS_*` environment variables, defaults elsewhere."""
    env = dict(os.environ if environ is None else environ)
    base = Settings()
    values: dict[str, object] = {}
    casts: dict[str, Callable[[str], object]] = {
        "database_url": str,
        "host": str,
        "port": int,
        "max_body_bytes": int,
        "max_events_per_batch": int,
        "group_commit_wait_ms": float,
        "group_commit_max_events": int,
        "future_tolerance_seconds": int,
        "sqlite_synchronous": str,
        "auth_cache_seconds": float,
        "billing_grace_seconds": int,
        "billing_workers": int,
        "scheduler_enabled": _bool,
        "scheduler_interval_seconds": float,
        "invoice_net_days": int,
        "view_debounce_seconds": float,
        "views_enabled": _bool,
        "view_poll_seconds": float,
        "saaslogic_token_seconds": int,
        "token_signing_secret": str,
        "gradient_rate_limit_per_second": float,
        "smtp_host": str,
        "smtp_port": int,
        "smtp_from": str,
        "smtp_username": str,
        "smtp_password": str,
        "smtp_starttls": _bool,
        "public_base_url": str,
        "invoice_link_seconds": int,
        "workers": int,
        "access_log": _bool,
    }
    for name, cast in casts.items():
        raw = env.get(f"METERWORKS_{name.upper()}")
        if raw is not None and raw != "":
            values[name] = cast(raw)
    extra = {
        key.removeprefix("METERWORKS_").lower(): value
        for key, value in env.items()
        if key.startswith("METERWORKS_") and key.removeprefix("METERWORKS_").lower() not in casts
    }
    return replace(base, extra=extra, **values)  # type: ignore[arg-type]
