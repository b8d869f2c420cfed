"""Typed rows: what each repository returns.

Plain frozen dataclasses rather than an ORM: the schema is small, the queries are few, and a
dataclass makes every column's type visible to mypy at the call site.
"""

from __future__ import annotations

import json
import sqlite3
from dataclasses import dataclass, field
from typing import Any, Literal

OpState = Literal["queued", "running", "failed", "compensating", "succeeded", "compensated", "cancelled"]
StepStatus = Literal["pending", "running", "done", "failed", "skipped", "compensated"]
ResourceState = Literal["intended", "created", "adopted", "deleting", "deleted", "orphaned"]

TERMINAL_OP_STATES: frozenset[str] = frozenset({"succeeded", "compensated", "cancelled"})
"""States an operation never leaves."""
HOLDING_OP_STATES: frozenset[str] = frozenset({"running", "failed", "compensating"})
"""States in which an operation holds its subject (see the partial UNIQUE index)."""


def _json(text: str | None, default: Any) -> Any:
    return default if text is None else json.loads(text)


@dataclass(frozen=True)
class Operation:
    op_id: int
    kind: str
    subject: str
    params: dict[str, Any]
    actor: str | None
    room_id: str | None
    source_event_id: str | None
    state: OpState
    error: str | None
    failed_step: str | None
    progress_event_id: str | None
    created_at: float
    updated_at: float
    finished_at: float | None
    reported_at: float | None = None
    """The ``finished_at`` whose final message was sent; behind ``finished_at``: not told yet."""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Operation:
        return cls(
            op_id=row["op_id"], kind=row["kind"], subject=row["subject"],
            params=_json(row["params"], {}), actor=row["actor"], room_id=row["room_id"],
            source_event_id=row["source_event_id"], state=row["state"], error=row["error"],
            failed_step=row["failed_step"], progress_event_id=row["progress_event_id"],
            created_at=row["created_at"], updated_at=row["updated_at"], finished_at=row["finished_at"],
            reported_at=row["reported_at"],
        )

    @property
    def terminal(self) -> bool:
        return self.state in TERMINAL_OP_STATES


@dataclass(frozen=True)
class StepRecord:
    op_id: int
    name: str
    position: int
    status: StepStatus
    attempts: int
    calls: int
    """How many times the step's ``do`` was entered: the crash tests count duplicates with it."""
    adopted: bool
    started_at: float | None
    finished_at: float | None
    duration_ms: float | None
    external_ms: float
    error: str | None
    output: dict[str, Any] | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> StepRecord:
        return cls(
            op_id=row["op_id"], name=row["name"], position=row["position"], status=row["status"],
            attempts=row["attempts"], calls=row["calls"], adopted=bool(row["adopted"]),
            started_at=row["started_at"], finished_at=row["finished_at"],
            duration_ms=row["duration_ms"], external_ms=row["external_ms"], error=row["error"],
            output=_json(row["output"], None),
        )


@dataclass(frozen=True)
class Resource:
    resource_id: int
    kind: str
    external_name: str
    external_id: str | None
    owner: str
    op_id: int | None
    step: str | None
    state: ResourceState
    spec_hash: str | None
    attrs: dict[str, Any]
    last_error: str | None
    created_at: float
    updated_at: float
    deleted_at: float | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Resource:
        return cls(
            resource_id=row["resource_id"], kind=row["kind"], external_name=row["external_name"],
            external_id=row["external_id"], owner=row["owner"], op_id=row["op_id"], step=row["step"],
            state=row["state"], spec_hash=row["spec_hash"], attrs=_json(row["attrs"], {}),
            last_error=row["last_error"], created_at=row["created_at"], updated_at=row["updated_at"],
            deleted_at=row["deleted_at"],
        )

    @property
    def live(self) -> bool:
        """The object exists (or may exist) outside: anything but ``deleted``."""
        return self.state != "deleted"


@dataclass(frozen=True)
class Worker:
    name: str
    team: str | None
    role: str
    backend: str
    image: str | None
    model: str | None
    spec: dict[str, Any]
    spec_hash: str | None
    state: str
    previous_state: str | None
    desired_state: str
    observed_state: str | None
    user_id: str | None
    room_id: str | None
    idle_timeout_s: float | None
    last_active_at: float | None
    created_at: float
    updated_at: float
    backend_instance: str | None = None
    """The backend's instance (``hiclaw.io/instance``); None on rows older than that column."""

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Worker:
        return cls(
            name=row["name"], team=row["team"], role=row["role"], backend=row["backend"],
            image=row["image"], model=row["model"], spec=_json(row["spec"], {}),
            spec_hash=row["spec_hash"], state=row["state"], previous_state=row["previous_state"],
            desired_state=row["desired_state"], observed_state=row["observed_state"],
            user_id=row["user_id"], room_id=row["room_id"], idle_timeout_s=row["idle_timeout_s"],
            last_active_at=row["last_active_at"], created_at=row["created_at"],
            updated_at=row["updated_at"], backend_instance=row["backend_instance"],
        )


@dataclass(frozen=True)
class Team:
    name: str
    leader: str
    room_id: str | None
    leader_dm_room_id: str | None
    spec: dict[str, Any]
    state: str
    max_workers: int | None
    created_at: float
    updated_at: float

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Team:
        return cls(
            name=row["name"], leader=row["leader"], room_id=row["room_id"],
            leader_dm_room_id=row["leader_dm_room_id"], spec=_json(row["spec"], {}),
            state=row["state"], max_workers=row["max_workers"], created_at=row["created_at"],
            updated_at=row["updated_at"],
        )


@dataclass(frozen=True)
class Human:
    name: str
    user_id: str
    level: str
    email: str | None
    teams: list[str] = field(default_factory=list)
    display_name: str | None = None
    state: str = "active"
    workers: list[str] = field(default_factory=list)
    """Workers it may talk to besides those its level grants (``--workers``)."""
    created_at: float = 0.0
    updated_at: float = 0.0

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> Human:
        return cls(
            name=row["name"], user_id=row["user_id"], level=row["level"], email=row["email"],
            teams=_json(row["teams"], []), display_name=row["display_name"], state=row["state"],
            workers=_json(row["workers"], []), created_at=row["created_at"], updated_at=row["updated_at"],
        )


@dataclass(frozen=True)
class AuditEntry:
    audit_id: int
    ts: float
    actor: str
    room_id: str | None
    command: str
    subject: str | None
    op_id: int | None
    decision: str
    detail: str | None

    @classmethod
    def from_row(cls, row: sqlite3.Row) -> AuditEntry:
        return cls(
            audit_id=row["audit_id"], ts=row["ts"], actor=row["actor"], room_id=row["room_id"],
            command=row["command"], subject=row["subject"], op_id=row["op_id"],
            decision=row["decision"], detail=row["detail"],
        )


@dataclass(frozen=True)
class Confirmation:
    code: str
    sender: str
    room_id: str
    command: str
    expires_at: float
