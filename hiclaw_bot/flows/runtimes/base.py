"""What a worker runtime is to the bot: a profile saying how to run it and when it is ready.

A worker runs one *runtime* (our reference agent, upstream's OpenClaw, later CoPaw...). The flows
never branch on its name: they ask its profile for the command, the image, the environment, the
port of its own gateway and whether it is ready yet. Adding a runtime is one more module with one
more profile, listed in :mod:`hiclaw_bot.flows.runtimes`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Protocol

from backends import WorkerBackend
from hiclaw_bot.agent.env import StorageAccess
from hiclaw_bot.clients.objectstore import ObjectStore
from hiclaw_bot.config import Config

__all__ = ["Probe", "ReadyContext", "RuntimeProfile"]


@dataclass(frozen=True)
class Probe:
    """One look at a started worker: ready or not, and why not (for the timeout's message)."""

    ready: bool
    detail: str = ""


@dataclass(frozen=True)
class ReadyContext:
    """What a readiness check may look at: the running worker and its files."""

    worker: str
    backend: WorkerBackend
    objects: ObjectStore
    started_at: datetime | None


class RuntimeProfile(Protocol):
    """How one runtime is run. Every method is pure but :meth:`probe`, which looks at the worker."""

    name: str

    def command(self, config: Config) -> list[str] | None:
        """The worker's command; ``None``: the backend's default (an image's own entrypoint)."""

    def image(self, config: Config) -> str:
        """The image a container backend runs when the user names none."""

    def env(self, config: Config, storage: StorageAccess, worker: str) -> dict[str, str]:
        """The worker's environment: where its files are, and what the runtime itself needs."""

    def gateway_port(self, config: Config, worker: str) -> int:
        """The port of the worker's own gateway, written into its ``openclaw.json``."""

    def ready_timeout(self, config: Config) -> float:
        """How long a started worker may take to become ready."""

    async def probe(self, config: Config, ctx: ReadyContext) -> Probe:
        """Whether the running worker is ready now; called every few seconds until the timeout."""
