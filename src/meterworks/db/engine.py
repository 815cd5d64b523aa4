"""Engines and units of work. One transaction per request, job or CLI command."""

from __future__ import annotations

import fcntl
import json
import logging
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from datetime import datetime
from decimal import Decimal
from typing import Any
from urllib.parse import quote

from sqlalchemy import create_engine, event
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import DBAPIError, DisconnectionError, IntegrityError, OperationalError

from meterworks.db.dialect import is_sqlite, normalize_url
from meterworks.errors import Conflict, Unavailable

log = logging.getLogger(__name__)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, datetime):
        return value.isoformat()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    return json.dumps(value, default=_json_default, separators=(",", ":"), sort_keys=True)


# As many pooled connections as the server has worker threads (40), so a busy server reuses
# connections instead of opening and closing overflow ones per request.
POOL_SIZE = 40


def _begin_with(statement: str) -> Callable[[Any], None]:
    def do_begin(dbapi_connection: Any) -> None:
        # Straight to the driver: a `begin` event listener would cost a full statement execution
        # per transaction, and any connection-event listener makes SQLAlchemy dispatch events
        # around every statement of the engine.
        dbapi_connection.execute(statement)

    return do_begin


def make_engine(
    url: str,
    *,
    sqlite_synchronous: str = "FULL",
    pool_size: int = POOL_SIZE,
    read_only: bool = False,
) -> Engine:
    """An engine; on SQLite, `read_only` ones begin with a plain BEGIN, others BEGIN IMMEDIATE."""
    url = normalize_url(url)
    if is_sqlite(url):
        engine = create_engine(
            url,
            json_serializer=dumps,
            connect_args={"check_same_thread": False, "timeout": 30},
            pool_size=pool_size,
            max_overflow=10,
        )

        @event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
            # pysqlite's own transaction handling is replaced by explicit BEGIN below.
            dbapi_conn.isolation_level = None
            cursor = dbapi_conn.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
            # FULL: a commit survives power loss; NORMAL: it survives a crash of the process.
            cursor.execute(f"PRAGMA synchronous={sqlite_synchronous}")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.execute("PRAGMA busy_timeout=30000")
            if not read_only:
                # Checkpoints are made outside the write turn (`_Checkpoints`), not by the
                # commit that takes the WAL past 1,000 pages.
                cursor.execute("PRAGMA wal_autocheckpoint=0")
            cursor.close()

        # IMMEDIATE takes the write lock up front, so a read-then-write transaction cannot fail
        # half-way with SQLITE_BUSY on lock upgrade; reads take no lock at all.
        setattr(  # noqa: B010 - this engine's own dialect instance, not the class
            engine.dialect, "do_begin", _begin_with("BEGIN" if read_only else "BEGIN IMMEDIATE")
        )
        return engine
    engine = create_engine(
        url,
        json_serializer=dumps,
        pool_size=pool_size,
        max_overflow=10,
        # Plan every execution of a prepared statement for its parameters and the tables as
        # they are now: a generic plan made while the ledger was small (a seq scan) would be
        # kept while it grows, and turn a dedupe probe into a scan of the whole ledger.
        connect_args={"options": "-c plan_cache_mode=force_custom_plan"},
    )
    event.listen(engine.pool, "checkin", _note_checkin)
    event.listen(engine.pool, "checkout", _ping_if_idle)
    return engine


# A pooled PostgreSQL connection idle this long is pinged before it is handed out: one that
# the server closed meanwhile (a restart, an idle timeout) is replaced, not failed on. Pinging
# on every checkout (`pool_pre_ping`) cost a round trip each time: in batched ingestion, a
# tenth of the server's samples waited on those pings.
PING_IDLE_S = 5.0


def _note_checkin(_dbapi_connection: Any, record: Any) -> None:
    if record is not None:
        record.info["checked_in"] = time.monotonic()


def _ping_if_idle(dbapi_connection: Any, record: Any, _proxy: Any) -> None:
    checked_in = record.info.get("checked_in")
    if checked_in is not None and time.monotonic() - checked_in < PING_IDLE_S:
        return
    try:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SELECT 1")
        dbapi_connection.rollback()
    except Exception as exc:
        # The pool discards this connection and checks out another (a new one if need be).
        raise DisconnectionError() from exc


