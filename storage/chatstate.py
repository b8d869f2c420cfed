"""What the chat layer must remember across restarts: the sync token, the events already handled,
pending confirmations and the audit log.

The sync token and the processed-event mark are written in the same transaction as the operation
a command starts, so a crash can neither lose a command nor run it twice.
"""

from __future__ import annotations

from storage._db import Tx
from storage._repo import Repo
from storage.models import AuditEntry, Confirmation


class SyncStateRepo(Repo):
    async def get(self, key: str, *, tx: Tx | None = None) -> str | None:
        async with self._read(tx) as t:
            value = await t.scalar("SELECT value FROM sync_state WHERE key = ?", (key,))
        return None if value is None else str(value)

    async def set(self, key: str, value: str, *, tx: Tx | None = None) -> None:
        async with self._write(tx) as t:
            await t.execute(
                "INSERT INTO sync_state (key, value) VALUES (?, ?)"
                " ON CONFLICT(key) DO UPDATE SET value = excluded.value",
                (key, value),
            )


class ProcessedEventsRepo(Repo):
    async def seen(self, event_id: str, *, tx: Tx | None = None) -> bool:
        async with self._read(tx) as t:
            found = await t.scalar("SELECT 1 FROM processed_events WHERE event_id = ?", (event_id,))
        return found is not None

    async def mark(self, event_id: str, room_id: str, outcome: str, *, op_id: int | None = None,
                   tx: Tx | None = None) -> bool:
        """Mark an event handled; False if it already was (the caller must then do nothing)."""
        async with self._write(tx) as t:
            await t.execute(
                "INSERT OR IGNORE INTO processed_events (event_id, room_id, op_id, outcome, processed_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (event_id, room_id, op_id, outcome, t.now()),
            )
            return bool(await t.scalar("SELECT changes()") == 1)

    async def prune(self, older_than: float, *, tx: Tx | None = None) -> int:
        async with self._write(tx) as t:
            return await t.execute("DELETE FROM processed_events WHERE processed_at < ?", (older_than,))


class ConfirmationsRepo(Repo):
    async def add(self, confirmation: Confirmation, *, tx: Tx | None = None) -> None:
        async with self._write(tx) as t:
            await t.execute(
                "INSERT OR REPLACE INTO confirmations (code, sender, room_id, command, expires_at)"
                " VALUES (?, ?, ?, ?, ?)",
                (confirmation.code, confirmation.sender, confirmation.room_id, confirmation.command,
                 confirmation.expires_at),
            )

    async def take(self, code: str, sender: str, *, tx: Tx | None = None) -> Confirmation | None:
        """Consume a live confirmation of ``sender``; expired or foreign codes yield None."""
        async with self._write(tx) as t:
            row = await t.fetchone(
                "SELECT * FROM confirmations WHERE code = ? AND sender = ? AND expires_at >= ?",
                (code, sender, t.now()),
            )
            if row is None:
                return None
            await t.execute("DELETE FROM confirmations WHERE code = ?", (code,))
        return Confirmation(code=row["code"], sender=row["sender"], room_id=row["room_id"],
                            command=row["command"], expires_at=row["expires_at"])

    async def purge_expired(self, *, tx: Tx | None = None) -> int:
        async with self._write(tx) as t:
            return await t.execute("DELETE FROM confirmations WHERE expires_at < ?", (t.now(),))


class AuditRepo(Repo):
    async def add(self, *, actor: str, command: str, decision: str, room_id: str | None = None,
                  subject: str | None = None, op_id: int | None = None, detail: str | None = None,
                  tx: Tx | None = None) -> int:
        async with self._write(tx) as t:
            return await t.execute(
                "INSERT INTO audit (ts, actor, room_id, command, subject, op_id, decision, detail)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (t.now(), actor, room_id, command, subject, op_id, decision, detail),
            )

    async def recent(self, *, subject: str | None = None, limit: int = 50,
                   tx: Tx | None = None) -> list[AuditEntry]:
        async with self._read(tx) as t:
            if subject is None:
                rows = await t.fetchall("SELECT * FROM audit ORDER BY audit_id DESC LIMIT ?", (limit,))
            else:
                rows = await t.fetchall(
                    "SELECT * FROM audit WHERE subject = ? ORDER BY audit_id DESC LIMIT ?", (subject, limit)
                )
        return [AuditEntry.from_row(r) for r in rows]

    async def recent_with_outcomes(self, *, subject: str | None = None, limit: int = 50,
                                   tx: Tx | None = None) -> list[tuple[AuditEntry, str | None]]:
        """Like :meth:`recent`, each entry with the current state of its operation (one join).

        The audit row is written when the command is decided; how its operation ended is read from
        the operation itself, so the log never disagrees with ``!op show``.
        """
        where, args = ("WHERE a.subject = ?", (subject, limit)) if subject is not None else ("", (limit,))
        async with self._read(tx) as t:
            rows = await t.fetchall(
                "SELECT a.*, o.state AS op_state FROM audit a LEFT JOIN operations o ON o.op_id = a.op_id"  # noqa: S608
                f" {where} ORDER BY a.audit_id DESC LIMIT ?",
                args,
            )
        return [(AuditEntry.from_row(r), r["op_state"]) for r in rows]
