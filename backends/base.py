"""The runtime contract every worker backend fulfils, and the values that cross it.

A backend turns a :class:`WorkerSpec` into something running (a container, a Deployment, a
process group) under a deterministic name, and answers for it by that name alone. The name is
the idempotency key of the bot's durable engine: after a crash the engine observes by name and
adopts what it finds, so every call here must be safe to repeat:

- ``create`` adopts a worker that exists with the same spec hash and refuses (``Conflict``) one
  with another hash unless asked to replace it; it never starts the worker, ``start`` does;
- ``start`` and ``stop`` are no-ops when the worker is already in the wanted state;
- ``delete`` treats "already gone" as success.

Every object a backend makes carries three labels: the worker's name, the hash of the spec it
runs, and the *instance* id given to the backend's constructor. ``list`` only ever sees its own
instance, so two bots (or two test runs) sharing an engine never touch each other's workers.

Values of ``WorkerSpec.env`` may be secrets (gateway keys, Matrix passwords): the spec's repr
masks them, and no backend puts them in a log line or an exception.
"""

from __future__ import annotations

import builtins
import enum
import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal, InvalidOperation
from types import MappingProxyType
from typing import Protocol, runtime_checkable

from backends.errors import InvalidSpec

NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
OBJECT_PREFIX = "hiclaw-worker-"
LABEL_WORKER = "hiclaw.io/worker"
LABEL_SPEC_HASH = "hiclaw.io/spec-hash"
LABEL_INSTANCE = "hiclaw.io/instance"
RESERVED_LABEL_PREFIX = "hiclaw.io/"

_ENV_NAME_RE = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_LABEL_NAME_RE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)$")
_LABEL_VALUE_RE = re.compile(r"^(([A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?)?)$")
_DNS_SUBDOMAIN_RE = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_QUANTITY_RE = re.compile(
    r"^(?P<num>\+?([0-9]+(\.[0-9]*)?|\.[0-9]+))(?P<suffix>[KMGTPE]i|[numkMGTPE]|[eE][+-]?[0-9]+)?$")
_SUFFIXES: dict[str, Decimal] = {
    "": Decimal(1), "n": Decimal("1e-9"), "u": Decimal("1e-6"), "m": Decimal("1e-3"),
    "k": Decimal(10) ** 3, "M": Decimal(10) ** 6, "G": Decimal(10) ** 9, "T": Decimal(10) ** 12,
    "P": Decimal(10) ** 15, "E": Decimal(10) ** 18,
    "Ki": Decimal(2) ** 10, "Mi": Decimal(2) ** 20, "Gi": Decimal(2) ** 30, "Ti": Decimal(2) ** 40,
    "Pi": Decimal(2) ** 50, "Ei": Decimal(2) ** 60,
}
_MASK = "***"


def check_name(backend: str, name: str) -> None:
    """Refuse a worker name that is not a lowercase DNS label, before any external call."""
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise InvalidSpec(backend, f"worker name {name!r} must match {NAME_RE.pattern}")


def object_name(name: str) -> str:
    """The container / Deployment name of a worker."""
    return f"{OBJECT_PREFIX}{name}"


def parse_quantity(value: str) -> Decimal:
    """The value of a Kubernetes resource quantity ("500m", "1.5", "512Mi", "1e3")."""
    match = _QUANTITY_RE.fullmatch(value)
    if match is None:
        raise InvalidSpec("spec", f"resource quantity {value!r} is not a Kubernetes quantity")
    suffix = match["suffix"] or ""
    try:
        number = Decimal(match["num"])
        if suffix[:1] in ("e", "E"):
            return number * Decimal(10) ** int(suffix[1:])
    except InvalidOperation as exc:  # pragma: no cover - the regex admits only valid numbers
        raise InvalidSpec("spec", f"resource quantity {value!r} is not a number") from exc
    return number * _SUFFIXES[suffix]


@dataclass(frozen=True)
class Resources:
    """CPU and memory requests and limits, as Kubernetes quantities ("250m", "512Mi")."""

    cpu_request: str | None = None
    cpu_limit: str | None = None
    memory_request: str | None = None
    memory_limit: str | None = None

    def __post_init__(self) -> None:
        for value in (self.cpu_request, self.cpu_limit, self.memory_request, self.memory_limit):
            if value is not None:
                parse_quantity(value)

    def as_dict(self) -> dict[str, str]:
        """The quantities that are set, keyed by field name."""
        pairs = {"cpu_request": self.cpu_request, "cpu_limit": self.cpu_limit,
                 "memory_request": self.memory_request, "memory_limit": self.memory_limit}
        return {key: value for key, value in pairs.items() if value is not None}


