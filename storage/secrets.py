"""Generated secrets (passwords, gateway keys, tokens), committed before any external call.

A worker's password must be the same on every retry, or the "user exists → log in" path breaks;
so secrets are created once, in the database, and reused. :class:`Secret` keeps them out of logs:
its ``str``/``repr`` are masked and the value must be asked for with :meth:`Secret.reveal`.
"""

from __future__ import annotations

import secrets as _random
from collections.abc import Callable

from storage._db import Tx
from storage._repo import Repo


class Secret:
    """A secret value that does not print itself."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')"

    __str__ = __repr__

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and _random.compare_digest(self._value, other._value)

    def __hash__(self) -> int:
        return hash(self._value)


def token_hex(nbytes: int = 24) -> str:
    return _random.token_hex(nbytes)


class SecretsRepo(Repo):
    async def get(self, owner: str, name: str, *, tx: Tx | None = None) -> Secret | None:
        async with self._read(tx) as t:
            value = await t.scalar("SELECT value FROM secrets WHERE owner = ? AND name = ?", (owner, name))
        return None if value is None else Secret(str(value))

    async def get_or_create(self, owner: str, name: str, *, generate: Callable[[], str] = token_hex,
                            tx: Tx | None = None) -> Secret:
        """Return the stored secret, generating and committing it first if there is none."""
        async with self._write(tx) as t:
            await t.execute(
                "INSERT OR IGNORE INTO secrets (owner, name, value, created_at) VALUES (?, ?, ?, ?)",
                (owner, name, generate(), t.now()),
            )
            value = await t.scalar("SELECT value FROM secrets WHERE owner = ? AND name = ?", (owner, name))
        return Secret(str(value))

    async def put(self, owner: str, name: str, value: str, *, tx: Tx | None = None) -> None:
        async with self._write(tx) as t:
            await t.execute(
                "INSERT INTO secrets (owner, name, value, created_at) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(owner, name) DO UPDATE SET value = excluded.value",
                (owner, name, value, t.now()),
            )

    async def delete(self, owner: str, name: str | None = None, *, tx: Tx | None = None) -> None:
        async with self._write(tx) as t:
            if name is None:
                await t.execute("DELETE FROM secrets WHERE owner = ?", (owner,))
            else:
                await t.execute("DELETE FROM secrets WHERE owner = ? AND name = ?", (owner, name))
