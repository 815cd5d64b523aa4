"""SQLite's WAL checkpoints, made by the database's own thread outside the write turn."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import text

from meterworks.db.engine import Database, _Checkpoints
from tests.support.databases import sqlite_database

PAGE = 4096


@pytest.fixture
def db(tmp_path: Path) -> Iterator[Database]:
    with sqlite_database(
        tmp_path, "CREATE TABLE blobs (id INTEGER PRIMARY KEY, body BLOB NOT NULL)"
    ) as database:
        yield database


def _file(db: Database, suffix: str = "") -> Path:
    assert db.engine.url.database is not None
    return Path(db.engine.url.database + suffix)


def _write(db: Database, pages: int) -> None:
    with db.transaction() as conn:
        conn.execute(
            text("INSERT INTO blobs (body) VALUES (zeroblob(:size))"), {"size": pages * PAGE}
        )


def _until(condition: object, limit_s: float = 10.0) -> bool:
    deadline = time.monotonic() + limit_s
    while time.monotonic() < deadline:
        if callable(condition) and condition():
            return True
        time.sleep(0.01)
    return False


def test_write_connections_leave_checkpoints_to_the_checkpoint_thread(db: Database) -> None:
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 0
    with db.read() as conn:  # read connections never commit a write; theirs stays as it was
        assert conn.exec_driver_sql("PRAGMA wal_autocheckpoint").scalar_one() == 1000


def test_a_commit_past_a_thousand_pages_copies_none_and_the_thread_copies_them_after(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    checkpoints = db._checkpoints
    assert _until(lambda: checkpoints.made[0] >= 1)  # the table's creation, copied
    due = checkpoints.due
    monkeypatch.setattr(checkpoints, "due", lambda: None)
    before = _file(db).stat().st_size
    _write(db, 2_000)  # 8 MB: SQLite's own checkpoint would copy it in the commit
    assert _file(db, "-wal").stat().st_size > 2_000 * PAGE
    assert _file(db).stat().st_size == before
    monkeypatch.setattr(checkpoints, "due", due)
    checkpoints.due()
    assert _until(lambda: _file(db).stat().st_size > 2_000 * PAGE)
    assert checkpoints.made[0] >= 1
    with db.read() as conn:
        assert conn.execute(text("SELECT length(body) FROM blobs")).scalar_one() == 2_000 * PAGE


def test_a_steady_stream_of_writes_keeps_the_wal_short(db: Database) -> None:
    # Writes back to back in this thread while the checkpoint thread copies them: a checkpoint
    # made outside the turn seldom sees the WAL whole, and only one that does lets it restart.
    # Without the checkpoint made in the turn, the WAL grew with every write (3,082 pages in
    # 500 writes).
    checkpoints = db._checkpoints
    checkpoints.RESTART_PAGES = 64
    checkpoints.EVERY_S = 0.005
    rows, longest = 0, 0
    deadline = time.monotonic() + 30
    while (checkpoints.made[1] < 3 or rows < 1_000) and time.monotonic() < deadline:
        _write(db, 4)
        rows += 1
        longest = max(longest, _file(db, "-wal").stat().st_size)
    assert checkpoints.made[1] >= 3, "the WAL never reached its bound"
    # Bounded by what is written between two looks of the thread (some 5 ms apart, longer on a
    # busy machine), not by all that was written (some 6,000 pages).
    assert longest < 2_048 * PAGE, (longest // PAGE, rows)
    with db.read() as conn:
        assert conn.execute(text("SELECT count(*) FROM blobs")).scalar_one() == rows


def test_the_thread_ends_when_idle_and_starts_again_with_the_next_commit(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(_Checkpoints, "IDLE_S", 0.05)
    checkpoints = db._checkpoints
    _write(db, 1)
    assert checkpoints._thread is not None
    assert _until(lambda: checkpoints._thread is None)
    made = checkpoints.made[0]
    _write(db, 1)
    assert _until(lambda: checkpoints.made[0] > made)
