"""The `meterworks` command line."""

from __future__ import annotations

import contextlib
import os
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal
from typing import Annotated, Any

import typer
from rich.console import Console

from meterworks.config import Settings, load_settings
from meterworks.db.engine import Database
from meterworks.kit.clock import SystemClock
from meterworks.kit.instants import format_instant

app = typer.Typer(help="meterworks: usage metering and usage-based billing.", no_args_is_help=True)
keys_app = typer.Typer(help="API keys.", no_args_is_help=True)
ledger_app = typer.Typer(help="The usage ledger.", no_args_is_help=True)
app.add_typer(keys_app, name="keys")
app.add_typer(ledger_app, name="ledger")
billing_app = typer.Typer(
    help="Billing: close periods, draft and finalize invoices.", no_args_is_help=True
)
invoices_app = typer.Typer(help="Invoices.", no_args_is_help=True)
app.add_typer(billing_app, name="billing")
app.add_typer(invoices_app, name="invoices")

err = Console(stderr=True)
out = Console()

DbOption = Annotated[
    str | None,
    typer.Option("--db", help="database URL (default: METERWORKS_DATABASE_URL or ./meterworks.db)"),
]


def _settings(db: str | None) -> Settings:
    return load_settings().with_overrides(database_url=db)


@contextmanager
def _database(settings: Settings) -> Iterator[Database]:
    from sqlalchemy.exc import ArgumentError, OperationalError

    # Imported here: Alembic is needed only once the schema is checked, not by the billing
    # run's worker processes, which import this module again as they start.
    from meterworks.db.migrate import upgrade

    where = _where(settings.database_url)
    try:
        database = Database(settings.database_url, sqlite_synchronous=settings.sqlite_synchronous)
    except ArgumentError as exc:
        err.print(f"[red]not a database URL[/red]: {where}")
        raise typer.Exit(2) from exc
    try:
        try:
            upgrade(database.engine)
        except OperationalError as exc:
            # A missing directory, a server that does not answer: say so, not a traceback.
            err.print(f"[red]cannot open the database[/red] {where}: {exc.orig}")
            raise typer.Exit(1) from exc
        yield database
    finally:
        database.dispose()


def _where(url: str) -> str:
    if "@" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.split('@', 1)[1]}"
    return url


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="interface to listen on")] = None,
    port: Annotated[int | None, typer.Option(help="port (default 8080)")] = None,
    db: DbOption = None,
    workers: Annotated[
        int | None,
        typer.Option(help="server processes, e.g. one per core (default 1)", min=1, max=64),
    ] = None,
    access_log: Annotated[
        bool | None,
        typer.Option("--access-log/--no-access-log", help="log every request (default off)"),
    ] = None,
) -> None:
    """Run the API (and the billing scheduler)."""
    import uvicorn

    from meterworks.app import create_app

    settings = _settings(db).with_overrides(
        host=host, port=port, workers=workers, access_log=access_log
    )
    base = f"http://{settings.host}:{settings.port}"
    err.print(f"[bold]meterworks[/bold] listening on [cyan]{base}[/cyan]")
    err.print(f"  database: {_where(settings.database_url)}")
    err.print(f"  API docs: {base}/docs   health: {base}/healthz")
    db_flag = "" if db is None else f" --db '{db}'"
    err.print(f"  get a key: [green]meterworks keys create --org 'My company'{db_flag}[/green]")
    served: dict[str, Any] = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "info",
        "access_log": settings.access_log,
    }
    if settings.workers > 1:
        err.print(f"  processes: {settings.workers}, one writer each, over the same database")
        # Migrate once, here, before the processes start; each then finds the schema current.
        with _database(settings):
            pass
        # The processes are spawned and build their app from the environment: pass what this
        # command was told on its command line there too.
        os.environ.update(
            METERWORKS_DATABASE_URL=settings.database_url,
            METERWORKS_HOST=settings.host,
            METERWORKS_PORT=str(settings.port),
            METERWORKS_WORKERS=str(settings.workers),
        )
        try:
            uvicorn.run(
                "meterworks.cli:application_from_environment",
                factory=True,
                workers=settings.workers,
                **served,
            )
        finally:
            # The file the processes spread large calls by (api/spread.py).
            from meterworks.api.spread import shared_path

            with contextlib.suppress(FileNotFoundError):
                os.remove(shared_path(os.getpid()))
        return
    uvicorn.run(create_app(settings), **served)


