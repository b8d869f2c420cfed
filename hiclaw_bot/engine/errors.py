"""Errors of the durable engine, and how it classifies errors raised inside steps.

::

    EngineError
     ├── StepError                  raised by step code to say how the engine must react
     │    ├── TransientError        retry with backoff (``delay`` overrides the wait)
     │    └── PermanentError        fail the operation now; a person must act
     ├── SubjectBusy                another operation holds the subject
     ├── OperationNotFound
     └── InvalidTransition          e.g. retrying a succeeded operation

Client and backend errors are not imported here (the engine knows nothing of HTTP or Docker):
any exception with a class attribute ``transient`` is classified by it, one with ``not_found`` set
counts as "already gone" when undoing, and ``retry_after`` (seconds) stretches the next wait.
"""

from __future__ import annotations

import asyncio
import enum
from dataclasses import dataclass

from storage import Operation


class EngineError(Exception):
    """Base of the engine's own errors."""


class StepError(EngineError):
    """Raised by a step to tell the engine how to react."""


class TransientError(StepError):
    """Worth retrying after a while."""

    def __init__(self, message: str, *, delay: float | None = None) -> None:
        super().__init__(message)
        self.delay = delay


class PermanentError(StepError):
    """Retrying cannot help; the message tells a person what to do."""


class SubjectBusy(EngineError):
    """Another operation holds the subject (running, failed awaiting a decision, or compensating)."""

    def __init__(self, holder: Operation) -> None:
        super().__init__(f"{holder.subject} is held by operation {holder.op_id} ({holder.kind}, {holder.state})")
        self.holder = holder


class OperationNotFound(EngineError):
    def __init__(self, op_id: int) -> None:
        super().__init__(f"no operation {op_id}")
        self.op_id = op_id


class InvalidTransition(EngineError):
    """The operation is not in a state that allows the request."""


class Verdict(enum.Enum):
    TRANSIENT = "transient"
    PERMANENT = "permanent"


@dataclass(frozen=True)
class Classification:
    verdict: Verdict
    delay: float | None = None

    @property
    def transient(self) -> bool:
        return self.verdict is Verdict.TRANSIENT


def classify(exc: BaseException) -> Classification:
    """Decide whether ``exc`` is worth a retry, and how long to wait if the error says so."""
    if isinstance(exc, TransientError):
        return Classification(Verdict.TRANSIENT, exc.delay)
    if isinstance(exc, PermanentError):
        return Classification(Verdict.PERMANENT)
    flag = getattr(type(exc), "transient", None)
    if isinstance(flag, bool):
        delay = getattr(exc, "retry_after", None)
        return Classification(Verdict.TRANSIENT if flag else Verdict.PERMANENT,
                              float(delay) if isinstance(delay, int | float) else None)
    if isinstance(exc, asyncio.TimeoutError | TimeoutError | ConnectionError):
        return Classification(Verdict.TRANSIENT)
    return Classification(Verdict.PERMANENT)


def is_gone(exc: BaseException) -> bool:
    """True for "the object does not exist": success when the goal was to delete it."""
    return bool(getattr(type(exc), "not_found", False))


def expected(exc: BaseException) -> bool:
    """True for errors that report a refusal or outage outside; False for what looks like a bug."""
    return isinstance(exc, StepError | TimeoutError | ConnectionError) or isinstance(
        getattr(type(exc), "transient", None), bool)


def describe(exc: BaseException) -> str:
    """A one-line, person-readable reason (never a traceback)."""
    text = str(exc).strip() or type(exc).__name__
    return text.splitlines()[0][:500]
