"""One SQLite connection, one writer thread, short transactions, group commit.

Why a single connection on a single thread: SQLite allows one writer at a time, and the bot's
checkpoints are tiny, so serialising them in-process is both the fastest and the simplest correct
design. Every call to the connection is one job on a one-thread executor; the cost that matters is
the number of hops to that thread, not SQL time (a checkpoint holds the lock for ~0.1 ms). Hence:

- a transaction's ``BEGIN IMMEDIATE`` rides on its first statement, and one that ran no statement
  opens none;
- :meth:`Database.write` runs a list of statements as one transaction in one hop;
- when several writers wait for the lock, the first to get it commits all their batches at once
  (each in its own savepoint, so one failing batch fails only itself): group commit.

WAL mode lets readers in other processes (``hiclaw-bot ops``) look while the bot writes;
``synchronous=NORMAL`` keeps commits off the disk's fsync path, which in WAL mode still survives a
process crash (only an OS crash can lose the last commits). Callers must never await the network
while holding a transaction: the lock would stall every other checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from functools import partial
from importlib import resources
from pathlib import Path
from typing import Any, TypeVar

Params = tuple[Any, ...] | dict[str, Any]
T = TypeVar("T")


@dataclass(frozen=True)
class Statement:
    """One statement of a :meth:`Database.write` batch; ``rows`` asks for its result rows."""

    sql: str
    params: Params = ()
    rows: bool = False


def _run(conn: sqlite3.Connection, statement: Statement) -> Any:
    """Execute on the writer thread: rows when asked, else the INSERT's row id or the changed count."""
    cursor = conn.execute(statement.sql, statement.params)
    try:
        if statement.rows:
            return cursor.fetchall()
        if statement.sql.lstrip()[:6].upper() == "INSERT":
            return int(cursor.lastrowid or 0)
        return cursor.rowcount
    finally:
        cursor.close()


@dataclass
class _Batch:
    statements: Sequence[Statement]
    future: asyncio.Future[list[Any]]
    results: list[Any] | BaseException = field(default_factory=list)


