"""Workers, teams and humans: the desired state users asked for, and what we last observed."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from storage._db import Tx
from storage._repo import Repo, assignments
from storage.models import HOLDING_OP_STATES, Human, Team, Worker

_WORKER_COLUMNS = frozenset({
    "team", "role", "backend", "backend_instance", "image", "model", "spec", "spec_hash", "state", "previous_state",
    "desired_state", "observed_state", "user_id", "room_id", "idle_timeout_s", "last_active_at",
})


class WorkersRepo(Repo):
    async def insert(self, name: str, *, backend: str, state: str, desired_state: str,
                     tx: Tx | None = None, **fields: Any) -> None:
        columns = {"backend": backend, "state": state, "desired_state": desired_state, **fields}
        sets, values = assignments(columns, _WORKER_COLUMNS)
        names = [part.split(" = ")[0] for part in sets.split(", ")]
        async with self._write(tx) as t:
            now = t.now()
            await t.execute(
                f"INSERT INTO workers (name, {', '.join(names)}, created_at, updated_at)"  # noqa: S608
                f" VALUES (?, {', '.join('?' * len(names))}, ?, ?)",
                (name, *values, now, now),
            )

    async def get(self, name: str, *, tx: Tx | None = None) -> Worker | None:
        async with self._read(tx) as t:
            row = await t.fetchone("SELECT * FROM workers WHERE name = ?", (name,))
        return None if row is None else Worker.from_row(row)

    async def all(self, *, team: str | None = None, tx: Tx | None = None) -> list[Worker]:
        async with self._read(tx) as t:
            if team is None:
                rows = await t.fetchall("SELECT * FROM workers ORDER BY name")
            else:
                rows = await t.fetchall("SELECT * FROM workers WHERE team = ? ORDER BY name", (team,))
        return [Worker.from_row(r) for r in rows]

    async def count(self, *, team: str | None = None, tx: Tx | None = None) -> int:
        async with self._read(tx) as t:
            if team is None:
                return int(await t.scalar("SELECT COUNT(*) FROM workers"))
            return int(await t.scalar("SELECT COUNT(*) FROM workers WHERE team = ?", (team,)))

    async def update(self, name: str, *, tx: Tx | None = None, **fields: Any) -> None:
        sets, values = assignments(fields, _WORKER_COLUMNS)
        async with self._write(tx) as t:
            await t.execute(
                f"UPDATE workers SET {sets}, updated_at = ? WHERE name = ?",  # noqa: S608
                (*values, t.now(), name),
            )

    async def delete(self, name: str, *, tx: Tx | None = None) -> None:
        async with self._write(tx) as t:
            await t.execute("DELETE FROM workers WHERE name = ?", (name,))

    async def record_activity(self, stamps: Mapping[str, float], *, tx: Tx | None = None) -> None:
        """Move ``last_active_at`` forward (never back) for many workers in one transaction."""
        async with self._write(tx) as t:
            await t.executemany(
                "UPDATE workers SET last_active_at = ? WHERE name = ?"
                " AND (last_active_at IS NULL OR last_active_at < ?)",
                [(stamp, name, stamp) for name, stamp in stamps.items()],
            )

    async def set_observed(self, observed: Mapping[str, str | None], *, tx: Tx | None = None) -> None:
        """Write what the backend showed of many workers, in one transaction."""
        async with self._write(tx) as t:
            await t.executemany(
                "UPDATE workers SET observed_state = ? WHERE name = ?",
                [(state, name) for name, state in observed.items()],
            )

    async def idle(self, now: float, default_timeout: float, *, state: str, subject_prefix: str,
                   tx: Tx | None = None) -> list[Worker]:
        """Workers in ``state`` whose last activity (or creation) is older than their idle timeout,
        and that no operation holds or waits for (its subject: ``subject_prefix`` + the name): the
        idle sweep's one query."""
        marks = ",".join("?" * len(HOLDING_OP_STATES | {"queued"}))
        async with self._read(tx) as t:
            rows = await t.fetchall(
                "SELECT * FROM workers w WHERE w.state = ?"  # noqa: S608
                " AND COALESCE(w.last_active_at, w.created_at) + COALESCE(w.idle_timeout_s, ?) <= ?"
                " AND NOT EXISTS (SELECT 1 FROM operations o WHERE o.subject = ? || w.name"
                f"  AND o.state IN ({marks}))"
                " ORDER BY w.name",
                (state, default_timeout, now, subject_prefix, *sorted(HOLDING_OP_STATES | {"queued"})),
            )
        return [Worker.from_row(r) for r in rows]


