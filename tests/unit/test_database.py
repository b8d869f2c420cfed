"""The SQLite layer on a real file: one-trip writes, group commit, and the ledger's adopted/created rule."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from storage import Database, Statement, Store
from storage.ledger import LedgerRepo
from storage.operations import StepsRepo


@pytest.fixture
async def store(tmp_path: Path) -> AsyncIterator[Store]:
    opened = await Store.open(tmp_path / "bot.db", now=lambda: 1000.0)
    yield opened
    await opened.close()


def _insert_op(subject: str) -> Statement:
    return Statement(
        "INSERT INTO operations (kind, subject, params, state, created_at, updated_at)"
        " VALUES ('noop', ?, '{}', 'queued', 0, 0)", (subject,),
    )


async def _subjects(db: Database) -> list[str]:
    async with db.read() as tx:
        return [row[0] for row in await tx.fetchall("SELECT subject FROM operations ORDER BY op_id")]


async def test_a_write_returns_each_statements_result(store: Store) -> None:
    results = await store.db.write([
        _insert_op("a"), _insert_op("b"), Statement("SELECT count(*) FROM operations", rows=True),
    ])
    assert results[:2] == [1, 2]
    assert results[2][0][0] == 2


async def test_concurrent_writes_share_one_commit(store: Store) -> None:
    """Writers that queue behind a held lock are committed together, by whichever gets it first."""
    commits = 0
    original = store.db._conn

    def counting(statement: str) -> None:
        nonlocal commits
        if statement.strip().upper() == "COMMIT":
            commits += 1

    await store.db.call(lambda conn: conn.set_trace_callback(counting))
    async with store.db.transaction() as tx:  # hold the lock while 20 writers queue up
        await tx.execute("SELECT 1")
        writers = [asyncio.create_task(store.db.write([_insert_op(f"s{i}")])) for i in range(20)]
        await asyncio.sleep(0.01)
    await asyncio.gather(*writers)
    await store.db.call(lambda conn: conn.set_trace_callback(None))
    assert original is store.db._conn
    assert await _subjects(store.db) == [f"s{i}" for i in range(20)]
    assert commits == 2  # the held transaction's, and one for all twenty writers


async def test_a_failing_batch_fails_only_itself(store: Store) -> None:
    async with store.db.transaction() as tx:
        await tx.execute("SELECT 1")
        good = asyncio.create_task(store.db.write([_insert_op("good")]))
        bad = asyncio.create_task(store.db.write([_insert_op("half"), Statement("INSERT INTO nowhere VALUES (1)")]))
        also_good = asyncio.create_task(store.db.write([_insert_op("also-good")]))
        await asyncio.sleep(0.01)
    await good
    await also_good
    with pytest.raises(sqlite3.OperationalError, match="nowhere"):
        await bad
    assert await _subjects(store.db) == ["good", "also-good"]  # "half" was rolled back with its batch


async def test_a_cancelled_waiter_writes_nothing(store: Store) -> None:
    async with store.db.transaction() as tx:
        await tx.execute("SELECT 1")
        cancelled = asyncio.create_task(store.db.write([_insert_op("cancelled")]))
        kept = asyncio.create_task(store.db.write([_insert_op("kept")]))
        await asyncio.sleep(0.01)
        cancelled.cancel()
        await asyncio.sleep(0)
    await kept
    with pytest.raises(asyncio.CancelledError):
        await cancelled
    assert await _subjects(store.db) == ["kept"]


async def test_a_transaction_that_wrote_nothing_opens_none(store: Store) -> None:
    statements: list[str] = []
    await store.db.call(lambda conn: conn.set_trace_callback(statements.append))
    async with store.db.transaction():
        pass
    await store.db.call(lambda conn: conn.set_trace_callback(None))
    assert statements == []


async def test_a_failed_transaction_is_rolled_back(store: Store) -> None:
    async def insert_then_fail() -> None:
        async with store.db.transaction() as tx:
            await tx.execute(_insert_op("rolled-back").sql, _insert_op("rolled-back").params)
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError):
        await insert_then_fail()
    assert await _subjects(store.db) == []
    await store.db.write([_insert_op("after")])
    assert await _subjects(store.db) == ["after"]


@pytest.mark.parametrize(("before", "after"), [
    (None, "adopted"),          # observe found what was there before us
    ("intended", "created"),    # our call went through, then the process died before its checkpoint
    ("created", "created"),     # ours, re-observed on a later attempt
    ("deleted", "adopted"),     # we made and deleted one; this one is someone else's
])
async def test_an_observed_resource_is_created_only_if_we_intended_it(
        store: Store, before: str | None, after: str) -> None:
    if before is not None:
        await store.ledger.record("room", "#x", before, owner="worker:x")  # type: ignore[arg-type]
    await store.db.write([LedgerRepo.record_statement("room", "#x", None, owner="worker:x", now=1.0)])
    row = await store.ledger.get("room", "#x")
    assert row is not None
    assert row.state == after


async def test_the_step_row_copies_adopted_from_the_ledger(store: Store) -> None:
    op_id = (await store.db.write([_insert_op("worker:x")]))[0]
    await store.steps.ensure(op_id, ["room"])
    await store.db.write([
        LedgerRepo.record_statement("room", "#x", None, owner="worker:x", now=1.0),
        StepsRepo.update_statement(op_id, "room", status="done", adopted=0),
        StepsRepo.mark_adopted_statement(op_id, "room", "room", "#x"),
    ])
    step = await store.steps.get(op_id, "room")
    assert step is not None
    assert step.adopted
