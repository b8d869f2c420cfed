"""Idle auto-sleep: a running worker nobody has talked to for its idle timeout is put to sleep.

One query finds the candidates (running, no operation holding or queued on them, last activity —
or creation — older than the worker's ``idle_timeout_s``, else ``lifecycle.idle_timeout``). Before
stopping one, the sweep asks the agent's own activity record: a worker that answered in a room the
bot does not see, or was woken by hand a moment ago, is not idle, and that time is written back.
The sleep itself is a normal ``worker.sleep`` operation whose last step posts the notice.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field

from hiclaw_bot.engine import Clock, Engine, EngineError, describe
from hiclaw_bot.flows import worker as flows
from hiclaw_bot.flows.services import Services
from hiclaw_bot.lifecycle.activity import ActivityTracker
from hiclaw_bot.types import WorkerPhase

log = logging.getLogger("hiclaw_bot.lifecycle")


@dataclass
class IdleSweep:
    """What one sweep found and did."""

    candidates: int = 0
    slept: dict[str, int] = field(default_factory=dict)
    """Worker → the ``worker.sleep`` operation started for it."""
    still_active: list[str] = field(default_factory=list)
    """Candidates whose agent reported activity the bot had not seen."""
    skipped: list[str] = field(default_factory=list)
    """Candidates another operation took between the query and the submit."""
    elapsed_ms: float = 0.0


class IdleSweeper:
    def __init__(self, services: Services, engine: Engine, tracker: ActivityTracker, clock: Clock) -> None:
        self.services = services
        self.engine = engine
        self.tracker = tracker
        self.clock = clock

    async def sweep_once(self) -> IdleSweep:
        started = time.perf_counter()
        await self.tracker.flush()
        now = self.clock.wall()
        default = self.services.config.lifecycle.idle_timeout
        candidates = await self.services.store.workers.idle(now, default, state=WorkerPhase.RUNNING,
                                                            subject_prefix=flows.subject(""))
        result = IdleSweep(candidates=len(candidates))
        revived: dict[str, float] = {}
        for row in candidates:
            timeout = row.idle_timeout_s if row.idle_timeout_s is not None else default
            reported = await self.tracker.agent_reported(row.name)
            if reported is not None and reported + timeout > now:
                revived[row.name] = reported
                result.still_active.append(row.name)
                continue
            last = max(row.last_active_at or row.created_at, reported or 0.0)
            try:
                submission = await self.engine.submit(flows.SLEEP, flows.subject(row.name),
                                                      {"name": row.name, "idle_s": round(now - last)},
                                                      actor=self.services.bot_user_id)
            except EngineError as exc:
                log.debug("not putting %s to sleep: %s", row.name, describe(exc))
                result.skipped.append(row.name)
                continue
            log.info("%s idle for %.0f s: putting it to sleep (operation %s)", row.name, now - last,
                     submission.op.op_id)
            result.slept[row.name] = submission.op.op_id
        if revived:
            await self.services.store.workers.record_activity(revived)
        result.elapsed_ms = (time.perf_counter() - started) * 1000
        return result
