"""The lifecycle automation as one object: it hears the rooms, and runs the periodic passes.

``Lifecycle.observe`` is handed to the chat layer's ``Bot(observers=[...])``: every message the
sync sees feeds the activity tracker and the mention waker. ``start()`` runs four loops on the
engine's clock (a fake one in tests): the activity flush, the idle sweep, the drift reconciler and
the orphan report. The orphan report only says that orphans exist (in the report room and the
log); deleting them takes a person's ``!gc`` and ``!confirm``. A pass that fails is logged and the
loop goes on; ``stop()`` flushes what activity is pending.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from hiclaw_bot.engine import Clock, Engine, SystemClock, describe
from hiclaw_bot.flows.inventory import Inventory, inventory
from hiclaw_bot.flows.services import Services
from hiclaw_bot.lifecycle.activity import ActivityTracker
from hiclaw_bot.lifecycle.idle import IdleSweep, IdleSweeper
from hiclaw_bot.lifecycle.reconcile import Reconciler, ReconcileReport
from hiclaw_bot.lifecycle.report import post_report
from hiclaw_bot.lifecycle.rooms import RoomIndex, SeenMessage
from hiclaw_bot.lifecycle.wake import MentionWaker

log = logging.getLogger("hiclaw_bot.lifecycle")


class Lifecycle:
    def __init__(self, services: Services, engine: Engine, *, clock: Clock | None = None) -> None:
        self.services = services
        self.engine = engine
        self.clock = clock or SystemClock()
        self.index = RoomIndex(services.store, services.domain, self.clock)
        self.activity = ActivityTracker(services, self.index, self.clock)
        self.waker = MentionWaker(services, engine, self.index)
        self.idle = IdleSweeper(services, engine, self.activity, self.clock)
        self.reconciler = Reconciler(services, engine)
        self._tasks: list[asyncio.Task[None]] = []
        self._orphans_reported: str | None = None

    async def observe(self, message: SeenMessage, *, command: bool) -> None:
        """The bot's message observer: note activity, wake a sleeping worker that is mentioned."""
        await self.activity.saw(message, command=command)
        await self.waker.saw(message, command=command)

    async def sweep_once(self) -> IdleSweep:
        return await self.idle.sweep_once()

    async def reconcile_once(self) -> ReconcileReport:
        return await self.reconciler.reconcile_once()

    async def orphan_report_once(self) -> Inventory:
        """List the orphans; report them when the list differs from the last one reported."""
        found = await inventory(self.services)
        digest = found.digest() if found.orphans else None
        if digest != self._orphans_reported and found.orphans:
            text = (f"Orphan sweep: {len(found.orphans)} object(s) under our names belong to no worker or team "
                    f"we know. `!gc --dry-run` lists them; `!gc` deletes them after a confirmation.")
            log.info("%s", text)
            await post_report(self.services, text)
        self._orphans_reported = digest
        return found

    async def start(self) -> None:
        settings = self.services.config.lifecycle
        # The reconciler and the orphan report also run once at start (ARCHITECTURE §3: after the
        # engine resumed what a previous process left, whose subjects it then holds).
        loops: dict[str, tuple[float, Callable[[], Awaitable[object]], bool]] = {
            "activity-flush": (settings.activity_flush_interval, self.activity.flush, False),
            "idle-sweep": (settings.idle_check_interval, self.sweep_once, False),
            "reconciler": (settings.reconcile_interval, self.reconcile_once, True),
            "orphan-report": (settings.orphan_sweep_interval, self.orphan_report_once, True),
        }
        for name, (interval, work, at_start) in loops.items():
            self._tasks.append(asyncio.create_task(self._every(name, interval, work, at_start=at_start),
                                                   name=f"lifecycle-{name}"))

    async def stop(self) -> None:
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        try:
            await self.activity.flush()
        except Exception as exc:  # noqa: BLE001 (stopping: log and go on closing)
            log.warning("activity not written on stop: %s", describe(exc))

    async def _every(self, name: str, interval: float, work: Callable[[], Awaitable[object]], *,
                     at_start: bool) -> None:
        if not at_start:
            await self.clock.sleep(interval)
        while True:
            try:
                await work()
            except Exception:
                log.exception("lifecycle: the %s pass failed; trying again in %.0f s", name, interval)
            await self.clock.sleep(interval)