def application_from_environment() -> Any:
    """The app of one server process started by `serve --workers N`."""
    from meterworks.app import create_app

    return create_app(load_settings())


@app.command()
def migrate(db: DbOption = None) -> None:
    """Bring the schema to the latest version."""
    from meterworks.db.migrate import current_revision

    settings = _settings(db)
    with _database(settings) as database:
        out.print(f"schema at revision {current_revision(database.engine)}")


@keys_app.command("create")
def keys_create(
    db: DbOption = None,
    org: Annotated[str, typer.Option("--org", help="organization name (created if new)")] = (
        "default"
    ),
    name: Annotated[str, typer.Option("--name", help="a label for the key")] = "default",
) -> None:
    """Create an API key; the token is printed alone on the last line."""
    from meterworks.tenancy.service import create_api_key, ensure_organization

    settings = _settings(db)
    clock = SystemClock()
    with _database(settings) as database, database.transaction() as conn:
        organization = ensure_organization(conn, org, clock.now())
        key = create_api_key(conn, organization.id, name, clock.now())
    err.print(f"organization {organization.name} ({organization.id}), key {key.id}")
    err.print("send it as: Authorization: Bearer <token>")
    print(key.token)


@ledger_app.command("verify")
def ledger_verify(db: DbOption = None) -> None:
    """Recompute every running total from the ledger alone and report any difference."""
    from meterworks.usage.verify import verify

    settings = _settings(db)
    with _database(settings) as database, database.read() as conn:
        report = verify(conn)
    for diff in report.differences:
        out.print(
            f"[red]DIFF[/red] org={diff.organization_id} sub={diff.subscription_id} "
            f"meter={diff.meter_id} period_start={diff.period_start_us}\n"
            f"  stored:   {diff.stored}\n  expected: {diff.expected}"
        )
    status = (
        "[green]ok[/green]" if report.ok else f"[red]{len(report.differences)} differences[/red]"
    )
    out.print(
        f"ledger verify: {report.pairs_checked} (subscription, meter) pairs, "
        f"{report.periods_checked} periods: {status}"
    )
    if not report.ok:
        raise typer.Exit(1)


@billing_app.command("run")
def billing_run(
    db: DbOption = None,
    as_of: Annotated[
        str | None,
        typer.Option("--as-of", help="bill as at this instant (ISO-8601; default now)"),
    ] = None,
    wait: Annotated[
        float, typer.Option(help="seconds to wait while another process is billing")
    ] = 60.0,
    workers: Annotated[
        int | None,
        typer.Option(
            min=0,
            help="processes billing pages side by side (default METERWORKS_BILLING_WORKERS,"
            " else one per core; 0: one per core)",
        ),
    ] = None,
) -> None:
    """Close every period that ended by then, draft and finalize invoices; idempotent."""
    import os
    import time

    from meterworks.billing.leadership import leadership
    from meterworks.billing.scheduler import holder_id
    from meterworks.billing.service import BillingService
    from meterworks.errors import MeterworksError
    from meterworks.kit import collector
    from meterworks.kit.instants import parse_instant

    try:
        instant = None if as_of is None else parse_instant(as_of)
    except ValueError as exc:
        raise typer.BadParameter("must be an ISO-8601 instant", param_hint="--as-of") from exc
    settings = _settings(db)
    wanted = settings.billing_workers if workers is None else workers
    processes = wanted or os.cpu_count() or 1
    clock = SystemClock()
    holder = holder_id()
    deadline = time.monotonic() + wait
    with _database(settings) as database:
        service = BillingService(database, clock, settings)
        collector.settle()
        while True:
            # One process bills at a time: the same database lock the scheduler takes.
            with leadership(database, clock, holder) as leader:
                if leader is not None:
                    try:
                        report = service.run(as_of=instant, workers=processes)
                    except MeterworksError as exc:
                        err.print(f"[red]{exc.code}[/red]: {exc.message}")
                        raise typer.Exit(2) from exc
                    break
            if time.monotonic() >= deadline:
                err.print("[red]another process is billing; try again later[/red]")
                raise typer.Exit(1)
            time.sleep(1.0)
    out.print(
        f"billing run as of {format_instant(report.as_of)}: {report.organizations} "
        f"organizations, {report.subscriptions} subscriptions; drafted {report.drafted}, "
        f"finalized {report.finalized}"
        + (f", [red]{report.failed} failed (see the log)[/red]" if report.failed else "")
    )
    if report.failed:
        raise typer.Exit(1)


