"""Whole-installation summaries for the operations surface: counts by state, workers with their
current operation.

Each is one or two set-based queries, however many workers there are, because a Prometheus scrape
or an API listing must not grow with per-worker round trips (1000 workers stay well under 100 ms).
"""

from __future__ import annotations

from dataclasses import dataclass

from storage._db import Tx
from storage._repo import Repo
from storage.models import HOLDING_OP_STATES, Operation, Worker

WORKER_SUBJECT_PREFIX = "worker:"


@dataclass(frozen=True)
class WorkerWithOp:
    """A worker's row and the operation holding it now (running, failed or compensating), if any."""

    worker: Worker
    op: Operation | None


class SummaryRepo(Repo):
    async def workers_by_state(self, *, tx: Tx | None = None) -> dict[str, int]:
        async with self._read(tx) as t:
            rows = await t.fetchall("SELECT state, COUNT(*) AS n FROM workers GROUP BY state")
        return {row["state"]: int(row["n"]) for row in rows}

    async def ops_by_kind_state(self, *, tx: Tx | None = None) -> dict[tuple[str, str], int]:
        async with self._read(tx) as t:
            rows = await t.fetchall("SELECT kind, state, COUNT(*) AS n FROM operations GROUP BY kind, state")
        return {(row["kind"], row["state"]): int(row["n"]) for row in rows}

    async def workers_with_ops(self, *, name: str | None = None, tx: Tx | None = None) -> list[WorkerWithOp]:
        """Every worker (or the one named) with its holding operation: two queries in all."""
        marks = ",".join("?" * len(HOLDING_OP_STATES))
        holding = sorted(HOLDING_OP_STATES)
        async with self._read(tx) as t:
            if name is None:
                workers = await t.fetchall("SELECT * FROM workers ORDER BY name")
                ops = await t.fetchall(
                    f"SELECT * FROM operations WHERE state IN ({marks}) AND subject LIKE ?",  # noqa: S608
                    (*holding, f"{WORKER_SUBJECT_PREFIX}%"),
                )
            else:
                workers = await t.fetchall("SELECT * FROM workers WHERE name = ?", (name,))
                ops = await t.fetchall(
                    f"SELECT * FROM operations WHERE state IN ({marks}) AND subject = ?",  # noqa: S608
                    (*holding, f"{WORKER_SUBJECT_PREFIX}{name}"),
                )
        by_subject = {row["subject"]: Operation.from_row(row) for row in ops}
        return [WorkerWithOp(w, by_subject.get(f"{WORKER_SUBJECT_PREFIX}{w.name}"))
                for w in map(Worker.from_row, workers)]
