"""Operations and their steps: the checkpoints of the durable engine."""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Sequence
from typing import Any

from storage._db import Statement, Tx
from storage._repo import Repo, assignments
from storage.models import HOLDING_OP_STATES, Operation, OpState, StepRecord, StepStatus

_OP_COLUMNS = frozenset({"state", "error", "failed_step", "progress_event_id", "finished_at", "params",
                         "reported_at"})


class OperationsRepo(Repo):
    async def insert(self, *, kind: str, subject: str, params: dict[str, Any], actor: str | None,
                     room_id: str | None, source_event_id: str | None, state: OpState = "queued",
                     tx: Tx | None = None) -> int:
        async with self._write(tx) as t:
            now = t.now()
            return await t.execute(
                "INSERT INTO operations (kind, subject, params, actor, room_id, source_event_id, state,"
                " created_at, updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (kind, subject, json.dumps(params, sort_keys=True), actor, room_id, source_event_id,
                 state, now, now),
            )

    async def get(self, op_id: int, *, tx: Tx | None = None) -> Operation | None:
        async with self._read(tx) as t:
            row = await t.fetchone("SELECT * FROM operations WHERE op_id = ?", (op_id,))
        return None if row is None else Operation.from_row(row)

    async def by_event(self, event_id: str, *, tx: Tx | None = None) -> Operation | None:
        async with self._read(tx) as t:
            row = await t.fetchone("SELECT * FROM operations WHERE source_event_id = ?", (event_id,))
        return None if row is None else Operation.from_row(row)

    async def holder(self, subject: str, *, tx: Tx | None = None) -> Operation | None:
        """The operation that holds ``subject`` (running, failed or compensating), if any."""
        marks = ",".join("?" * len(HOLDING_OP_STATES))
        async with self._read(tx) as t:
            row = await t.fetchone(
                f"SELECT * FROM operations WHERE subject = ? AND state IN ({marks})",  # noqa: S608
                (subject, *sorted(HOLDING_OP_STATES)),
            )
        return None if row is None else Operation.from_row(row)

    async def find(self, *, states: Sequence[str] | None = None, subject: str | None = None,
                   limit: int = 50, tx: Tx | None = None) -> list[Operation]:
        where: list[str] = []
        args: list[Any] = []
        if states:
            where.append(f"state IN ({','.join('?' * len(states))})")
            args.extend(states)
        if subject is not None:
            where.append("subject = ?")
            args.append(subject)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        async with self._read(tx) as t:
            rows = await t.fetchall(
                f"SELECT * FROM operations {clause} ORDER BY op_id DESC LIMIT ?",  # noqa: S608
                (*args, limit),
            )
        return [Operation.from_row(r) for r in rows]

    async def unreported(self, *, limit: int = 1000, tx: Tx | None = None) -> list[Operation]:
        """Operations that finished (or failed) in a room since their last final message went out."""
        async with self._read(tx) as t:
            rows = await t.fetchall(
                "SELECT * FROM operations WHERE state IN ('succeeded', 'failed', 'compensated', 'cancelled')"
                " AND room_id IS NOT NULL AND source_event_id IS NOT NULL AND finished_at IS NOT NULL"
                " AND (reported_at IS NULL OR reported_at < finished_at) ORDER BY op_id LIMIT ?", (limit,))
        return [Operation.from_row(r) for r in rows]

    async def update(self, op_id: int, *, tx: Tx | None = None, **fields: Any) -> None:
        sets, values = assignments(fields, _OP_COLUMNS)
        async with self._write(tx) as t:
            await t.execute(
                f"UPDATE operations SET {sets}, updated_at = ? WHERE op_id = ?",  # noqa: S608
                (*values, t.now(), op_id),
            )

    async def active_subjects(self, *, tx: Tx | None = None) -> set[str]:
        """Every subject an operation holds or waits for (running, failed, compensating, queued)."""
        states = sorted(HOLDING_OP_STATES | {"queued"})
        async with self._read(tx) as t:
            rows = await t.fetchall(
                f"SELECT DISTINCT subject FROM operations WHERE state IN ({','.join('?' * len(states))})",  # noqa: S608
                tuple(states),
            )
        return {str(row[0]) for row in rows}