@invoices_app.command("explain")
def invoices_explain(
    invoice_id: Annotated[str, typer.Argument(help="the invoice id")],
    db: DbOption = None,
    as_json: Annotated[bool, typer.Option("--json", help="print the explanation as JSON")] = False,
) -> None:
    """Show, per line, the ledger entries and the arithmetic behind an invoice."""
    import json

    from meterworks.billing.service import BillingService
    from meterworks.errors import MeterworksError

    settings = _settings(db)
    with _database(settings) as database:
        try:
            explained = BillingService(database, SystemClock(), settings).explain_anywhere(
                invoice_id
            )
        except MeterworksError as exc:
            err.print(f"[red]{exc.code}[/red]: {exc.message}")
            raise typer.Exit(1) from exc
    if as_json:
        print(json.dumps(explained, indent=2))
        return
    number = explained["number"]
    out.print(
        f"[bold]invoice {explained['invoice_id']}[/bold]"
        + (f" no. {number}" if number is not None else "")
        + f" ({explained['status']}, {explained['currency']})"
    )
    out.print(f"counted: {explained['ledger_note']}; {explained['rounding']}")
    for line in explained["lines"]:
        out.print(
            f"\n[bold]{line['position']}. {line['description']}[/bold] ({line['type']}): "
            f"{line['amount']}"
        )
        for step in line.get("arithmetic", []):
            out.print(f"   {step}", markup=False)
        ledger = line.get("ledger")
        if ledger:
            out.print(
                f"   ledger: {ledger['entries_counted']} entries counted"
                + (f", {ledger['entries_voided']} voided" if ledger["entries_voided"] else "")
                + f"; recomputed {ledger['recomputed_quantity']}"
                + (" (matches)" if ledger["matches_line"] else " [red](DIFFERS)[/red]")
            )
            for entry in ledger["entries"][:20]:
                out.print(
                    f"     {entry['timestamp']}  {entry['operation']:<3} "
                    f"{entry['quantity']:>12}  {entry['idempotency_key']}"
                    + (f"  rev {entry['revision']}" if entry["revision"] else "")
                    + ("  LATE" if entry.get("late") else ""),
                    markup=False,
                )
            hidden = ledger["entries_counted"] - min(20, len(ledger["entries"]))
            if hidden > 0:
                out.print(f"     … and {hidden} more (--json lists up to 200)")
    out.print()
    for total in explained["totals"]:
        out.print(total, markup=False)


