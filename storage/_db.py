"""One SQLite connection, one writer, short transactions.

Why a single connection behind an asyncio lock: SQLite allows one writer at a time, and the bot's
checkpoints are tiny, so serialising them in-process is both the fastest and the simplest correct
design. WAL mode lets readers in other processes (``hiclaw-bot ops``) look while the bot writes;
``synchronous=NORMAL`` keeps commits off the disk's fsync path, which in WAL mode still survives a
process crash (only an OS crash can lose the last commits). Transactions open with
``BEGIN IMMEDIATE`` so a writer never discovers a lock conflict half-way, and callers must never
await the network while holding one: the lock would stall every other checkpoint.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
import time
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import asynccontextmanager
from importlib import resources
from pathlib import Path
from typing import Any

import aiosqlite

Params = tuple[Any, ...] | dict[str, Any]


class Tx:
    """A handle on the connection while the caller holds the lock (inside or outside a transaction)."""

    def __init__(self, conn: aiosqlite.Connection, now: Callable[[], float]) -> None:
        self._conn = conn
        self.now = now

    async def execute(self, sql: str, params: Params = ()) -> int:
        """Run a statement; return the last inserted row id (for INSERT) or the changed row count."""
        cursor = await self._conn.execute(sql, params)
        try:
            if sql.lstrip().upper().startswith("INSERT"):
                return int(cursor.lastrowid or 0)
            return cursor.rowcount
        finally:
            await cursor.close()

    async def executemany(self, sql: str, rows: Iterable[Params]) -> None:
        await self._conn.executemany(sql, rows)

    async def fetchone(self, sql: str, params: Params = ()) -> sqlite3.Row | None:
        async with self._conn.execute(sql, params) as cursor:
            row: sqlite3.Row | None = await cursor.fetchone()
            return row

    async def fetchall(self, sql: str, params: Params = ()) -> list[sqlite3.Row]:
        async with self._conn.execute(sql, params) as cursor:
            return list(await cursor.fetchall())

    async def scalar(self, sql: str, params: Params = ()) -> Any:
        row = await self.fetchone(sql, params)
        return None if row is None else row[0]


class Database:
    """The connection, its lock and the migrations."""

    def __init__(self, conn: aiosqlite.Connection, path: Path, now: Callable[[], float]) -> None:
        self._conn = conn
        self._lock = asyncio.Lock()
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
        conn = await aiosqlite.connect(path, isolation_level=None)
        conn.row_factory = sqlite3.Row
        await conn.execute("PRAGMA journal_mode=WAL")
        await conn.execute("PRAGMA synchronous=NORMAL")
        await conn.execute("PRAGMA foreign_keys=ON")
        await conn.execute("PRAGMA busy_timeout=5000")
        db = cls(conn, path, now)
        await db.migrate()
        return db

    async def close(self) -> None:
        async with self._lock:
            await self._conn.close()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[Tx]:
        """A short write transaction (``BEGIN IMMEDIATE`` … ``COMMIT``, rolled back on error)."""
        async with self._lock:
            await self._conn.execute("BEGIN IMMEDIATE")
            try:
                yield Tx(self._conn, self.now)
            except BaseException:
                await self._conn.execute("ROLLBACK")
                raise
            await self._conn.execute("COMMIT")

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        """Reads in autocommit mode: consistent per statement, no write lock taken."""
        async with self._lock:
            yield Tx(self._conn, self.now)

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
            async with self._lock:
                # executescript commits first; our script is its own transaction.
                await self._conn.executescript(
                    f"BEGIN IMMEDIATE;\n{sql}\nPRAGMA user_version = {number};\nCOMMIT;"
                )
            applied.append(number)
        return applied


def available_migrations() -> list[tuple[int, str]]:
    """The migrations shipped with the package, ordered by their number (``001_initial.sql``)."""
    folder = resources.files("storage").joinpath("migrations")
    found: list[tuple[int, str]] = []
    for entry in folder.iterdir():
        name = entry.name
        if name.endswith(".sql") and name[:3].isdigit():
            found.append((int(name[:3]), entry.read_text(encoding="utf-8")))
    return sorted(found)