class Database:
    """An engine plus the unit-of-work helpers every transport uses."""

    def __init__(self, url: str, *, sqlite_synchronous: str = "FULL") -> None:
        self.url = normalize_url(url)
        self.engine = make_engine(self.url, sqlite_synchronous=sqlite_synchronous)
        # SQLite: reads come from connections of their own, which begin without taking the write
        # lock. PostgreSQL: one engine; a read is a transaction like any other.
        self._read_engine = (
            make_engine(self.url, sqlite_synchronous=sqlite_synchronous, read_only=True)
            if is_sqlite(self.url)
            else self.engine
        )
        self._writers = _WriterTurns.for_database(self.engine)
        self._checkpoints = _Checkpoints.for_database(self.engine, self._writers)

    @property
    def dialect(self) -> str:
        return self.engine.dialect.name

    @contextmanager
    def transaction(
        self,
        *,
        holding: AbstractContextManager[Any] | None = None,
        on: Connection | None = None,
        waiting: Callable[[], bool] | None = None,
    ) -> Iterator[Connection]:
        """One unit of work: commits on success, rolls back on any error.

        `holding` (a lock, say) is entered once it is this transaction's turn to write, and left
        after the commit. `on`, where given, is a connection from `connect` to run it on (one
        that holds what was made ready for it beforehand); by default, one from the pool.
        `waiting`, where given, is called between tries while another process holds the turn
        (SQLite); it returns whether it did anything (if not, the next try waits a moment)."""
        try:
            with self._writers.turn(waiting), holding or nullcontext():
                if on is None:
                    with self.engine.begin() as conn:
                        yield conn
                else:
                    with on.begin():
                        yield on
            self._checkpoints.due()
        except OperationalError as exc:
            raise Unavailable("the database is not available, retry later") from exc
        except IntegrityError as exc:
            # A check-then-insert lost a race with a concurrent request: the constraint held, so
            # nothing was written; the client may retry and will then see the winner's row.
            raise Conflict(
                "a concurrent change conflicted with this one; nothing was written, retry",
                code="concurrent_conflict",
            ) from exc
        except DBAPIError as exc:
            if exc.connection_invalidated:
                raise Unavailable("the database connection was lost, retry later") from exc
            raise

    @contextmanager
    def connect(self) -> Iterator[Connection]:
        """A connection of the writing engine, outside any transaction: for work to be done on
        it before its `transaction(on=...)` takes the turn to write."""
        try:
            with self.engine.connect() as conn:
                yield conn
        except OperationalError as exc:
            raise Unavailable("the database is not available, retry later") from exc

    @contextmanager
    def read(self) -> Iterator[Connection]:
        """A read-only unit of work (no write lock taken on SQLite)."""
        try:
            with self._read_engine.connect() as conn, conn.begin():
                yield conn
        except OperationalError as exc:
            raise Unavailable("the database is not available, retry later") from exc

    def dispose(self) -> None:
        self._checkpoints.stop()
        self.engine.dispose()
        if self._read_engine is not self.engine:
            self._read_engine.dispose()
        self._writers.close()


def _sqlite_file(engine: Engine) -> str | None:
    """The path of the engine's SQLite database file; None for PostgreSQL or in-memory SQLite."""
    database = engine.url.database
    if engine.dialect.name != "sqlite" or not database or database == ":memory:":
        return None
    return database


class _WriterTurns:
    """Write transactions on one SQLite file take turns through a lock file, across processes.

    SQLite lets one writer in at a time; the others poll with growing sleeps (its busy handler,
    up to 100 ms apart) and can be passed over again and again, so with several server
    processes some commits waited seconds. Here a waiting writer tries an `flock` on
    `<database>-writers.lock` every millisecond, so the next one is in within about a
    millisecond of the last commit. A thread lock orders the process's own threads first (an
    flock is held by a file description, shared by every thread using it); only the outermost
    transaction of a thread takes the turn. Either wait gives up after `WAIT_S`, as SQLite's
    busy timeout does. PostgreSQL and in-memory SQLite need none of this: their turn is a no-op.
    """

    WAIT_S = 30.0
    POLL_S = 0.001

    def __init__(self, path: str | None) -> None:
        self._threads = threading.RLock()
        self._depth = 0
        self._path = path
        self._fd: int | None = None

    def _file(self) -> int | None:
        """The lock file, opened on first use; None where it cannot be (SQLite will say why)."""
        if self._fd is None and self._path is not None:
            try:
                self._fd = os.open(self._path, os.O_RDWR | os.O_CREAT, 0o600)
            except OSError:
                return None
        return self._fd

    @classmethod
    def for_database(cls, engine: Engine) -> _WriterTurns:
        database = _sqlite_file(engine)
        return cls(None if database is None else f"{database}-writers.lock")

    @contextmanager
    def turn(self, waiting: Callable[[], bool] | None = None) -> Iterator[None]:
        """Hold the turn to write; `waiting`, where given, as `Database.transaction`'s."""
        if self._path is None:
            yield
            return
        if not self._threads.acquire(timeout=self.WAIT_S):
            raise Unavailable("the database is busy, retry later")
        try:
            fd = self._file()
            if fd is None:
                yield
                return
            if self._depth == 0:
                self._take(fd, waiting)  # on failure, raises holding nothing
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
                if self._depth == 0:
                    fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            self._threads.release()

    def _take(self, fd: int, waiting: Callable[[], bool] | None) -> None:
        deadline = time.monotonic() + self.WAIT_S
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise Unavailable("the database is busy, retry later") from None
                if waiting is None or not waiting():
                    time.sleep(self.POLL_S)

    def close(self) -> None:
        with self._threads:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None


