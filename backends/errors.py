"""The error tree every worker backend raises.

::

    BackendError                 permanent unless a subclass says otherwise
     ├── NotFound                not_found = True: the worker (or what it needs) does not exist
     ├── Conflict                exists with another spec, or is in the wrong state for the call
     ├── InvalidSpec             the spec breaks a rule of the contract (name syntax, labels...)
     ├── PolicyViolation         the spec or options break the container policy (names the rule)
     ├── ExecTimeout             a command run in the worker did not finish in time
     ├── UpdateFailed            the new version did not become ready; the old one still runs
     └── TransientBackendError   transient = True: worth retrying later
          └── Unavailable        the engine or API server cannot be reached at all

The bot's durable engine does not import this module: it reads the class attributes
``transient`` and ``not_found`` and the instance attribute ``retry_after`` by name, so the
backends stay free of any dependency on the bot. Messages never carry a worker's environment:
its values may be secrets.
"""

from __future__ import annotations

from typing import ClassVar


class BackendError(Exception):
    """A backend call failed; ``backend`` names the backend ("docker", "kubernetes", "process")."""

    transient: ClassVar[bool] = False
    not_found: ClassVar[bool] = False

    def __init__(self, backend: str, message: str, *, retry_after: float | None = None) -> None:
        super().__init__(f"{backend}: {message}")
        self.backend = backend
        self.message = message
        self.retry_after = retry_after


class NotFound(BackendError):
    """The worker does not exist. For a delete, "already gone" is success and is not raised."""

    not_found = True


class Conflict(BackendError):
    """The worker exists with a different spec, or is in a state that forbids the call."""


class InvalidSpec(BackendError):
    """The spec breaks a rule every backend checks before any external call."""


class PolicyViolation(BackendError):
    """The container request breaks the Docker policy; ``rule`` names the rule in plain words."""

    def __init__(self, backend: str, rule: str) -> None:
        super().__init__(backend, f"refused by policy: {rule}")
        self.rule = rule


class ExecTimeout(BackendError):
    """A command run inside a worker did not finish within its timeout."""


class UpdateFailed(BackendError):
    """The new version did not become ready; the backend put the previous version back."""


class TransientBackendError(BackendError):
    """A failure that may pass: a 5xx, a timeout, a reset connection, a rate limit."""

    transient = True


class Unavailable(TransientBackendError):
    """The container engine or API server did not answer at all."""
