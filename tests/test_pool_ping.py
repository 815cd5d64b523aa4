"""PostgreSQL's pooled connections: pinged before use only after they sat idle (`db/engine.py`)."""

from __future__ import annotations

from collections.abc import Iterator

import psycopg
import pytest
from sqlalchemy.engine import make_url

from meterworks.db import engine as engine_module
from meterworks.db.engine import Database
from meterworks.errors import Unavailable


@pytest.fixture
def db(database_url: str) -> Iterator[Database]:
    database = Database(database_url)
    yield database
    database.dispose()


def backend(db: Database) -> int:
    with db.read() as conn:
        pid: int = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar_one()
    return pid


def terminate(database_url: str, pid: int) -> None:
    url = make_url(database_url).set(drivername="postgresql")
    with psycopg.connect(url.render_as_string(hide_password=False), autocommit=True) as admin:
        admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        # Gone once the server no longer lists it.
        for _ in range(100):
            if not admin.execute(
                "SELECT 1 FROM pg_stat_activity WHERE pid = %s", (pid,)
            ).fetchall():
                return
            admin.execute("SELECT pg_sleep(0.05)")
    raise AssertionError(f"backend {pid} did not end")


@pytest.fixture
def closed_by_server(database_url: str, db: Database) -> int:
    """The backend of the pool's one connection, ended by the server while it sat in the pool."""
    first = backend(db)
    terminate(database_url, first)
    return first


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_idle_long_enough_is_pinged_and_replaced_if_the_server_closed_it(
    db: Database, closed_by_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 0.0)  # every connection counts as idle
    assert backend(db) != closed_by_server  # the ping failed; the pool handed out a new one


@pytest.mark.parametrize("database_url", ["postgresql"], indirect=True)
def test_a_connection_used_a_moment_ago_is_handed_out_without_a_ping(
    db: Database, closed_by_server: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(engine_module, "PING_IDLE_S", 3600.0)
    # Not pinged: the first use finds it closed, and is answered "retry later".
    with pytest.raises(Unavailable):
        backend(db)
    assert backend(db) != closed_by_server  # the pool dropped it; the retry gets a new one