class _Checkpoints:
    """SQLite's checkpoints (the WAL's pages copied back into the database file), made by a
    thread of their own, outside the write turn.

    By itself SQLite checkpoints in the commit that takes the WAL past 1,000 pages, so that
    commit's transaction holds the write turn while the pages are copied and the file synced:
    about a third of batched ingestion's commits of 1,000 events took 8-12 ms instead of 1.5-2.
    Here the write connections have that off (`wal_autocheckpoint=0`); a commit wakes this
    thread, which makes a passive checkpoint at most every `EVERY_S`, while other writes go on.

    The WAL starts again from its beginning only when a write begins with all of it copied; a
    checkpoint made while another process writes cannot copy that write, so under a steady
    stream of writes the WAL would grow without end. Past `RESTART_PAGES` pages, the checkpoint
    is made holding the write turn: it copies what is left, and the next write starts the WAL
    again. The thread ends after `IDLE_S` without a commit, and starts again with the next.
    """

    EVERY_S = 0.1
    RESTART_PAGES = 4096
    IDLE_S = 10.0

    def __init__(self, path: str | None, turns: _WriterTurns) -> None:
        self._path = path
        self._turns = turns
        self._lock = threading.Lock()
        self._due = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Checkpoints made, for tests and diagnosis: (passive ones, ones holding the turn).
        self.made = [0, 0]

    @classmethod
    def for_database(cls, engine: Engine, turns: _WriterTurns) -> _Checkpoints:
        return cls(_sqlite_file(engine), turns)

    def due(self) -> None:
        """After a commit: a checkpoint is due (the thread is started if it is not running)."""
        if self._path is None:
            return
        with self._lock:
            # Under the lock: an idle thread decides to end under it too, so either it sees
            # this and goes on, or it has ended and another is started here.
            self._due.set()
            if self._thread is None and not self._stopping:
                self._thread = threading.Thread(
                    target=self._run, name="wal-checkpoints", daemon=True
                )
                self._thread.start()

    def stop(self) -> None:
        """End the thread (a commit after this starts it again)."""
        with self._lock:
            self._stopping = True
            thread, self._thread = self._thread, None
            self._due.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=30)
        with self._lock:
            self._stopping = False
            self._due.clear()

    def _run(self) -> None:
        assert self._path is not None
        try:
            # Read-write, never create: a database that is gone is not made again, empty.
            conn = sqlite3.connect(
                f"file:{quote(self._path)}?mode=rw",
                uri=True,
                isolation_level=None,
                check_same_thread=False,
            )
        except sqlite3.Error:
            log.warning("the WAL checkpoint thread could not open the database", exc_info=True)
            with self._lock:
                self._thread = None
            return
        try:
            self._loop(conn)
        finally:
            conn.close()

    def _loop(self, conn: sqlite3.Connection) -> None:
        last = 0.0
        failing = False
        while True:
            if not self._due.wait(self.IDLE_S):
                with self._lock:
                    if not self._due.is_set():  # idle: ends, and the next commit starts one
                        self._thread = None
                        return
            if self._stopping:
                return
            wait = last + self.EVERY_S - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            if self._stopping:
                return
            self._due.clear()
            last = time.monotonic()
            try:
                self._checkpoint(conn)
            except (sqlite3.Error, Unavailable):
                # The next commit makes it due again; the pages stay in the WAL till then.
                if not failing:
                    log.warning("a WAL checkpoint failed", exc_info=True)
                failing = True
            else:
                failing = False

    def _checkpoint(self, conn: sqlite3.Connection) -> None:
        _busy, pages, _copied = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
        self.made[0] += 1
        if pages >= self.RESTART_PAGES:
            with self._turns.turn():
                conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()
            self.made[1] += 1
