"""The durable step engine: operations made of checkpointed steps, resumable and compensable.

It knows nothing of Matrix, Docker or HTTP (import-linter keeps it so): flows give it steps, it
gives them the durability contract of ARCHITECTURE §3.
"""

from hiclaw_bot.engine.errors import (
    EngineError,
    InvalidTransition,
    OperationNotFound,
    PermanentError,
    StepError,
    SubjectBusy,
    TransientError,
    classify,
    describe,
    is_gone,
)
from hiclaw_bot.engine.events import EventKind, ProgressEvent
from hiclaw_bot.engine.faults import BOUNDARIES, BoundaryHook, hook_from_env, kill_at
from hiclaw_bot.engine.retry import RetryPolicy
from hiclaw_bot.engine.runner import Engine, Submission
from hiclaw_bot.engine.steps import Done, FuncStep, Outcome, ResourceRef, Skipped, Step, StepContext
from hiclaw_bot.engine.undo import Remove
from hiclaw_bot.timing import Clock, FakeClock, SystemClock

__all__ = [
    "BOUNDARIES", "BoundaryHook", "Clock", "Done", "Engine", "EngineError", "EventKind", "FakeClock",
    "FuncStep", "InvalidTransition", "OperationNotFound", "Outcome", "PermanentError", "ProgressEvent",
    "Remove", "ResourceRef", "RetryPolicy", "Skipped", "Step", "StepContext", "StepError", "SubjectBusy",
    "Submission", "SystemClock", "TransientError", "classify", "describe", "hook_from_env", "is_gone",
    "kill_at",
]
