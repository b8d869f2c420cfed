"""Typed params of every worker, team and human operation, parsed once where the flows meet the engine.

The store keeps an operation's params as the JSON they were submitted with; the flows never look
into that dict. Each kind registers a parser (:meth:`Params.of`) that the engine runs when the
operation is submitted, so malformed params are refused before anything is recorded, and again when
its steps are built, so the steps read typed fields. A key an older row lacks takes its default,
so operations written before a field existed still load.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Self

from hiclaw_bot.flows import names
from hiclaw_bot.types import Role, WorkerPhase


class InvalidParams(ValueError):
    """An operation's params that do not parse: a bug in whatever submitted them, never a user's input."""


def _text(params: Mapping[str, Any], key: str) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidParams(f"{key} must be text, not {type(value).__name__}")
    return value


def _required(params: Mapping[str, Any], key: str) -> str:
    value = _text(params, key)
    if value is None:
        raise InvalidParams(f"{key} is missing")
    return value


def _texts(params: Mapping[str, Any], key: str) -> tuple[str, ...]:
    value = params.get(key) or ()
    if not isinstance(value, list | tuple) or not all(isinstance(v, str) for v in value):
        raise InvalidParams(f"{key} must be a list of text")
    return tuple(value)


def _quantity(params: Mapping[str, Any], key: str) -> str | None:
    """A CPU or memory quantity: text, or a number in a row written by hand."""
    value = params.get(key)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return str(value)
    return _text(params, key)


def _number(params: Mapping[str, Any], key: str) -> float | None:
    value = params.get(key)
    if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)):
        raise InvalidParams(f"{key} must be a number")
    return value


def _worker(params: Mapping[str, Any], key: str) -> str:
    return names.check_name("worker", _required(params, key))


@dataclass(frozen=True)
class WorkerParams:
    """``worker.create``, ``.update``, ``.repair`` and ``.delete``: a worker's spec. ``model`` and
    ``image`` may be missing (a delete of a half-made worker); the flows that need them say so."""

    name: str
    model: str | None = None
    image: str | None = None
    runtime: str = "reference"
    team: str | None = None
    leader: str | None = None
    role: Role = Role.WORKER
    skills: tuple[str, ...] = ()
    mcp: tuple[str, ...] = ()
    env: Mapping[str, str] = field(default_factory=dict)
    command: tuple[str, ...] | None = None
    idle_timeout: float | None = None
    cpus: str | None = None
    memory: str | None = None
    backend: str | None = None
    state: WorkerPhase | None = None
    """The phase a repair puts the worker back in."""
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)
    """The params as submitted: what the worker's row records as its spec."""

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Self:
        env = params.get("env") or {}
        if not isinstance(env, Mapping) or not all(isinstance(k, str) and isinstance(v, str) for k, v in env.items()):
            raise InvalidParams("env must map names to text")
        command = params.get("command")
        try:
            role, state = Role(params.get("role") or Role.WORKER), params.get("state")
            phase = WorkerPhase(state) if state else None
        except ValueError as exc:
            raise InvalidParams(str(exc)) from None
        return cls(
            name=_worker(params, "name"), model=_text(params, "model"), image=_text(params, "image"),
            runtime=_text(params, "runtime") or "reference", team=_text(params, "team"),
            leader=_text(params, "leader"), role=role, skills=_texts(params, "skills"), mcp=_texts(params, "mcp"),
            env=dict(env), command=_texts(params, "command") if command else None,
            idle_timeout=_number(params, "idle_timeout"), cpus=_quantity(params, "cpus"),
            memory=_quantity(params, "memory"), backend=_text(params, "backend"), state=phase, spec=dict(params),
        )

    @property
    def leads(self) -> bool:
        """Whether the worker is its team's leader."""
        return self.role is Role.TEAM_LEADER and self.team is not None


@dataclass(frozen=True)
class Missed:
    """The message a sleeping worker was mentioned in: where its wake notice points."""

    room_id: str
    event_id: str
    sender: str


@dataclass(frozen=True)
class SleepParams:
    """``worker.sleep``; ``idle_s`` when the idle timer put it to sleep (its room is told)."""

    name: str
    idle_s: float | None = None

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Self:
        return cls(_worker(params, "name"), _number(params, "idle_s"))


@dataclass(frozen=True)
class WakeParams:
    """``worker.wake``; ``missed`` when a mention woke it (it is pointed at the message)."""

    name: str
    missed: Missed | None = None

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Self:
        missed = params.get("missed")
        if missed is not None and not isinstance(missed, Mapping):
            raise InvalidParams("missed must be a room, an event and a sender")
        return cls(_worker(params, "name"), None if missed is None else
                   Missed(_required(missed, "room_id"), _required(missed, "event_id"), _required(missed, "sender")))


@dataclass(frozen=True)
class TeamParams:
    """Every ``team.*`` operation: the team, its leader, the workers it names, and for a create the
    template of its workers' specs; ``team.add`` with ``create`` makes the joining worker."""

    name: str
    leader: str | None = None
    workers: tuple[str, ...] = ()
    worker: str | None = None
    """The worker joining or leaving (``team.add``, ``team.remove``)."""
    model: str | None = None
    image: str | None = None
    command: tuple[str, ...] | None = None
    runtime: str | None = None
    leader_runtime: str | None = None
    adopt: tuple[str, ...] = ()
    max_workers: int | None = None
    with_workers: bool = False
    create: Mapping[str, Any] | None = None
    """The params of the ``worker.create`` a ``team.add`` runs for a new worker."""
    spec: Mapping[str, Any] = field(default_factory=dict, compare=False, repr=False)

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Self:
        create, max_workers, command = params.get("create"), params.get("max_workers"), params.get("command")
        if create is not None and not isinstance(create, Mapping):
            raise InvalidParams("create must be a worker's params")
        if max_workers is not None and (isinstance(max_workers, bool) or not isinstance(max_workers, int)):
            raise InvalidParams("max_workers must be a whole number")
        leader, worker = _text(params, "leader"), _text(params, "worker")
        return cls(
            name=names.check_name("team", _required(params, "name")),
            leader=names.check_name("worker", leader) if leader else None,
            workers=tuple(names.check_name("worker", w) for w in _texts(params, "workers")),
            worker=names.check_name("worker", worker) if worker else None,
            model=_text(params, "model"), image=_text(params, "image"),
            command=_texts(params, "command") if command else None, runtime=_text(params, "runtime"),
            leader_runtime=_text(params, "leader_runtime"), adopt=_texts(params, "adopt"),
            max_workers=max_workers, with_workers=bool(params.get("with_workers")),
            create=dict(create) if create is not None else None, spec=dict(params),
        )

    def needs_leader(self) -> str:
        if self.leader is None:
            raise InvalidParams("leader is missing")
        return self.leader

    def needs_worker(self) -> str:
        if self.worker is None:
            raise InvalidParams("worker is missing")
        return self.worker


@dataclass(frozen=True)
class HumanParams:
    """Every ``human.*`` operation; ``teams``/``workers`` None in an invite leave them as they are."""

    name: str
    level: str | None = None
    email: str | None = None
    display_name: str | None = None
    teams: tuple[str, ...] | None = None
    workers: tuple[str, ...] | None = None

    @classmethod
    def of(cls, params: Mapping[str, Any]) -> Self:
        return cls(
            name=names.check_name("human", _required(params, "name")), level=_text(params, "level"),
            email=_text(params, "email"), display_name=_text(params, "display_name"),
            teams=_texts(params, "teams") if params.get("teams") is not None else None,
            workers=_texts(params, "workers") if params.get("workers") is not None else None,
        )