def _apply_batches(conn: sqlite3.Connection, batches: Sequence[_Batch]) -> None:
    """One transaction for every queued batch, each in a savepoint of its own."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        for batch in batches:
            conn.execute("SAVEPOINT batch")
            try:
                batch.results = [_run(conn, s) for s in batch.statements]
            except Exception as exc:  # noqa: BLE001 - a failing batch must fail only itself
                conn.execute("ROLLBACK TO batch")
                batch.results = exc
            conn.execute("RELEASE batch")
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


class Tx:
    """A handle on the connection while the caller holds the lock (inside or outside a transaction)."""

    def __init__(self, db: Database, *, begin: bool) -> None:
        self._db = db
        self._begin = begin
        self.began = False
        self.now = db.now

    async def _call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """One hop to the writer thread; a transaction's BEGIN rides on its first statement."""
        conn = self._db._conn
        if self._begin and not self.began:
            self.began = True

            def begin_then(conn: sqlite3.Connection) -> T:
                conn.execute("BEGIN IMMEDIATE")
                return fn(conn)

            return await self._db._hop(lambda: begin_then(conn))
        return await self._db._hop(lambda: fn(conn))

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return the last inserted row id (for INSERT) or the changed row count."""
        return int(await self._call(lambda conn: _run(conn, Statement(sql, params))))

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        batch = list(rows)
        await self._call(lambda conn: conn.executemany(sql, batch).close())

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        rows: list[sqlite3.Row] = await self._call(lambda conn: _run(conn, Statement(sql, params, rows=True)))
        return rows[0] if rows else None

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        rows: list[sqlite3.Row] = await self._call(lambda conn: _run(conn, Statement(sql, params, rows=True)))
        return rows

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]


class Database:
    """The connection, its thread, its lock, the group-commit queue and the migrations."""

    def __init__(self, conn: sqlite3.Connection, executor: ThreadPoolExecutor, path: Path,
                 now: Callable[[], float]) -> None:
        self._conn = conn
        self._executor = executor
        self._lock = asyncio.Lock()
        self._queue: list[_Batch] = []
        self.path = path
        self.now = now

    @classmethod
    async def open(cls, path: Path | str, *, now: Callable[[], float] = time.time) -> Database:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        # Create the file ourselves so it is 0600 from its first byte: it holds secrets.
        fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o600)
        os.close(fd)
        os.chmod(path, 0o600)
        executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hiclaw-sqlite")

        def connect() -> sqlite3.Connection:
            conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            conn.row_factory = sqlite3.Row
            for pragma in ("journal_mode=WAL", "synchronous=NORMAL", "foreign_keys=ON", "busy_timeout=5000"):
                conn.execute(f"PRAGMA {pragma}")
            return conn

        conn = await asyncio.get_running_loop().run_in_executor(executor, connect)
        db = cls(conn, executor, path, now)
        await db.migrate()
        return db

    async def _hop(self, fn: Callable[[], T]) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn)

    async def close(self) -> None:
        async with self._lock:
            await self._hop(self._conn.close)
        self._executor.shutdown(wait=True)

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A short write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on error)."""
        async with self._lock:
            tx = Tx(self, begin=True)
            try:
                yield tx
            except BaseException:
                if tx.began:
                    await asyncio.shield(self._hop(self._rollback))
                raise
            if tx.began:
                await self._hop(lambda: self._conn.execute("COMMIT").close())

    def _rollback(self) -> None:
        if self._conn.in_transaction:  # BEGIN itself may be what failed
            self._conn.execute("ROLLBACK")

    async def write(self, statements: Sequence[Statement]) -> list[Any]:
        """Run ``statements`` as one transaction in one hop; return each one's result.

        Batches queued while another writer holds the lock are committed together by whichever
        waiter gets the lock first, so N concurrent checkpoints cost one hop and one commit.
        """
        loop = asyncio.get_running_loop()
        batch = _Batch(statements, loop.create_future())
        self._queue.append(batch)
        try:
            async with self._lock:
                if not batch.future.done():
                    batches, self._queue = self._queue, []
                    job = loop.run_in_executor(self._executor, _apply_batches, self._conn, batches)
                    job.add_done_callback(lambda done: _settle(batches, done))
                    await asyncio.shield(job)
        except asyncio.CancelledError:
            if batch in self._queue:
                self._queue.remove(batch)
            raise
        return await batch.future

    async def call(self, fn: Callable[[sqlite3.Connection], T]) -> T:
        """Run ``fn`` on the connection, on the writer thread, holding the lock."""
        async with self._lock:
            return await self._hop(lambda: fn(self._conn))

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """Reads in autocommit mode: consistent per statement, no write lock taken."""
        async with self._lock:
            yield Tx(self, begin=False)

    async def schema_version(self) -> int:
        async with self.read() as tx:
            return int(await tx.scalar("PRAGMA user_version"))

    async def migrate(self) -> list[int]:
        """Apply every numbered migration newer than ``PRAGMA user_version``; return those applied."""
        current = await self.schema_version()
        applied: list[int] = []
        for number, sql in available_migrations():
            if number <= current:
                continue
            # executescript commits first; our script is its own transaction.
            await self.call(partial(_script, f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;"))
            applied.append(number)
        return applied


def _script(script: str, conn: sqlite3.Connection) -> None:
    conn.executescript(script).close()


def _settle(batches: Sequence[_Batch], job: asyncio.Future[None]) -> None:
    """Hand each waiter its batch's results (or the error that sank the whole transaction)."""
    error = None if job.cancelled() else job.exception()
    for batch in batches:
        if batch.future.done():
            continue
        if job.cancelled():
            batch.future.cancel()
        elif error is not None:
            batch.future.set_exception(error)
        elif isinstance(batch.results, BaseException):
            batch.future.set_exception(batch.results)
        else:
            batch.future.set_result(batch.results)


def available_migrations() -> list[tuple[int, str]]:
    """The migrations shipped with the package, ordered by their number (``001_initial.sql``)."""
    folder = resources.files("storage").joinpath("migrations")
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text(encoding="utf-8")))
    return sorted(found)
