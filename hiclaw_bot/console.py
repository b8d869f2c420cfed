"""What ``hiclaw-bot workers``, ``ops`` and ``watch`` show: read-only views of the database.

They open the same SQLite file as the running bot (WAL lets readers in while it writes) and never
write a row, so an operator can look while the bot works. Nothing here talks to Matrix, the
gateway or a backend: the database is the record of what the bot did and is doing.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.table import Table

from storage import Operation, StepRecord, Store

_FINISHED_STEPS = ("done", "skipped", "compensated")


class NoDatabase(Exception):
    """There is no database at the configured path (the bot never ran with this configuration)."""


def check_database(path: Path) -> None:
    """Refuse to create a fresh database by mistake (a typo in ``--config``): these views only read."""
    if not path.exists():
        raise NoDatabase(f"no database at {path}: has the bot run with this configuration?")


@asynccontextmanager
async def open_existing(path: Path) -> AsyncIterator[Store]:
    """The bot's store, already checked by :func:`check_database`."""
    store = await Store.open(path)
    try:
        yield store
    finally:
        await store.close()


def _ago(ts: float | None, now: float) -> str:
    if ts is None:
        return "–"
    seconds = max(now - ts, 0)
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{int(seconds // size)}{unit} ago"
    return f"{int(seconds)}s ago"


async def workers_table(store: Store, *, state: str | None = None) -> Table:
    rows = await store.summary.workers_with_ops()
    now = time.time()
    table = Table("name", "team", "state", "wanted", "backend", "image", "operation", "last active",
                  title=f"{len(rows)} worker(s)")
    for row in rows:
        worker, op = row.worker, row.op
        if state is not None and worker.state != state:
            continue
        table.add_row(worker.name, worker.team or "–", worker.state, worker.desired_state, worker.backend,
                      worker.image or "–", "–" if op is None else f"{op.op_id} {op.kind} ({op.state})",
                      _ago(worker.last_active_at, now))
    return table


def ops_table(ops: list[Operation]) -> Table:
    now = time.time()
    table = Table("op", "kind", "subject", "state", "failed step", "error", "actor", "started")
    for op in ops:
        table.add_row(str(op.op_id), op.kind, op.subject, op.state, op.failed_step or "", (op.error or "")[:60],
                      op.actor or "", _ago(op.created_at, now))
    return table


def steps_table(op: Operation, steps: list[StepRecord]) -> Table:
    table = Table("step", "status", "attempts", "duration", "external", "error",
                  title=f"operation {op.op_id}: {op.kind} {op.subject}, {op.state}")
    for step in steps:
        table.add_row(step.name, step.status + (" (adopted)" if step.adopted else ""), str(step.attempts),
                      "" if step.duration_ms is None else f"{step.duration_ms:.0f} ms",
                      f"{step.external_ms:.0f} ms" if step.external_ms else "", (step.error or "")[:60])
    return table


async def watch(store: Store, op_id: int, console: Console, *, interval: float = 0.25,
                within: float | None = None) -> Operation | None:
    """Follow an operation's steps with a progress bar until it stops moving; None if unknown.

    Stops when the operation is terminal, failed (waiting for a retry or an abort), or ``within``
    seconds have passed; returns it as last read.
    """
    op = await store.ops.get(op_id)
    if op is None:
        return None
    deadline = None if within is None else time.monotonic() + within
    columns = (SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task(f"{op.kind} {op.subject}", total=None)
        while True:
            steps = await store.steps.of(op_id)
            finished = sum(1 for s in steps if s.status in _FINISHED_STEPS)
            current = [s.name for s in steps if s.status == "running"]
            progress.update(task, total=len(steps) or None, completed=finished,
                            description=f"{op.kind} {op.subject}: {op.state}"
                                        + (f" · {', '.join(current)}" if current else ""))
            if op.terminal or op.state == "failed":
                break
            if deadline is not None and time.monotonic() > deadline:
                break
            await asyncio.sleep(interval)
            op = await store.ops.get(op_id) or op
    return op
