"""The reference runtime: our own small agent (:mod:`hiclaw_bot.agent`), used by dev and most tests.

It reads ``openclaw.json`` straight from the object store, so its environment is only the way to
that store, and it reports each sync in ``state/activity.json``: a sync later than the start is
what makes it ready (or, with ``backend.ready_check: running``, merely a running runtime).
"""

from __future__ import annotations

import json
from datetime import datetime

from hiclaw_bot.agent.env import StorageAccess, worker_env
from hiclaw_bot.clients.errors import NotFoundError
from hiclaw_bot.config import Config
from hiclaw_bot.flows import names
from hiclaw_bot.flows.runtimes.base import Probe, ReadyContext
from hiclaw_bot.flows.worker_config import GATEWAY_PORT

__all__ = ["ACTIVITY", "PROFILE", "ReferenceProfile"]

ACTIVITY = "state/activity.json"


class ReferenceProfile:
    name = "reference"

    def command(self, config: Config) -> list[str] | None:
        return None  # the process backend's default command, or the image's entrypoint

    def image(self, config: Config) -> str:
        return config.backend.default_image

    def env(self, config: Config, storage: StorageAccess, worker: str) -> dict[str, str]:
        return worker_env(storage, worker)

    def gateway_port(self, config: Config, worker: str) -> int:
        return GATEWAY_PORT  # the reference agent serves no gateway; the file keeps upstream's value

    def ready_timeout(self, config: Config) -> float:
        return config.lifecycle.ready_timeout

    async def probe(self, config: Config, ctx: ReadyContext) -> Probe:
        if config.backend.ready_check == "running":
            return Probe(True)
        synced = await synced_at(ctx)
        if synced is None:
            return Probe(False, "no sync reported yet")
        if ctx.started_at is not None and synced < ctx.started_at:
            return Probe(False, "no sync reported since the start")
        return Probe(True)


async def synced_at(ctx: ReadyContext) -> datetime | None:
    """When the agent last reported a sync, from its activity record."""
    try:
        record = json.loads(await ctx.objects.get(f"{names.worker_prefix(ctx.worker)}{ACTIVITY}"))
    except (NotFoundError, ValueError):
        return None
    value = record.get("synced_at") if isinstance(record, dict) else None
    return datetime.fromisoformat(value) if isinstance(value, str) else None


PROFILE = ReferenceProfile()