def is_holder_conflict(exc: sqlite3.IntegrityError) -> bool:
    """True when an INSERT/UPDATE broke the one-holder-per-subject index."""
    return "operations.subject" in str(exc)


_STEP_COLUMNS = frozenset({
    "status", "attempts", "calls", "adopted", "started_at", "finished_at", "duration_ms",
    "external_ms", "error", "output",
})


class StepsRepo(Repo):
    async def ensure(self, op_id: int, names: Sequence[str], *, tx: Tx | None = None) -> None:
        """Create the step rows of an operation once; existing rows keep their checkpoints."""
        async with self._write(tx) as t:
            await t.executemany(
                "INSERT OR IGNORE INTO steps (op_id, name, position, status) VALUES (?, ?, ?, 'pending')",
                [(op_id, name, i) for i, name in enumerate(names)],
            )

    async def of(self, op_id: int, *, tx: Tx | None = None) -> list[StepRecord]:
        async with self._read(tx) as t:
            rows = await t.fetchall("SELECT * FROM steps WHERE op_id = ? ORDER BY position", (op_id,))
        return [StepRecord.from_row(r) for r in rows]

    async def get(self, op_id: int, name: str, *, tx: Tx | None = None) -> StepRecord | None:
        async with self._read(tx) as t:
            row = await t.fetchone("SELECT * FROM steps WHERE op_id = ? AND name = ?", (op_id, name))
        return None if row is None else StepRecord.from_row(row)

    async def update(self, op_id: int, name: str, *, tx: Tx | None = None, **fields: Any) -> None:
        statement = self.update_statement(op_id, name, **fields)
        async with self._write(tx) as t:
            await t.execute(statement.sql, statement.params)

    @staticmethod
    def update_statement(op_id: int, name: str, **fields: Any) -> Statement:
        """The UPDATE of :meth:`update`, for a checkpoint that commits it with others in one trip."""
        sets, values = assignments(fields, _STEP_COLUMNS)
        return Statement(f"UPDATE steps SET {sets} WHERE op_id = ? AND name = ?",  # noqa: S608
                         (*values, op_id, name))

    async def bump(self, op_id: int, name: str, column: str, *, tx: Tx | None = None) -> None:
        """Add one to ``attempts`` or ``calls`` without reading the row first."""
        statement = self.bump_statement(op_id, name, column)
        async with self._write(tx) as t:
            await t.execute(statement.sql, statement.params)

    @staticmethod
    def bump_statement(op_id: int, name: str, column: str) -> Statement:
        if column not in ("attempts", "calls"):
            raise ValueError(column)
        return Statement(f"UPDATE steps SET {column} = {column} + 1 WHERE op_id = ? AND name = ?",  # noqa: S608
                         (op_id, name))

    @staticmethod
    def mark_adopted_statement(op_id: int, name: str, kind: str, external_name: str) -> Statement:
        """Copy "was it adopted?" from the ledger row the same transaction just wrote."""
        return Statement(
            "UPDATE steps SET adopted = COALESCE((SELECT state = 'adopted' FROM resources"
            " WHERE kind = ? AND external_name = ?), 0) WHERE op_id = ? AND name = ?",
            (kind, external_name, op_id, name),
        )

    async def reset(self, op_id: int, statuses: Sequence[StepStatus], *, tx: Tx | None = None) -> None:
        """Put steps in ``statuses`` back to pending (a retry resumes from them)."""
        marks = ",".join("?" * len(statuses))
        async with self._write(tx) as t:
            await t.execute(
                f"UPDATE steps SET status = 'pending', error = NULL WHERE op_id = ?"  # noqa: S608
                f" AND status IN ({marks})",
                (op_id, *statuses),
            )
