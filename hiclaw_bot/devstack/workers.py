"""The dev stack's process workers stop with it and come back with it.

A process worker is a child process group of nobody once the bot is gone: left running after
``hiclaw-bot dev`` stops, it retries for ever against a homeserver that went with the stack. So
the stack *parks* them as it stops: every process worker that runs is stopped, and its name
written to ``parked-workers.json`` in the bot's data directory. The next start *unparks* them
(starts those runtimes again) before the bot runs, so the bot and its reconciler find them running
as their rows say, and nothing in the workers table changes on either side. A worker deleted
in between is simply not there to start; one parked by a stack that crashed was never parked.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

from backends import NotFound, WorkerBackend, WorkerState
from hiclaw_bot.app import make_backend
from hiclaw_bot.config import Config

log = logging.getLogger("hiclaw_bot.devstack")

PARKED = "parked-workers.json"


def _parked_path(config: Config) -> Path:
    return config.data_dir / PARKED


def _process_backend(config: Config) -> WorkerBackend | None:
    return make_backend(config, "process") if "process" in config.backend.kinds else None


async def park(config: Config) -> list[str]:
    """Stop every running process worker; remember which (returned, and written down)."""
    backend = _process_backend(config)
    if backend is None:
        return []
    try:
        running = [s.name for s in await backend.list() if s.state in (WorkerState.RUNNING, WorkerState.STARTING)]
        for name in running:
            await backend.stop(name)
    finally:
        await backend.close()
    path = _parked_path(config)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(sorted(running)) + "\n")
    if running:
        log.info("stopped %d process worker(s) with the stack: %s", len(running), ", ".join(running))
    return running


async def unpark(config: Config) -> list[str]:
    """Start again the workers the last stop parked; the ones started (deleted ones are skipped)."""
    path = _parked_path(config)
    if not path.exists():
        return []
    names = [str(name) for name in json.loads(path.read_text())]
    backend = _process_backend(config)
    started = []
    if backend is not None:
        try:
            for name in names:
                try:
                    await backend.start(name)
                except NotFound:
                    continue
                started.append(name)
        finally:
            await backend.close()
    path.unlink()
    if started:
        log.info("started %d process worker(s) parked by the last stop: %s", len(started), ", ".join(started))
    return started
