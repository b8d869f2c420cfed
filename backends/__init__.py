"""Worker backends: where a worker's runtime lives (Docker, Kubernetes or a local process).

This package stands alone (it imports nothing from ``hiclaw_bot``) so that the runtime contract
can be tested, and reused, without the bot.
"""

from backends.base import (
    BackendRef,
    ExecResult,
    Resources,
    WorkerBackend,
    WorkerSpec,
    WorkerState,
    WorkerStatus,
)
from backends.errors import (
    BackendError,
    Conflict,
    ExecTimeout,
    InvalidSpec,
    NotFound,
    PolicyViolation,
    TransientBackendError,
    Unavailable,
    UpdateFailed,
)

__all__ = [
    "BackendError", "BackendRef", "Conflict", "ExecResult", "ExecTimeout", "InvalidSpec", "NotFound",
    "PolicyViolation", "Resources", "TransientBackendError", "Unavailable", "UpdateFailed", "WorkerBackend",
    "WorkerSpec", "WorkerState", "WorkerStatus",
]
