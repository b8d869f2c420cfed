"""What every repository shares: a transaction-or-own-transaction helper and a safe UPDATE builder."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

from storage._db import Database, Tx


class Repo:
    """A repository runs each call in the caller's transaction, or in a short one of its own."""

    def __init__(self, db: Database) -> None:
        self._db = db

    @asynccontextmanager
    async def _write(self, tx: Tx | None) -> AsyncIterator[Tx]:
        if tx is not None:
            yield tx
        else:
            async with self._db.transaction() as own:
                yield own

    @asynccontextmanager
    async def _read(self, tx: Tx | None) -> AsyncIterator[Tx]:
        if tx is not None:
            yield tx
        else:
            async with self._db.read() as own:
                yield own


def assignments(fields: Mapping[str, Any], allowed: frozenset[str]) -> tuple[str, list[Any]]:
    """``col = ?`` pairs for an UPDATE; refuses unknown columns so no caller can inject SQL."""
    unknown = set(fields) - allowed
    if unknown:
        raise ValueError(f"unknown columns: {sorted(unknown)}")
    parts: list[str] = []
    values: list[Any] = []
    for column, value in fields.items():
        parts.append(f"{column} = ?")
        values.append(json.dumps(value, sort_keys=True) if isinstance(value, dict | list) else value)
    return ", ".join(parts), values