@dataclass(frozen=True)
class WorkerSpec:
    """What a worker runs. Immutable; ``env`` is a read-only mapping whose values the repr masks."""

    name: str
    image: str
    command: Sequence[str] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    labels: Mapping[str, str] = field(default_factory=dict)
    resources: Resources | None = None

    def __post_init__(self) -> None:
        check_name("spec", self.name)
        if not self.image or any(ch.isspace() for ch in self.image):
            raise InvalidSpec("spec", "image must be a non-empty reference without spaces")
        if self.command is not None:
            command = tuple(self.command)
            if not command or any(not isinstance(arg, str) or "\0" in arg for arg in command):
                raise InvalidSpec("spec", "command must be a non-empty list of strings without NUL")
            object.__setattr__(self, "command", command)
        for key, value in self.env.items():
            if not _ENV_NAME_RE.fullmatch(key):
                raise InvalidSpec("spec", f"environment variable name {key!r} is not a valid name")
            if not isinstance(value, str) or "\0" in value:
                raise InvalidSpec("spec", f"environment variable {key} must be a string without NUL")
        for key, value in self.labels.items():
            _check_label(key, value)
        object.__setattr__(self, "env", MappingProxyType(dict(self.env)))
        object.__setattr__(self, "labels", MappingProxyType(dict(self.labels)))

    def __repr__(self) -> str:
        env = {key: _MASK for key in sorted(self.env)}
        return (f"WorkerSpec(name={self.name!r}, image={self.image!r}, command={self.command!r}, "
                f"env={env!r}, labels={dict(self.labels)!r}, resources={self.resources!r})")

    __str__ = __repr__

    @property
    def spec_hash(self) -> str:
        """First 16 hex digits of the SHA-256 of the canonical JSON of what the worker runs."""
        canonical = json.dumps(
            {
                "image": self.image,
                "command": list(self.command) if self.command is not None else None,
                "env": dict(self.env),
                "labels": dict(self.labels),
                "resources": self.resources.as_dict() if self.resources else None,
            },
            sort_keys=True, separators=(",", ":"), ensure_ascii=True,
        )
        return hashlib.sha256(canonical.encode()).hexdigest()[:16]


def _check_label(key: str, value: str) -> None:
    prefix, _, name = key.rpartition("/")
    if key.startswith(RESERVED_LABEL_PREFIX):
        raise InvalidSpec("spec", f"label {key!r} uses the reserved prefix {RESERVED_LABEL_PREFIX}")
    if (prefix and (len(prefix) > 253 or not _DNS_SUBDOMAIN_RE.fullmatch(prefix))) \
            or not _LABEL_NAME_RE.fullmatch(name):
        raise InvalidSpec("spec", f"label key {key!r} is not a valid label key")
    if not isinstance(value, str) or not _LABEL_VALUE_RE.fullmatch(value):
        raise InvalidSpec("spec", f"label {key!r} has a value that is not a valid label value")


def worker_labels(spec: WorkerSpec, instance: str) -> dict[str, str]:
    """The labels on every object of a worker: the spec's own plus the three reserved ones."""
    return {**spec.labels, LABEL_WORKER: spec.name, LABEL_SPEC_HASH: spec.spec_hash,
            LABEL_INSTANCE: instance}


def check_instance(backend: str, instance: str) -> None:
    """An instance id becomes a label value, so it must be one."""
    if not instance or not _LABEL_VALUE_RE.fullmatch(instance):
        raise InvalidSpec(backend, f"instance id {instance!r} must be a non-empty label value")


class WorkerState(enum.StrEnum):
    RUNNING = "running"
    STOPPED = "stopped"
    STARTING = "starting"
    FAILED = "failed"
    NOT_FOUND = "not_found"
    UNKNOWN = "unknown"


@dataclass(frozen=True)
class WorkerStatus:
    """What the backend observes of one worker. ``detail`` is a short human explanation."""

    name: str
    state: WorkerState
    image: str | None = None
    spec_hash: str | None = None
    started_at: datetime | None = None
    detail: str = ""


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class BackendRef:
    """What ``create`` made or adopted: the ids the engine records in its resource ledger."""

    backend: str
    name: str
    external_name: str
    external_id: str
    spec_hash: str
    adopted: bool


@runtime_checkable
class WorkerBackend(Protocol):
    """A place where workers run. Every method checks the worker name before any external call."""

    name: str

    async def create(self, spec: WorkerSpec, *, replace: bool = False) -> BackendRef:
        """Create the worker stopped; adopt one with the same spec hash.

        A worker with another hash raises ``Conflict``, or is updated to ``spec`` when
        ``replace`` is true.
        """

    async def start(self, name: str) -> None:
        """Start the worker; a no-op when it runs. ``NotFound`` when absent."""

    async def stop(self, name: str) -> None:
        """Stop the worker; a no-op when it is stopped. ``NotFound`` when absent."""

    async def update(self, name: str, spec: WorkerSpec) -> None:
        """Move the worker to ``spec``, keeping its running/stopped state.

        If the new version fails to become ready, the old one is left (or put back) running and
        ``UpdateFailed`` is raised.
        """

    async def delete(self, name: str) -> None:
        """Remove the worker and everything the backend made for it; absent is success."""

    async def status(self, name: str) -> WorkerStatus:
        """The observed state; ``not_found`` (not an exception) when absent."""

    async def exec(self, name: str, argv: Sequence[str], timeout: float) -> ExecResult:  # noqa: ASYNC109
        """Run ``argv`` inside the running worker. ``Conflict`` if it does not run."""

    async def logs(self, name: str, tail: int | None = None) -> str:
        """The worker's output, the last ``tail`` lines when given."""

    async def list(self) -> builtins.list[WorkerStatus]:
        """Every worker of this backend's instance."""

    async def close(self) -> None:
        """Release connections and threads. The workers keep running."""
