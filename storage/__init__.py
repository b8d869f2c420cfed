"""The bot's SQLite store: migrations, a single-writer connection and typed repositories.

All SQL of the project lives here; nothing above this package writes a query. Open it with
:meth:`Store.open`; every repository method runs in its own short transaction unless given the
``tx`` of :meth:`Store.transaction`, which is how several writes commit together.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from pathlib import Path

from storage._db import Database, Statement, Tx
from storage.chatstate import AuditRepo, ConfirmationsRepo, ProcessedEventsRepo, SyncStateRepo
from storage.entities import HumansRepo, TeamsRepo, WorkersRepo
from storage.ledger import LedgerRepo
from storage.models import (
    TERMINAL_OP_STATES,
    AuditEntry,
    Confirmation,
    Human,
    Operation,
    OpState,
    Resource,
    ResourceState,
    StepRecord,
    StepStatus,
    Team,
    Worker,
)
from storage.operations import OperationsRepo, StepsRepo, is_holder_conflict
from storage.secrets import Secret, SecretsRepo, token_hex
from storage.summary import SummaryRepo

__all__ = [
    "TERMINAL_OP_STATES", "AuditEntry", "Confirmation", "Database", "Human", "OpState", "Operation",
    "Resource", "ResourceState", "Secret", "Statement", "StepRecord", "StepStatus", "Store", "Team", "Tx", "Worker",
    "is_holder_conflict", "token_hex",
]


class Store:
    """The database and its repositories."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.ops = OperationsRepo(db)
        self.steps = StepsRepo(db)
        self.ledger = LedgerRepo(db)
        self.secrets = SecretsRepo(db)
        self.workers = WorkersRepo(db)
        self.teams = TeamsRepo(db)
        self.humans = HumansRepo(db)
        self.sync = SyncStateRepo(db)
        self.events = ProcessedEventsRepo(db)
        self.confirmations = ConfirmationsRepo(db)
        self.audit = AuditRepo(db)
        self.summary = SummaryRepo(db)

    @classmethod
    async def open(cls, path: Path | str, *, now: Callable[[], float] = time.time) -> Store:
        return cls(await Database.open(path, now=now))

    def transaction(self) -> AbstractAsyncContextManager[Tx]:
        return self.db.transaction()

    async def close(self) -> None:
        await self.db.close()
