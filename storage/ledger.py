"""The resource ledger: every external object we made or adopted, keyed by its deterministic name.

The ledger is what makes cleanup complete: a delete or an abort walks it instead of guessing what
a half-finished create might have left behind, and the orphan sweep diffs it with what each system
lists.
"""

from __future__ import annotations

import json
from typing import Any

from storage._db import Statement, Tx
from storage._repo import Repo
from storage.models import Resource, ResourceState


class LedgerRepo(Repo):
    async def get(self, kind: str, external_name: str, *, tx: Tx | None = None) -> Resource | None:
        async with self._read(tx) as t:
            row = await t.fetchone(
                "SELECT * FROM resources WHERE kind = ? AND external_name = ?", (kind, external_name)
            )
        return None if row is None else Resource.from_row(row)

    async def record(self, kind: str, external_name: str, state: ResourceState, *, owner: str,
                     op_id: int | None = None, step: str | None = None, external_id: str | None = None,
                     spec_hash: str | None = None, attrs: dict[str, Any] | None = None,
                     error: str | None = None, tx: Tx | None = None) -> None:
        """Insert or move a resource to ``state``; unspecified columns keep their values."""
        async with self._write(tx) as t:
            statement = self.record_statement(
                kind, external_name, state, owner=owner, op_id=op_id, step=step, external_id=external_id,
                spec_hash=spec_hash, attrs=attrs, error=error, now=t.now(),
            )
            await t.execute(statement.sql, statement.params)

    @staticmethod
    def record_statement(kind: str, external_name: str, state: ResourceState | None, *, owner: str,
                         now: float, op_id: int | None = None, step: str | None = None,
                         external_id: str | None = None, spec_hash: str | None = None,
                         attrs: dict[str, Any] | None = None, error: str | None = None) -> Statement:
        """The upsert of :meth:`record`, for a checkpoint that commits it with others in one trip.

        ``state=None`` is for a resource that *observe* found: it is ``created`` when our own
        intent or creation is on record (a crash came between our call and its checkpoint), and
        ``adopted`` when it was there before us. SQL decides, so no read precedes the write.
        """
        observed = state is None
        written: ResourceState = "adopted" if state is None else state
        return Statement(
            "INSERT INTO resources (kind, external_name, external_id, owner, op_id, step, state,"
            " spec_hash, attrs, last_error, created_at, updated_at, deleted_at)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT(kind, external_name) DO UPDATE SET"
            "  state = CASE WHEN ? AND resources.state IN ('intended', 'created') THEN 'created'"
            "   ELSE excluded.state END,"
            "  owner = excluded.owner,"
            "  external_id = COALESCE(excluded.external_id, resources.external_id),"
            "  op_id = COALESCE(excluded.op_id, resources.op_id),"
            "  step = COALESCE(excluded.step, resources.step),"
            "  spec_hash = COALESCE(excluded.spec_hash, resources.spec_hash),"
            "  attrs = CASE WHEN excluded.attrs = '{}' THEN resources.attrs ELSE excluded.attrs END,"
            "  last_error = excluded.last_error, updated_at = excluded.updated_at,"
            "  deleted_at = excluded.deleted_at",
            (kind, external_name, external_id, owner, op_id, step, written, spec_hash,
             json.dumps(attrs or {}, sort_keys=True), error, now, now,
             now if written == "deleted" else None, int(observed)),
        )

    async def by_owner(self, owner: str, *, live_only: bool = True, tx: Tx | None = None) -> list[Resource]:
        sql = "SELECT * FROM resources WHERE owner = ?"
        if live_only:
            sql += " AND state != 'deleted'"
        async with self._read(tx) as t:
            rows = await t.fetchall(sql + " ORDER BY resource_id", (owner,))
        return [Resource.from_row(r) for r in rows]

    async def live(self, kind: str | None = None, *, tx: Tx | None = None) -> list[Resource]:
        sql = "SELECT * FROM resources WHERE state != 'deleted'"
        args: tuple[Any, ...] = ()
        if kind is not None:
            sql += " AND kind = ?"
            args = (kind,)
        async with self._read(tx) as t:
            rows = await t.fetchall(sql + " ORDER BY resource_id", args)
        return [Resource.from_row(r) for r in rows]
