"""Rows as JSON: exactly the fields of the OpenAPI document, and nothing that could hold a secret.

A worker's ``spec`` and an operation's ``params`` are left out on purpose: they carry the
environment people set for workers, which may well include credentials.
"""

from __future__ import annotations

from typing import Any

from storage import AuditEntry, Operation, StepRecord, Worker

JsonObject = dict[str, Any]


def operation(op: Operation) -> JsonObject:
    return {
        "op_id": op.op_id, "kind": op.kind, "subject": op.subject, "state": op.state, "actor": op.actor,
        "failed_step": op.failed_step, "error": op.error, "created_at": op.created_at,
        "updated_at": op.updated_at, "finished_at": op.finished_at,
    }


def step(record: StepRecord) -> JsonObject:
    return {
        "name": record.name, "status": record.status, "attempts": record.attempts, "adopted": record.adopted,
        "duration_ms": record.duration_ms, "external_ms": record.external_ms, "error": record.error,
    }


def worker(row: Worker, op: Operation | None) -> JsonObject:
    return {
        "name": row.name, "team": row.team, "role": row.role, "backend": row.backend, "image": row.image,
        "model": row.model, "state": row.state, "desired_state": row.desired_state,
        "observed_state": row.observed_state, "user_id": row.user_id, "room_id": row.room_id,
        "idle_timeout_s": row.idle_timeout_s, "last_active_at": row.last_active_at,
        "created_at": row.created_at, "updated_at": row.updated_at,
        "operation": None if op is None else operation(op),
    }


def audit_entry(entry: AuditEntry, op_state: str | None) -> JsonObject:
    return {
        "audit_id": entry.audit_id, "ts": entry.ts, "actor": entry.actor, "room_id": entry.room_id,
        "command": entry.command, "subject": entry.subject, "op_id": entry.op_id, "decision": entry.decision,
        "detail": entry.detail, "op_state": op_state,
    }