_TEAM_COLUMNS = frozenset({"leader", "room_id", "leader_dm_room_id", "spec", "state", "max_workers"})


class TeamsRepo(Repo):
    async def upsert(self, name: str, *, leader: str, state: str, tx: Tx | None = None,
                     **fields: Any) -> None:
        async with self._write(tx) as t:
            now = t.now()
            await t.execute(
                "INSERT INTO teams (name, leader, state, created_at, updated_at) VALUES (?, ?, ?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET leader = excluded.leader, state = excluded.state,"
                " updated_at = excluded.updated_at",
                (name, leader, state, now, now),
            )
            if fields:
                sets, values = assignments(fields, _TEAM_COLUMNS)
                await t.execute(f"UPDATE teams SET {sets} WHERE name = ?", (*values, name))  # noqa: S608

    async def get(self, name: str, *, tx: Tx | None = None) -> Team | None:
        async with self._read(tx) as t:
            row = await t.fetchone("SELECT * FROM teams WHERE name = ?", (name,))
        return None if row is None else Team.from_row(row)

    async def all(self, *, tx: Tx | None = None) -> list[Team]:
        async with self._read(tx) as t:
            rows = await t.fetchall("SELECT * FROM teams ORDER BY name")
        return [Team.from_row(r) for r in rows]

    async def update(self, name: str, *, tx: Tx | None = None, **fields: Any) -> None:
        sets, values = assignments(fields, _TEAM_COLUMNS)
        async with self._write(tx) as t:
            await t.execute(
                f"UPDATE teams SET {sets}, updated_at = ? WHERE name = ?",  # noqa: S608
                (*values, t.now(), name),
            )

    async def delete(self, name: str, *, tx: Tx | None = None) -> None:
        async with self._write(tx) as t:
            await t.execute("DELETE FROM teams WHERE name = ?", (name,))


_HUMAN_COLUMNS = frozenset({"user_id", "level", "email", "teams", "workers", "display_name", "state"})


class HumansRepo(Repo):
    async def upsert(self, name: str, *, user_id: str, level: str, state: str,
                     tx: Tx | None = None, **fields: Any) -> None:
        async with self._write(tx) as t:
            now = t.now()
            await t.execute(
                "INSERT INTO humans (name, user_id, level, state, created_at, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(name) DO UPDATE SET user_id = excluded.user_id,"
                " level = excluded.level, state = excluded.state, updated_at = excluded.updated_at",
                (name, user_id, level, state, now, now),
            )
            if fields:
                sets, values = assignments(fields, _HUMAN_COLUMNS)
                await t.execute(f"UPDATE humans SET {sets} WHERE name = ?", (*values, name))  # noqa: S608

    async def get(self, name: str, *, tx: Tx | None = None) -> Human | None:
        async with self._read(tx) as t:
            row = await t.fetchone("SELECT * FROM humans WHERE name = ?", (name,))
        return None if row is None else Human.from_row(row)

    async def by_user_id(self, user_id: str, *, tx: Tx | None = None) -> Human | None:
        async with self._read(tx) as t:
            row = await t.fetchone("SELECT * FROM humans WHERE user_id = ?", (user_id,))
        return None if row is None else Human.from_row(row)

    async def all(self, *, tx: Tx | None = None) -> list[Human]:
        async with self._read(tx) as t:
            rows = await t.fetchall("SELECT * FROM humans ORDER BY name")
        return [Human.from_row(r) for r in rows]

    async def delete(self, name: str, *, tx: Tx | None = None) -> None:
        async with self._write(tx) as t:
            await t.execute("DELETE FROM humans WHERE name = ?", (name,))