@app.command()
def demo(db: DbOption = None) -> None:
    """Fill a database with a demo organization and a month of usage."""
    from meterworks.app import write_path
    from meterworks.catalog.meters import create_meter
    from meterworks.catalog.plans import create_plan
    from meterworks.customers.service import create_customer
    from meterworks.subscriptions.service import create_subscription
    from meterworks.tenancy.service import create_api_key, ensure_organization

    settings = _settings(db)
    clock = SystemClock()
    now = clock.now()
    start = (now - timedelta(days=30)).replace(hour=0, minute=0, second=0, microsecond=0)
    rng = random.Random(7)
    with _database(settings) as database:
        with database.transaction() as conn:
            organization = ensure_organization(conn, f"Demo {format_instant(now)}", now)
            key = create_api_key(conn, organization.id, "demo", now)
            api_calls = create_meter(conn, organization.id, key="api_calls", name="API calls",
                                     unit="call", aggregation="sum", now=now)  # fmt: skip
            seats = create_meter(conn, organization.id, key="seats", name="Seats", unit="seat",
                                 aggregation="prorated", now=now)  # fmt: skip
            storage = create_meter(conn, organization.id, key="storage_gb", name="Storage",
                                   unit="GB", aggregation="max", now=now)  # fmt: skip
            plan = create_plan(
                conn,
                organization.id,
                name="Growth",
                currency="USD",
                interval="month",
                charges=[
                    {"type": "fixed", "name": "Platform fee", "amount": "49.00"},
                    {"type": "usage", "meter": "api_calls", "model": "graduated", "tiers": [
                        {"up_to": "10000", "unit_price": "0"},
                        {"up_to": "100000", "unit_price": "0.002"},
                        {"up_to": None, "unit_price": "0.001"}]},
                    {"type": "usage", "meter": "seats", "model": "per_unit",
                     "unit_price": "0.50"},
                    {"type": "usage", "meter": "storage_gb", "model": "package",
                     "package_size": "100", "unit_price": "5.00"},
                ],
                now=now,
            )  # fmt: skip
            subs = []
            for n, company in enumerate(["Acme Corp", "Globex", "Initech"], start=1):
                customer = create_customer(
                    conn, organization.id, external_id=f"cust-{n}", name=company,
                    email=f"billing@{company.split()[0].lower()}.example", now=now,
                )  # fmt: skip
                subs.append(
                    create_subscription(
                        conn,
                        organization.id,
                        customer_id=customer.id,
                        plan_id=plan.id,
                        starts_at=start,
                        now=now,
                    )
                )
        writer, usage, _ = write_path(database, clock, settings)
        writer.start()
        try:
            events: list[dict[str, Any]] = []
            for sub in subs:
                level = rng.randint(3, 10)
                for day in range(30):
                    at = start + timedelta(days=day, hours=12)
                    events.append({
                        "idempotency_key": f"demo-{sub.id}-calls-{day}",
                        "subscription_id": sub.id, "meter": api_calls.key,
                        "timestamp": format_instant(at), "quantity": rng.randint(500, 5000),
                    })  # fmt: skip
                    if day % 7 == 0:
                        level = max(1, level + rng.randint(-2, 3))
                        events.append({
                            "idempotency_key": f"demo-{sub.id}-seats-{day}",
                            "subscription_id": sub.id, "meter": seats.key, "operation": "set",
                            "timestamp": format_instant(at), "quantity": level,
                        })  # fmt: skip
                    events.append({
                        "idempotency_key": f"demo-{sub.id}-storage-{day}",
                        "subscription_id": sub.id, "meter": storage.key, "operation": "set",
                        "timestamp": format_instant(at),
                        "quantity": str(Decimal(rng.randint(500, 3000)) / 10),
                    })  # fmt: skip
            result = usage.record(organization.id, events, source="native")
        finally:
            writer.stop()
    out.print(f"demo organization [bold]{organization.name}[/bold]: 3 meters, 1 plan, 3 customers,")
    out.print(f"3 subscriptions from {format_instant(start)}, {result.accepted} usage events.")
    out.print("\nTry (with the server running: meterworks serve):")
    out.print(f"  export TOKEN={key.token}")
    out.print('  curl -s localhost:8080/v1/meters -H "Authorization: Bearer $TOKEN"')
    out.print(
        f"  curl -s localhost:8080/v1/subscriptions/{subs[0].id}/usage "
        '-H "Authorization: Bearer $TOKEN"'
    )
    print(key.token)


def main() -> None:
    from meterworks.errors import MeterworksError

    try:
        app()
    except KeyboardInterrupt:
        sys.exit(130)
    except MeterworksError as exc:
        # A refused input (an empty organization name, ...) is a message, not a traceback.
        err.print(f"[red]{exc.code}[/red]: {exc.message}")
        sys.exit(1)
