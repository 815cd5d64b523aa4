"""The write turn of a SQLite file (`db/engine._WriterTurns`): what a writer may do while
another process holds it."""

from __future__ import annotations

import fcntl
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import text

from meterworks.db.engine import Database
from tests.support.databases import sqlite_database


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with sqlite_database(
        tmp_path, "CREATE TABLE notes (id INTEGER PRIMARY KEY, body TEXT NOT NULL)"
    ) as database:
        yield database


@contextmanager
def turn_held_elsewhere(db: Database) -> Iterator[None]:
    """Hold the write turn as another process's writer does: through the lock file."""
    fd = os.open(f"{db.engine.url.database}-writers.lock", os.O_RDWR)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
        fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


def _notes(db: Database) -> list[str]:
    with db.read() as conn:
        return list(conn.execute(text("SELECT body FROM notes ORDER BY id")).scalars())


def test_waiting_is_called_while_another_process_holds_the_turn_and_not_once_it_is_free(
    db: Database,
) -> None:
    calls: list[int] = []
    called = threading.Event()
    outcome: list[str] = []

    def waiting() -> bool:
        calls.append(1)
        called.set()
        return len(calls) < 3  # work done the first two times: tried again at once

    def write() -> None:
        with db.transaction(waiting=waiting) as conn:
            conn.execute(text("INSERT INTO notes (body) VALUES ('after the wait')"))
        outcome.append("written")

    with turn_held_elsewhere(db):
        writer = threading.Thread(target=write)
        writer.start()
        assert called.wait(10)
        assert outcome == []
        assert _notes(db) == []
    writer.join(10)
    assert outcome == ["written"]
    assert len(calls) >= 3
    assert _notes(db) == ["after the wait"]
    # With the turn free, a write takes it without waiting.
    before = len(calls)
    with db.transaction(waiting=waiting) as conn:
        conn.execute(text("INSERT INTO notes (body) VALUES ('no wait')"))
    assert len(calls) == before


def test_an_error_raised_while_waiting_ends_the_wait_holding_nothing(db: Database) -> None:
    def failing() -> bool:
        raise RuntimeError("staging failed")

    with (
        turn_held_elsewhere(db),
        pytest.raises(RuntimeError, match="staging failed"),
        db.transaction(waiting=failing) as conn,
    ):
        conn.execute(text("INSERT INTO notes (body) VALUES ('never')"))
    # The next write waits for the turn as the first did: the failed wait left no hold on it
    # that this process's writes would take for their own.
    waited = threading.Event()

    def waiting() -> bool:
        waited.set()
        return False

    def write() -> None:
        with db.transaction(waiting=waiting) as conn:
            conn.execute(text("INSERT INTO notes (body) VALUES ('next')"))

    with turn_held_elsewhere(db):
        writer = threading.Thread(target=write)
        writer.start()
        assert waited.wait(10)
        assert _notes(db) == []
    writer.join(10)
    assert _notes(db) == ["next"]
